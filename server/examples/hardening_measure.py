#!/usr/bin/env python3
"""Measures what issue 11 asks of a hardened `duplex serve` (release build), on loopback only.

Usage: hardening_measure.py PATH/TO/duplex {polls|bodies|trickle|sigterm} [N]

- polls:   fill one room's history (4096 messages of ~14 KB), then open 100 `since=0` polls that
           never read their answer; prints the server's RSS before and after.
- bodies:  publish ~64 KiB bodies round-robin into 100 rooms for 20 s; prints RSS over time and
           the history bytes /metrics reports.
- trickle: N connections (default 2000) each trickling a request head a byte a second, while
           /healthz is timed 300 times; prints p50/p99/max and how many /healthz failed.
- sigterm: N open SSE streams (default 3000), then SIGTERM; prints the time until the process
           has exited.
Each starts its own server on 127.0.0.1 (a free port) and stops it. Bounded in time and count.
"""
import asyncio, os, re, signal, socket, subprocess, sys, time

def start(exe, *args):
    p = subprocess.Popen([exe, "serve", "--listen", "127.0.0.1:0", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    m = re.search(r"http://([\d.]+):(\d+)", line)
    return p, (m.group(1), int(m.group(2)))

def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

async def request(addr, raw):
    r, w = await asyncio.open_connection(*addr)
    w.write(raw); await w.drain()
    data = await r.read()
    w.close()
    return data

def post(room, body):
    import json
    b = json.dumps({"from": "m", "body": body}).encode()
    return (f"POST /api/rooms/{room}/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n").encode() + b

async def publisher(addr, rooms, body, until, count=None):
    """One keep-alive connection publishing round-robin; returns how many were accepted."""
    r, w = await asyncio.open_connection(*addr)
    n = 0
    while time.monotonic() < until and (count is None or n < count):
        w.write(post(rooms[n % len(rooms)], body)); await w.drain()
        head = await r.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
        await r.readexactly(length)
        if not head.startswith(b"HTTP/1.1 201"):
            raise SystemExit(f"publish refused: {head[:40]!r}")
        n += 1
    w.close()
    return n

async def metric(addr, name):
    data = await request(addr, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    m = re.search(rf"^{name} (\d+)", data.decode(), re.M)
    return int(m.group(1)) if m else None

async def polls(exe):
    p, addr = start(exe)
    try:
        await publisher(addr, ["full"], "x" * 14000, time.monotonic() + 120, count=4096)
        print(f"full room: 4096 messages of ~14 KB, history bytes {await metric(addr, 'duplex_history_bytes')}, RSS {rss_mib(p.pid):.1f} MiB")
        socks = []
        for _ in range(100):
            s = socket.create_connection(addr)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /api/rooms/full/poll?since=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            socks.append(s)
        await asyncio.sleep(3)
        print(f"after 100 unread since=0 polls: RSS {rss_mib(p.pid):.1f} MiB")
        for s in socks: s.close()
    finally:
        p.terminate(); p.wait()

async def bodies(exe):
    p, addr = start(exe)
    try:
        rooms = [f"room{i}" for i in range(100)]
        body = "y" * (64 * 1024 - 40)
        t0 = time.monotonic(); until = t0 + 20
        tasks = [asyncio.create_task(publisher(addr, rooms[i::4], body, until)) for i in range(4)]
        while not all(t.done() for t in tasks):
            await asyncio.sleep(5)
            print(f"t={time.monotonic()-t0:4.1f}s RSS {rss_mib(p.pid):.1f} MiB, history bytes {await metric(addr, 'duplex_history_bytes')}")
        n = sum(t.result() for t in tasks)
        print(f"published {n} bodies of 64 KiB ({n*64/1024:.0f} MiB) into 100 rooms; final RSS {rss_mib(p.pid):.1f} MiB")
    finally:
        p.terminate(); p.wait()

async def trickle(exe, n):
    p, addr = start(exe)
    stop = time.monotonic() + 25
    async def slow():
        while time.monotonic() < stop:
            try:
                r, w = await asyncio.open_connection(*addr)
                w.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                while time.monotonic() < stop:
                    w.write(b"X"); await w.drain()
                    await asyncio.sleep(1)
                w.close()
            except (OSError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.5)
    try:
        held = [asyncio.create_task(slow()) for _ in range(n)]
        await asyncio.sleep(3)
        lat, failed = [], 0
        for _ in range(300):
            t = time.monotonic()
            try:
                data = await asyncio.wait_for(request(addr, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"), 5)
                if not data.startswith(b"HTTP/1.1 200"): failed += 1
            except (OSError, asyncio.TimeoutError):
                failed += 1
            lat.append((time.monotonic() - t) * 1000)
            await asyncio.sleep(0.05)
        lat.sort()
        print(f"{n} trickling connections: /healthz p50 {lat[149]:.1f} ms, p99 {lat[296]:.1f} ms, max {lat[-1]:.1f} ms, failed {failed}/300; "
              f"request timeouts so far {await metric(addr, 'duplex_request_timeouts_total')}")
        for t in held: t.cancel()
    finally:
        p.terminate(); p.wait()

async def sigterm(exe, n):
    p, addr = start(exe)
    streams = []
    for i in range(n):
        r, w = await asyncio.open_connection(*addr)
        w.write(f"GET /api/rooms/r{i % 10}/sse HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        streams.append((r, w))
    await asyncio.sleep(1)
    opened = await metric(addr, "duplex_tcp_connections")
    t = time.monotonic()
    p.send_signal(signal.SIGTERM)
    while p.poll() is None:
        await asyncio.sleep(0.005)
    print(f"{n} open SSE streams (server counted {opened} connections): SIGTERM to exit {(time.monotonic()-t)*1000:.0f} ms, exit code {p.returncode}")
    for _, w in streams: w.close()

if __name__ == "__main__":
    exe, what = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else None
    coro = {"polls": lambda: polls(exe), "bodies": lambda: bodies(exe),
            "trickle": lambda: trickle(exe, n or 2000), "sigterm": lambda: sigterm(exe, n or 3000)}[what]()
    asyncio.run(coro)
