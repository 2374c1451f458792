#!/usr/bin/env bash
# The loadgen's CPU per received delivery, before/after in one run: one release server, then
# bench/loadgen-delivery.toml (1,000 SSE and WebSocket clients, 82,000 deliveries each) run by
# each given duplex binary in turn against it, ROUNDS times, interleaved so both see the same
# machine. Prints, per run, the load average and each transport's loadgen CPU per delivery
# (the figure the report card's last row shows). CPU time on a shared machine is noise: compare
# the binaries' ratio within one invocation, never figures from different ones.
#   bench/loadgen-cost.sh /tmp/duplex-before target/release/duplex      # ROUNDS=3 by default
# Needs python3 (to read results.json). Takes about 40 s per binary per round.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
[ $# -ge 1 ] || { echo "usage: $0 DUPLEX_BINARY..." >&2; exit 1; }
OUT="$(mktemp -d)"
PORT=18765
timeout 1800 target/release/duplex serve --listen "127.0.0.1:$PORT" >"$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$OUT"' EXIT
sleep 1
for round in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    dir="$OUT/$round-$(basename "$bin")"
    timeout 120 "$bin" run bench/loadgen-delivery.toml --target "http://127.0.0.1:$PORT" \
      --out "$dir" >"$dir.log" 2>&1 || true
    printf '%s  %-28s' "$(cut -d' ' -f1-3 /proc/loadavg)" "$bin"
    python3 - "$dir/results.json" <<'PY'
import json, sys
for run in json.load(open(sys.argv[1]))["runs"]:
    for p in run["phases"]:
        d = p["integrity"]["deliveries_received"]
        cpu = p["loadgen"]["cpu_s"]
        print(f"  {p['transport']} {cpu:.2f} s / {d} = {cpu / max(d, 1) * 1e6:.1f} us", end="")
print()
PY
  done
done
