#!/bin/sh
# One-hour soak of `icewatch demo` at a high rate: samples the process's
# resident memory (VmRSS) and peak (VmHWM) every minute into a CSV, so that
# BENCHMARKS.md can show whether memory stays flat after warm-up.
#
#   cargo build --release && scripts/soak.sh [SECONDS] [RATE] [HOSTS] > soak.csv
#
# Defaults: 3600 s, 5000 events/s, 200 hosts. Binds 127.0.0.1 port 0 only.
set -eu
duration=${1:-3600}
rate=${2:-5000}
hosts=${3:-200}
bin=${ICEWATCH:-target/release/icewatch}
"$bin" demo --hosts "$hosts" --rate "$rate" --seed 1 --listen 127.0.0.1:0 \
    >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT INT TERM
echo "minute,rss_kib,hwm_kib,cpu_ticks"
start=$(date +%s)
minute=0
while :; do
    kill -0 "$pid" 2>/dev/null || { echo "icewatch demo exited" >&2; exit 1; }
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
    ticks=$(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')
    echo "$minute,$rss,$hwm,$ticks"
    [ $(( $(date +%s) - start )) -ge "$duration" ] && break
    sleep 60
    minute=$((minute + 1))
done
