// duplex's classroom page, part 2 of 4 (after live-core.js, whose globals it uses): the four
// receivers. Each follows feed.room from feed.lastSeq over its transport, counts what it can
// see of every request, event or frame, hands deliveries to accept(), and returns
// { stop(), send?(body, addressing) }.
'use strict';

function startShortPoll(via, intervalMs) {
  let stopped = false;
  let inFlight = false;
  let timer = null;
  const controller = new AbortController();
  // A fixed schedule with a random phase, like the loadgen's pollers: ticks are not pushed back
  // by slow answers, and a tick that finds the previous poll still running is skipped.
  const start = performance.now() + Math.random() * Math.min(intervalMs, 500);
  let tick = 0;
  function schedule() {
    if (stopped) return;
    tick++;
    timer = setTimeout(poll, Math.max(0, start + tick * intervalMs - performance.now()));
  }
  async function poll() {
    schedule();
    if (inFlight) { log(via, 'tick skipped', { note: 'previous poll still running' }); return; }
    inFlight = true;
    const url = `${roomPath(feed.room)}/poll?since=${cursor()}&${clientParam()}`;
    try {
      const status = await pollOnce(via, 'poll', url, controller.signal, 'nothing new');
      if (status == null) return;
      setStatus(mode.fallback ? 'fallback' : 'live', mode.fallback ? 'short poll (fallback)' : `short poll every ${intervalMs / 1000} s`);
    } catch (e) {
      if (!stopped) { count(via, 'errors'); log(via, 'GET poll failed', { kind: 'error', note: String(e) }); setStatus('error', 'poll failed'); }
    } finally {
      inFlight = false;
    }
  }
  schedule();
  return { stop() { stopped = true; clearTimeout(timer); controller.abort(); } };
}

function startLongPoll(via) {
  let stopped = false;
  const controller = new AbortController();
  (async () => {
    while (!stopped) {
      const url = `${roomPath(feed.room)}/longpoll?since=${cursor()}&${clientParam()}&timeout_ms=${LONG_POLL_TIMEOUT_MS}`;
      setStatus('live', 'long poll: request held open');
      try {
        const status = await pollOnce(via, 'longpoll', url, controller.signal, 'timed out with nothing new');
        if (status == null) return;
        if (status !== 200 && status !== 204) await sleep(1000);
      } catch (e) {
        if (stopped) return;
        count(via, 'errors');
        log(via, 'GET longpoll failed', { kind: 'error', note: `${e}; retrying in 1 s` });
        setStatus('error', 'long poll failed; retrying');
        await sleep(1000);
      }
    }
  })();
  return { stop() { stopped = true; controller.abort(); } };
}

function startSse(via) {
  let retry = null;
  let es = null;
  function open() {
    // Built at each open: after a refusal we open a new EventSource (no Last-Event-ID), which
    // must resume from what this page has, not from where the transport started.
    const url = `${roomPath(feed.room)}/sse?since=${cursor()}&${clientParam()}`;
    const t0 = performance.now();
    es = new EventSource(url);
    count(via, 'requests');
    count(via, 'opened');
    count(via, 'up', requestBytes('GET', url));
    setStatus('connecting', 'SSE: connecting');
    es.onopen = () => {
      log(via, 'stream open (200, text/event-stream)', { tookMs: performance.now() - t0, note: 'one response that never ends' });
      setStatus('live', 'SSE: stream open');
    };
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        // A refused stream (4xx/5xx): EventSource gives up, so we retry ourselves.
        count(via, 'errors');
        log(via, 'stream refused', { kind: 'error', note: 'retrying in 2 s' });
        setStatus('error', 'SSE refused; retrying');
        retry = setTimeout(open, 2000);
      } else {
        log(via, 'stream dropped', { kind: 'warn', note: 'EventSource reconnects by itself, sending Last-Event-ID' });
        setStatus('connecting', 'SSE: reconnecting');
        count(via, 'requests');
        count(via, 'errors');
      }
    };
    const onEvent = (e) => {
      // What was on the wire for this event (the id line only when the server sent one).
      const down = utf8(`${e.lastEventId ? `id: ${e.lastEventId}\n` : ''}event: ${e.type}\ndata: ${e.data}\n\n`);
      count(via, 'down', down);
      const dash = e.lastEventId.indexOf('-');
      if (dash > 0) feed.epoch = e.lastEventId.slice(0, dash);
      const item = JSON.parse(e.data);
      if (e.type === 'gap') { acceptGap(via, item.missed); return; }
      if (e.type === 'reset') { acceptReset(via, item.head); return; }
      const delay = accept(item, via);
      log(via, `event: ${e.type} #${item.seq}`, { down, note: delay == null ? 'history' : `delay ${formatMs(delay)}` });
    };
    for (const name of SSE_EVENTS) es.addEventListener(name, onEvent);
  }
  open();
  return { stop() { clearTimeout(retry); es.close(); } };
}

