#!/usr/bin/env bash
# Scale benchmark of `authprobe run`: N probes at one interval against the simulator running in
# a separate process (so its cost is measured apart), on loopback only.
#
#   bench/scale.sh                       # 10,000 probes at 60s, measured for 120 s after warm-up
#   PROBES=1000 DURATION=60 bench/scale.sh
#
# Prints: authprobe CPU % of one core and the simulator's, peak RSS, scheduler delay p50/p99
# (interpolated within buckets, as histogram_quantile does) and the share of starts within 5 ms,
# /metrics render time and size, and logins per second achieved vs planned.
# Targets at 10,000 probes (issue 4): CPU <= 5 %, RSS <= 64 MB, delay p99 <= 5 ms, /metrics <= 50 ms.
set -euo pipefail
cd "$(dirname "$0")/.."

PROBES=${PROBES:-10000}
INTERVAL=${INTERVAL:-60}
DURATION=${DURATION:-120}
WARMUP=${WARMUP:-$((INTERVAL + 5))}
SIM_DELAY=${SIM_DELAY:-20ms}
SIM_PORT=${SIM_PORT:-18181}
WEB_PORT=${WEB_PORT:-19871}
ACCOUNTS=${ACCOUNTS:-100}

. bench/common.sh
bench_init
gen_config "$PROBES" "$INTERVAL" "$ACCOUNTS" "$SIM_DELAY" "$SIM_PORT"
start_simulator "$SIM_PORT"
start_authprobe "$WEB_PORT"

echo "authprobe $($BIN --version | cut -d' ' -f2): $PROBES probes every ${INTERVAL}s, simulator delay $SIM_DELAY, $(nproc) cores"
echo "warming up ${WARMUP}s (every probe runs once), then measuring ${DURATION}s"
sleep "$WARMUP"

scrape() { curl -fs "http://127.0.0.1:$WEB_PORT/metrics" -o "$1"; }

scrape "$WORK/before.txt"
RUN_T0=$(cpu_ticks "$RUN_PID"); RUN_S0=$(sys_ticks "$RUN_PID"); SIM_T0=$(cpu_ticks "$SIM_PID"); W0=$(date +%s.%N)
sleep "$DURATION"
RUN_T1=$(cpu_ticks "$RUN_PID"); RUN_S1=$(sys_ticks "$RUN_PID"); SIM_T1=$(cpu_ticks "$SIM_PID"); W1=$(date +%s.%N)
scrape "$WORK/after.txt"

# /metrics render time: 10 scrapes, one after another.
: >"$WORK/scrapes.txt"
for _ in $(seq 1 10); do
    curl -fs -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$WEB_PORT/metrics" >>"$WORK/scrapes.txt"
done
HWM_KB=$(hwm_kb "$RUN_PID")
RSS_KB=$(rss_kb "$RUN_PID")
SIM_HWM_KB=$(hwm_kb "$SIM_PID")

python3 - "$WORK" "$RUN_T0" "$RUN_T1" "$SIM_T0" "$SIM_T1" "$W0" "$W1" "$(getconf CLK_TCK)" "$HWM_KB" "$RSS_KB" "$SIM_HWM_KB" "$PROBES" "$INTERVAL" "$RUN_S0" "$RUN_S1" <<'PY'
import re, sys
work = sys.argv[1]
run_t0, run_t1, sim_t0, sim_t1 = map(int, sys.argv[2:6])
w0, w1 = float(sys.argv[6]), float(sys.argv[7])
hz, hwm, rss, sim_hwm, probes, interval = int(sys.argv[8]), int(sys.argv[9]), int(sys.argv[10]), int(sys.argv[11]), int(sys.argv[12]), float(sys.argv[13])
run_s0, run_s1 = int(sys.argv[14]), int(sys.argv[15])
wall = w1 - w0

def parse(path):
    buckets, runs, skipped = {}, {}, 0.0
    for line in open(path):
        if line.startswith("authprobe_scheduler_delay_seconds_bucket"):
            le = re.search(r'le="([^"]+)"', line).group(1)
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("authprobe_probe_runs_total"):
            r = re.search(r'result="([^"]+)"', line).group(1)
            runs[r] = runs.get(r, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("authprobe_probe_skipped_total"):
            skipped += float(line.rsplit(" ", 1)[1])
    return buckets, runs, skipped

b0, r0, s0 = parse(f"{work}/before.txt")
b1, r1, s1 = parse(f"{work}/after.txt")
les = sorted(b1)
counts = [b1[le] - b0.get(le, 0.0) for le in les]
total = counts[-1]

def quantile(q):
    rank, prev_le, prev_c = q * total, 0.0, 0.0
    for le, c in zip(les, counts):
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 0)
        prev_le, prev_c = le, c
    return float("nan")

within_5ms = counts[les.index(0.005)] / total if total else float("nan")
runs = sum(r1.values()) - sum(r0.values())
ok = r1.get("success", 0) - r0.get("success", 0)
scrapes = [tuple(map(float, l.split())) for l in open(f"{work}/scrapes.txt")]
times = sorted(t for t, _ in scrapes)
size = scrapes[-1][1]
print(f"measured over {wall:.0f} s")
cpu = 100 * (run_t1 - run_t0) / hz / wall
kernel = 100 * (run_s1 - run_s0) / hz / wall
print(f"authprobe CPU:        {cpu:.2f} % of one core ({cpu - kernel:.2f} % user, {kernel:.2f} % kernel)   (target <= 5 %)")
print(f"simulator CPU:        {100 * (sim_t1 - sim_t0) / hz / wall:.2f} % of one core   (apart; not authprobe's)")
print(f"authprobe peak RSS:   {hwm / 1024:.1f} MB (now {rss / 1024:.1f} MB)   (target <= 64 MB); simulator {sim_hwm / 1024:.1f} MB")
print(f"scheduler delay:      p50 {quantile(0.5) * 1000:.2f} ms, p99 {quantile(0.99) * 1000:.2f} ms, {100 * within_5ms:.2f} % within 5 ms over {total:.0f} starts   (target p99 <= 5 ms)")
print(f"/metrics:             median {times[len(times) // 2] * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms, {size / 1e6:.1f} MB   (target <= 50 ms)")
print(f"logins:               {runs / wall:.1f}/s achieved vs {probes / interval:.1f}/s planned, {100 * ok / runs if runs else 0:.2f} % success, {s1 - s0:.0f} ticks skipped")
PY
