#!/bin/sh
# A real icecream scheduler at scale: Debian's icecc-scheduler, `icewatch
# monitor` on it and `icewatch loadgen` with DAEMONS simulated daemons
# submitting JOBS_PER_MINUTE compile requests, in a private network and PID
# namespace (as root: nothing leaves it, everything dies with it). Over the
# SECONDS of load it measures the CPU of the scheduler, of icewatch and of
# loadgen, icewatch's memory and the load average, and prints them with
# loadgen's summary, for BENCHMARKS.md ("Real scheduler at scale").
#
#   cargo build --release && sudo scripts/loadgen-scale.sh [DAEMONS] [JOBS_PER_MINUTE] [SECONDS]
#
# Defaults: 500 daemons, 10000 requests a minute, 120 s. The scheduler runs
# without -v, as Debian's service does: its log costs CPU. KEEP=1 keeps the
# folder with the logs. CLIENTS=50 also connects that many WebSocket clients
# to icewatch's page for the window (`load watch`, from `cargo build
# --release --examples`) and prints how long new jobs took to reach them.
#
# PAGE_SECONDS=S also measures the page of that icewatch in Debian's
# chromium, inside the namespace, during the window: e2e/perf.mjs --url,
# PAGE_RUNS runs (default 1) of S seconds each, against its own baselines.
# Its figures are printed first; the CPU figures then include chromium's
# load on the machine. SECONDS must cover the page's runs (about 3 × S + 40
# per run).
set -eu
daemons=${1:-500}
rate=${2:-10000}
seconds=${3:-120}
bin=$(realpath "${ICEWATCH:-target/release/icewatch}")

if [ -z "${LOADGEN_SCALE_INSIDE:-}" ]; then
    exec env LOADGEN_SCALE_INSIDE=1 unshare --net --pid --fork --kill-child --mount-proc sh "$0" "$@"
fi

ip link set lo up
ulimit -n "$(ulimit -Hn)" # the scheduler holds a socket a daemon
dir=$(mktemp -d)
chmod 777 "$dir" # the scheduler writes its log as user icecc
[ -n "${KEEP:-}" ] && echo "logs in $dir" >&2

icecc-scheduler -p 8765 -l "$dir/scheduler.log" &
scheduler=$!
until ss -ltn | grep -q ':8766 '; do sleep 0.2; done
"$bin" monitor 127.0.0.1 --listen 127.0.0.1:0 --db "$dir/history.sqlite" >"$dir/monitor.out" 2>"$dir/monitor.err" &
monitor=$!
"$bin" loadgen 127.0.0.1 --daemons "$daemons" --jobs-per-minute "$rate" \
    --duration "${seconds}s" --seed 1 --json >"$dir/summary.json" 2>"$dir/loadgen.err" &
loadgen=$!

# The load starts once every daemon is logged in.
until grep -q "daemons logged in$" "$dir/loadgen.err"; do
    kill -0 "$loadgen" 2>/dev/null || { cat "$dir/loadgen.err" >&2; exit 1; }
    sleep 0.5
done

ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
hz=$(getconf CLK_TCK)
s0=$(ticks "$scheduler"); m0=$(ticks "$monitor"); l0=$(ticks "$loadgen")
t0=$(date +%s.%N)
page=$(sed -n 's#.*http://\([^/]*\)/.*#\1#p' "$dir/monitor.out" | head -n 1)
if [ -n "${PAGE_SECONDS:-}" ]; then
    node "$(dirname "$0")/../e2e/perf.mjs" --url "http://$page/" --bin "$bin" \
        --hosts $((daemons * 9 / 10)) --seconds "$PAGE_SECONDS" --runs "${PAGE_RUNS:-1}" >&2 &
    perf=$!
fi
# The measurement window: the load runs for `seconds`, sampled at its ends.
if [ -n "${CLIENTS:-}" ]; then
    watch=$(dirname "$bin")/examples/load
    "$watch" watch --page "$page" --clients "$CLIENTS" --seconds "$seconds" >"$dir/watch.out" 2>&1 &
    watcher=$!
fi
sleep "$seconds"
if [ -n "${PAGE_SECONDS:-}" ]; then wait "$perf"; fi
s1=$(ticks "$scheduler"); m1=$(ticks "$monitor"); l1=$(ticks "$loadgen")
t1=$(date +%s.%N)
rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$monitor/status")
hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$monitor/status")
srss=$(awk '/^VmRSS:/ {print $2}' "/proc/$scheduler/status")
load=$(cut -d' ' -f1-3 /proc/loadavg)
wait "$loadgen"

awk -v s="$((s1 - s0))" -v m="$((m1 - m0))" -v l="$((l1 - l0))" -v hz="$hz" \
    -v t0="$t0" -v t1="$t1" -v rss="$rss" -v hwm="$hwm" -v srss="$srss" \
    -v load="$load" -v d="$daemons" -v r="$rate" 'BEGIN {
    w = t1 - t0
    printf "daemons %d, %d requests/min, window %.1f s, load average %s\n", d, r, w, load
    printf "scheduler CPU %.1f%% of a core, RSS %.1f MiB\n", 100 * s / hz / w, srss / 1024
    printf "icewatch  CPU %.1f%% of a core (%.3f of the scheduler'"'"'s), RSS %.1f MiB, peak %.1f MiB\n", \
        100 * m / hz / w, (s ? m / s : 0), rss / 1024, hwm / 1024
    printf "loadgen   CPU %.1f%% of a core\n", 100 * l / hz / w
}'
echo "loadgen summary: $(cat "$dir/summary.json")"
if [ -n "${CLIENTS:-}" ]; then
    wait "$watcher" || true
    cat "$dir/watch.out"
fi
# icewatch's totals once it has seen every daemon go.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    totals=$(curl -s "http://$page/api/v1/snapshot" |
        python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["totals"]))')
    case $totals in *'"hosts_online": 0,'*) break ;; esac
    sleep 1
done
echo "icewatch totals: $totals"
[ -z "${KEEP:-}" ] && rm -rf "$dir"
exit 0
