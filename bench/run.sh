#!/usr/bin/env bash
# Builds duplex and the bench in release mode, then measures duplex against nginx+nchan side by
# side (bench/src/main.rs says what and how). Arguments go to the bench, e.g.
#   bench/run.sh --idle 5000 --subscribers 1000 --rate 10 --window 10
# Needs Debian's nginx-light and libnginx-mod-nchan (the bench says so if they are missing; it
# installs nothing). Takes about three minutes; --deadline (default 600 s) bounds it.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}" cargo build --release -p duplex -p bench
exec target/release/vs-nchan "$@"
