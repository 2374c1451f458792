#!/usr/bin/env bash
# Starts a duplex cluster for the lab (a scenario's `[cluster] nodes = N`): one redis-server
# (Debian's package; persistence off, so each run starts empty) and N `duplex serve --backplane`
# nodes, node i listening on 127.0.0.(10+i), all below this script, so the loadgen measures the
# whole cluster's CPU and RSS as one process tree and stops it as one process group.
#
#   peers/cluster/start.sh --exe DUPLEX --nodes N --redis-port P [-- SERVE-FLAGS...]
#
# When Redis answers and every node listens this prints
#   cluster listening on http://127.0.0.10:PORT http://127.0.0.11:PORT ... pids REDIS NODE0 NODE1 ...
# on stdout (the pids let the lab measure each process and kill one node). SIGTERM stops every
# process it started.
set -euo pipefail

exe=""
nodes=""
redis_port=""
serve_flags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --exe) exe="$2"; shift 2 ;;
    --nodes) nodes="$2"; shift 2 ;;
    --redis-port) redis_port="$2"; shift 2 ;;
    --) shift; serve_flags=("$@"); break ;;
    *) echo "start.sh: unknown argument $1 (expected --exe, --nodes, --redis-port, --)" >&2; exit 2 ;;
  esac
done
case "$nodes" in ''|*[!0-9]*|0) echo "start.sh: --nodes must be a positive number, got '$nodes'" >&2; exit 2 ;; esac
case "$redis_port" in ''|*[!0-9]*) echo "start.sh: --redis-port must be a number, got '$redis_port'" >&2; exit 2 ;; esac
[ -x "$exe" ] || { echo "start.sh: --exe '$exe' is not an executable" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "start.sh: redis-server not found: install redis-server" >&2; exit 1; }
command -v redis-cli >/dev/null || { echo "start.sh: redis-cli not found: install redis-tools" >&2; exit 1; }

dir="$(mktemp -d "${TMPDIR:-/tmp}/duplex-cluster.XXXXXX")"
pids=()
stop() {
  trap - TERM INT EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap 'stop; exit 0' TERM INT
trap stop EXIT

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$dir" --logfile "$dir/redis.log" &
pids+=($!)
for _ in $(seq 200); do
  redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
redis-cli -p "$redis_port" ping >/dev/null 2>&1 || {
  echo "start.sh: redis-server did not answer on port $redis_port: $(tail -3 "$dir/redis.log")" >&2; exit 1; }

for i in $(seq 0 $((nodes - 1))); do
  "$exe" serve --listen "127.0.0.$((10 + i)):0" --backplane "redis://127.0.0.1:$redis_port" \
    "${serve_flags[@]}" > "$dir/node$i.out" &
  pids+=($!)
done

urls=()
for i in $(seq 0 $((nodes - 1))); do
  url=""
  for _ in $(seq 200); do
    url="$(sed -n 's/^duplex listening on //p' "$dir/node$i.out" 2>/dev/null | head -1)"
    [ -n "$url" ] && break
    sleep 0.05
  done
  [ -n "$url" ] || { echo "start.sh: node $i did not start" >&2; exit 1; }
  urls+=("$url")
done
echo "cluster listening on ${urls[*]} pids ${pids[*]}"
wait