/**
 * The WebSocket handshake's bytes, estimated: a page cannot read the upgrade request or the 101
 * (neither Resource Timing nor the WebSocket API exposes them), so this writes out the headers
 * Chromium sends (Host, Connection, Pragma, Cache-Control, User-Agent, Upgrade, Origin,
 * Sec-WebSocket-Version, Accept-Encoding, Accept-Language, Sec-WebSocket-Key,
 * Sec-WebSocket-Extensions) and the server's 101 (Upgrade, Connection, Sec-WebSocket-Accept,
 * Date). Cookies, if any, are not counted.
 */
function handshakeBytes(path) {
  const up = utf8(`GET ${path} HTTP/1.1\r\nHost: ${location.host}\r\nConnection: Upgrade\r\n`
    + 'Pragma: no-cache\r\nCache-Control: no-cache\r\n'
    + `User-Agent: ${navigator.userAgent}\r\nUpgrade: websocket\r\nOrigin: ${location.origin}\r\n`
    + 'Sec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n'
    + `Accept-Language: ${(navigator.languages || [navigator.language]).join(',')}\r\n`
    + `Sec-WebSocket-Key: ${'x'.repeat(24)}\r\n`
    + 'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n');
  const down = utf8('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n'
    + `sec-websocket-accept: ${'x'.repeat(28)}\r\ndate: ${new Date().toUTCString()}\r\n\r\n`);
  return { up, down };
}

/** WebSocket frame size: 2-byte header, +2 or +8 for longer payloads, +4 mask from the client. */
const frameBytes = (payload, fromClient) =>
  payload + (payload <= 125 ? 2 : payload <= 65535 ? 4 : 10) + (fromClient ? 4 : 0);

function startWebSocket(via) {
  let stopped = false;
  let ws = null;
  let retry = null;
  let nextRef = 1;
  const pending = new Map(); // ref -> send time, to time the ack
  function open() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const path = `${roomPath(feed.room)}/ws?since=${cursor()}&${clientParam()}`;
    const t0 = performance.now();
    ws = new WebSocket(`${proto}//${location.host}${path}`);
    count(via, 'requests');
    count(via, 'opened');
    const handshake = handshakeBytes(path);
    count(via, 'up', handshake.up);
    setStatus('connecting', 'WebSocket: connecting');
    ws.onopen = () => {
      count(via, 'down', handshake.down);
      count(via, 'headerDown', handshake.down);
      log(via, 'upgraded (101)', { up: handshake.up, down: handshake.down, tookMs: performance.now() - t0, note: 'handshake bytes estimated from the headers a browser sends and the 101; then one connection, frames both ways' });
      setStatus('live', 'WebSocket: open');
    };
    ws.onmessage = (e) => {
      const down = frameBytes(utf8(e.data), false);
      count(via, 'down', down);
      const item = JSON.parse(e.data);
      switch (item.type) {
        case 'message': {
          const delay = accept(item, via);
          log(via, `frame: ${item.event} #${item.seq}`, { down, note: delay == null ? 'history' : `delay ${formatMs(delay)}` });
          break;
        }
        case 'ack': {
          const sentAt = pending.get(item.ref);
          pending.delete(item.ref);
          count(via, 'sent');
          log(via, `frame: ack ref ${item.ref}`, { down, tookMs: sentAt == null ? null : performance.now() - sentAt, note: `seq ${item.seq}` });
          break;
        }
        case 'gap': acceptGap(via, item.missed); break;
        case 'reset': acceptReset(via, item.head); break;
        case 'epoch': feed.epoch = item.epoch; break;
        default: log(via, `frame: ${item.type}`, { down, kind: 'error', note: item.error || '' });
      }
    };
    ws.onclose = (e) => {
      if (stopped) return;
      count(via, 'errors');
      log(via, `closed (${e.code})`, { kind: 'warn', note: 'reconnecting in 1 s' });
      setStatus('error', 'WebSocket closed; reconnecting');
      retry = setTimeout(open, 1000);
    };
  }
  open();
  return {
    stop() { stopped = true; clearTimeout(retry); ws.close(); },
    send(body, addressing) {
      if (ws.readyState !== WebSocket.OPEN) { log(via, 'not sent', { kind: 'error', note: 'socket not open yet' }); return; }
      const ref = nextRef++;
      const frame = JSON.stringify({ type: 'send', body, ...addressing, ref });
      const up = frameBytes(utf8(frame), true);
      count(via, 'up', up);
      pending.set(ref, performance.now());
      ws.send(frame);
      log(via, `frame: send ref ${ref}`, { up });
    },
  };
}
