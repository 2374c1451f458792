#!/usr/bin/env bash
# Starts nginx + nchan in the foreground as duplex's nchan peer.
#
#   peers/nchan/start.sh [--port N] [--buffer N] [--timeout T]
#
# --port 0 (the default) picks a free 127.0.0.1 port (nginx itself cannot listen on port 0).
# --buffer is nchan_message_buffer_length (messages kept per room, default 4096, as duplex's
# history), --timeout nchan_message_timeout (default 1h). Everything nginx writes (pid, logs,
# temp files) goes to a fresh temp dir, removed when nginx exits. When nginx is up this prints
#   nchan listening on http://127.0.0.1:PORT
# on stdout; its errors go to stderr. SIGTERM stops nginx (which this script becomes).
set -euo pipefail

port=0
buffer=4096
timeout=1h
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --buffer) buffer="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    *) echo "start.sh: unknown argument $1 (expected --port, --buffer, --timeout)" >&2; exit 2 ;;
  esac
done
case "$port" in ''|*[!0-9]*) echo "start.sh: --port must be a number, got $port" >&2; exit 2 ;; esac
case "$buffer" in ''|*[!0-9]*|0) echo "start.sh: --buffer must be a positive number, got $buffer" >&2; exit 2 ;; esac

nginx_bin="${NGINX:-/usr/sbin/nginx}"
if [ ! -x "$nginx_bin" ]; then
  echo "start.sh: $nginx_bin not found: install nginx-light and libnginx-mod-nchan" >&2; exit 1
fi
if [ ! -f /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
  echo "start.sh: the nchan module is missing: install libnginx-mod-nchan" >&2; exit 1
fi

if [ "$port" = 0 ]; then
  # Ask the kernel for a free port, then give it to nginx. Another process could take it in
  # between; nginx then fails to bind and says so, and this script exits non-zero.
  if ! command -v python3 >/dev/null; then
    echo "start.sh: --port 0 needs python3 to find a free port; pass --port N instead" >&2; exit 1
  fi
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
fi

here="$(cd "$(dirname "$0")" && pwd)"
prefix="$(mktemp -d "${TMPDIR:-/tmp}/duplex-nchan.XXXXXX")"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$port|g" -e "s|@BUFFER@|$buffer|g" \
    -e "s|@TIMEOUT@|$timeout|g" "$here/nginx.conf.template" > "$prefix/nginx.conf"

# As many open files as allowed: each subscriber is a connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# This script becomes nginx (exec below), so the process tree duplex measures is nginx's master
# and worker only. Two helpers run detached from that tree (a double fork hands them to init):
# one prints the ready line once /healthz answers, one removes the temp dir when nginx is gone.
nginx_pid=$$
# Whether nginx still runs: a zombie (exited, not yet reaped by duplex) counts as gone.
alive() {
  local state
  state="$(cut -d' ' -f3 "/proc/$nginx_pid/stat" 2>/dev/null)" || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
ready() {
  for _ in $(seq 1 200); do
    alive || exit 0
    if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
      printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
      if timeout 1 head -n 1 <&3 | grep -q ' 200 '; then
        echo "nchan listening on http://127.0.0.1:$port"
        exit 0
      fi
      exec 3<&- 3>&-
    fi
    sleep 0.05
  done
  echo "start.sh: nginx did not answer /healthz on port $port within 10 s" >&2
}
cleanup() {
  trap 'rm -rf "$prefix"; exit 0' TERM INT
  while alive; do sleep 1; done
  rm -rf "$prefix"
}
( (ready) & )
( (cleanup) </dev/null >/dev/null 2>&1 & )

# nginx's errors go to stderr (error_log stderr in the config); SIGTERM stops it at once.
exec "$nginx_bin" -p "$prefix" -c "$prefix/nginx.conf" -e stderr
