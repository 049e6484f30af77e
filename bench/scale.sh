#!/usr/bin/env bash
# Scale benchmark of `authprobe run`: 1,000, 10,000 and 50,000 probes at one interval against the
# simulator running in a separate process (its cost is measured apart), on loopback only.
#
#   bench/scale.sh                          # 1,000 / 10,000 / 50,000 probes at 60s, ~13 minutes
#   COUNTS=10000 DURATION=60 bench/scale.sh # one count, shorter
#   RUN_ARGS="--probe.failure-traces-size 0" COUNTS=10000 bench/scale.sh
#                                           # extra flags for authprobe (here: no run traced)
#   PROFILE=1 COUNTS=10000 bench/scale.sh   # also samples authprobe with perf (Debian's
#                                           # linux-perf) while measuring; top functions printed,
#                                           # the recording kept in $OUT_DIR/scale.perf.data
#
# For each count: start both processes, warm up one interval and 5 s (every probe runs once),
# then measure DURATION seconds:
#   CPU % of one core (authprobe and, apart, the simulator), peak RSS, scheduler delay p50/p99
#   (interpolated within buckets, as histogram_quantile does) and max (the highest bucket reached),
#   logins per second achieved vs planned; then 10 scrapes of /metrics one after another: time
#   (curl's, request to last byte), size, and authprobe's CPU per scrape, in the text format and
#   again in OpenMetrics (what Prometheus asks for: _created and exemplars); then, authprobe stopped,
#   the floor: curl making the same logins at the same rate for FLOOR seconds, a fresh
#   connection each, and the CPU it takes.
# Writes $OUT_DIR/scale.csv and, with gnuplot (Debian's gnuplot-nox), $OUT_DIR/scale.png.
# Goals (issue 17), each against a reference measured in the same run: at 10,000 probes CPU
# <= 1.0x curl's for the same logins, RSS <= 64 MB, delay p99 <= 5 ms, /metrics <= 50 ms; at
# 50,000 probes CPU below curl's.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-1000 10000 50000}
INTERVAL=${INTERVAL:-60}
DURATION=${DURATION:-150}
FLOOR=${FLOOR:-30}
WARMUP=${WARMUP:-$((INTERVAL + 5))}
SIM_DELAY=${SIM_DELAY:-20ms}
SIM_PORT=${SIM_PORT:-18181}
WEB_PORT=${WEB_PORT:-19871}
ACCOUNTS=${ACCOUNTS:-100}
OUT_DIR=${OUT_DIR:-target/bench}

. bench/common.sh
install_missing gnuplot:gnuplot-nox
[ "${PROFILE:-0}" = 1 ] && install_missing perf:linux-perf
bench_init
mkdir -p "$OUT_DIR"
CSV=$OUT_DIR/scale.csv
echo "probes,cpu_percent,user_percent,kernel_percent,sim_cpu_percent,peak_rss_mb,delay_p50_ms,delay_p99_ms,delay_max_ms,within_5ms_percent,metrics_ms,metrics_max_ms,metrics_mb,render_cpu_ms,logins_per_s,planned_per_s,success_percent,skipped,curl_cpu_percent,switches_per_login,curl_switches_per_login,om_metrics_ms,om_metrics_mb,om_render_cpu_ms,status_page_ms,status_page_mb" >"$CSV"
echo "authprobe $($BIN --version | cut -d' ' -f2) on $(nproc) cores; probes every ${INTERVAL}s, simulator delay $SIM_DELAY;" \
    "per count: ${WARMUP}s warm-up, ${DURATION}s measured"

scrape() { curl -fs "http://127.0.0.1:$WEB_PORT/metrics" -o "$1"; }

for PROBES in $COUNTS; do
    echo
    echo "== $PROBES probes"
    gen_config "$PROBES" "$INTERVAL" "$ACCOUNTS" "$SIM_DELAY" "$SIM_PORT"
    start_simulator "$SIM_PORT"
    # shellcheck disable=SC2086 # RUN_ARGS: extra flags for `authprobe run`, split on spaces
    start_authprobe "$WEB_PORT" ${RUN_ARGS:-}
    sleep "$WARMUP"

    scrape "$WORK/before.txt"
    RUN_T0=$(cpu_ticks "$RUN_PID"); RUN_S0=$(sys_ticks "$RUN_PID"); SIM_T0=$(cpu_ticks "$SIM_PID"); W0=$(date +%s.%N)
    RUN_CS0=$(ctx_switches "$RUN_PID")
    if [ "${PROFILE:-0}" = 1 ]; then
        # cpu-clock: a software event, available where hardware counters are not (virtual machines).
        perf record -q -e cpu-clock -F 997 -g -p "$RUN_PID" -o "$OUT_DIR/scale.perf.data" -- sleep "$DURATION" 2>/dev/null
    else
        sleep "$DURATION"
    fi
    RUN_T1=$(cpu_ticks "$RUN_PID"); RUN_S1=$(sys_ticks "$RUN_PID"); SIM_T1=$(cpu_ticks "$SIM_PID"); W1=$(date +%s.%N)
    RUN_CS1=$(ctx_switches "$RUN_PID")
    scrape "$WORK/after.txt"

    # /metrics: 10 scrapes one after another, with authprobe's CPU over them.
    : >"$WORK/scrapes.txt"
    SCRAPE_T0=$(cpu_ticks "$RUN_PID"); SW0=$(date +%s.%N)
    for _ in $(seq 1 10); do
        curl -fs -o /dev/null -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$WEB_PORT/metrics" >>"$WORK/scrapes.txt"
    done
    SCRAPE_T1=$(cpu_ticks "$RUN_PID"); SW1=$(date +%s.%N)
    : >"$WORK/om_scrapes.txt"
    OM_T0=$(cpu_ticks "$RUN_PID"); OW0=$(date +%s.%N)
    for _ in $(seq 1 10); do
        curl -fs -o /dev/null -w '%{time_total} %{size_download}\n' -H 'Accept: application/openmetrics-text;version=1.0.0' \
            "http://127.0.0.1:$WEB_PORT/metrics" >>"$WORK/om_scrapes.txt"
    done
    OM_T1=$(cpu_ticks "$RUN_PID"); OW1=$(date +%s.%N)
    # The status page (its first page of 200 rows, the failing probes on top) and the failing
    # probes alone, 5 loads each: time and size.
    : >"$WORK/pages.txt"
    for path in / '/?failing=1'; do
        for _ in $(seq 1 5); do
            curl -fs -o /dev/null -w "$path %{time_total} %{size_download}\n" "http://127.0.0.1:$WEB_PORT$path" >>"$WORK/pages.txt"
        done
    done
    HWM_KB=$(hwm_kb "$RUN_PID")
    SIM_HWM_KB=$(hwm_kb "$SIM_PID")
    kill "$RUN_PID"
    wait "$RUN_PID" 2>/dev/null || true

    # The floor: curl making the same logins at the same rate, a fresh connection each
    # (`Connection: close`: one curl process would otherwise keep its connection).
    python3 - "$WORK" "$PROBES" "$INTERVAL" "$FLOOR" "$ACCOUNTS" "$SIM_PORT" >"$WORK/floor.txt" <<'PY'
import math, resource, subprocess, sys, time
work, probes, interval, seconds, accounts, port = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
rate = probes / interval
# One login at a time per curl process (each waits for the server's delay): enough processes
# that each makes at most 20 a second.
procs = max(4, math.ceil(rate / 20))
per_minute = max(1, round(60 * rate / procs))
per_proc = math.ceil(per_minute / 60 * seconds)
running = []
start = time.monotonic()
for i in range(procs):
    cfg = f"{work}/curl{i}.cfg"
    with open(cfg, "w") as f:
        f.write(f'url = "http://127.0.0.1:{port}/api/token"\noutput = "/dev/null"\n' * per_proc)
    a = i % accounts
    running.append(subprocess.Popen(
        ["curl", "-s", "--rate", f"{per_minute}/m", "-d", "", "-H", "Connection: close", "-H", "Accept: application/json",
         "-H", "Et-App-Key: bench-app-key", "-H", f"Username: user{a:04d}", "-H", f"Password: pw{a:04d}", "-K", cfg]))
for p in running:
    p.wait()
wall = time.monotonic() - start
used = resource.getrusage(resource.RUSAGE_CHILDREN)
print(100 * (used.ru_utime + used.ru_stime) / wall, 100 * used.ru_stime / wall, procs * per_proc / wall,
      (used.ru_nvcsw + used.ru_nivcsw) / (procs * per_proc))
PY
    kill "$SIM_PID"
    wait "$SIM_PID" 2>/dev/null || true

    python3 - "$WORK" "$CSV" "$(getconf CLK_TCK)" "$PROBES" "$INTERVAL" "$HWM_KB" "$SIM_HWM_KB" \
        "$RUN_T0" "$RUN_T1" "$RUN_S0" "$RUN_S1" "$SIM_T0" "$SIM_T1" "$W0" "$W1" \
        "$SCRAPE_T0" "$SCRAPE_T1" "$SW0" "$SW1" "$RUN_CS0" "$RUN_CS1" "$OM_T0" "$OM_T1" "$OW0" "$OW1" <<'PY'
import re, sys
work, csv = sys.argv[1], sys.argv[2]
hz, probes, interval, hwm, sim_hwm = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
run_t0, run_t1, run_s0, run_s1, sim_t0, sim_t1 = map(int, sys.argv[8:14])
w0, w1 = float(sys.argv[14]), float(sys.argv[15])
scrape_t0, scrape_t1 = int(sys.argv[16]), int(sys.argv[17])
sw0, sw1 = float(sys.argv[18]), float(sys.argv[19])
cs0, cs1 = int(sys.argv[20]), int(sys.argv[21])
om_t0, om_t1, ow0, ow1 = int(sys.argv[22]), int(sys.argv[23]), float(sys.argv[24]), float(sys.argv[25])
wall = w1 - w0
curl_cpu, curl_kernel, curl_rate, curl_cs = map(float, open(f"{work}/floor.txt").read().split())

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

# The highest bucket any start reached: the max is at most its bound.
reached = [le for le, c, prev in zip(les, counts, [0.0] + counts) if c > prev]
delay_max = reached[-1] if reached else 0.0
within_5ms = counts[les.index(0.005)] / total if total else float("nan")
runs = sum(r1.values()) - sum(r0.values())
ok = r1.get("success", 0) - r0.get("success", 0)
scrapes = [tuple(map(float, l.split())) for l in open(f"{work}/scrapes.txt")]
times = sorted(t for t, _ in scrapes)
size = scrapes[-1][1]
cpu = 100 * (run_t1 - run_t0) / hz / wall
kernel = 100 * (run_s1 - run_s0) / hz / wall
sim_cpu = 100 * (sim_t1 - sim_t0) / hz / wall
# authprobe's CPU over the scrapes, less what its logins used meanwhile.
render_cpu = ((scrape_t1 - scrape_t0) / hz - cpu / 100 * (sw1 - sw0)) / len(scrapes)
metrics_ms = times[len(times) // 2] * 1000
om_scrapes = [tuple(map(float, l.split())) for l in open(f"{work}/om_scrapes.txt")]
om_times = sorted(t for t, _ in om_scrapes)
om_size = om_scrapes[-1][1]
om_render_cpu = ((om_t1 - om_t0) / hz - cpu / 100 * (ow1 - ow0)) / len(om_scrapes)
om_ms = om_times[len(om_times) // 2] * 1000
pages = {}
for l in open(f"{work}/pages.txt"):
    path, t, n = l.split()
    pages.setdefault(path, []).append((float(t), float(n)))
def page_figures(path):
    loads = sorted(pages[path])
    return loads[len(loads) // 2][0] * 1000, loads[-1][1]
status_ms, status_bytes = page_figures("/")
target = probes == 10000
def goal(text):
    return f"   (target {text})" if target else ""
print(f"authprobe CPU:      {cpu:.2f} % of one core ({cpu - kernel:.2f} % user, {kernel:.2f} % kernel)")
print(f"curl, the floor:    {curl_cpu:.2f} % of one core ({curl_cpu - curl_kernel:.2f} % user, {curl_kernel:.2f} % kernel)"
      f" for the same logins at {curl_rate:.1f}/s, a fresh connection each; authprobe {cpu / curl_cpu:.2f}× curl"
      f"{goal('<= 1.0× curl') if target else ('   (target < 1.0× curl)' if probes == 50000 else '')}")
print(f"simulator CPU:      {sim_cpu:.2f} % of one core (apart; not authprobe's)")
print(f"authprobe peak RSS: {hwm / 1024:.1f} MB{goal('<= 64 MB')}; simulator {sim_hwm / 1024:.1f} MB")
print(f"scheduler delay:    p50 {quantile(0.5) * 1000:.2f} ms, p99 {quantile(0.99) * 1000:.2f} ms, max <= {delay_max * 1000:g} ms;"
      f" {100 * within_5ms:.2f} % of {total:.0f} starts within 5 ms{goal('p99 <= 5 ms')}")
print(f"/metrics:           median {metrics_ms:.1f} ms, max {times[-1] * 1000:.1f} ms, {size / 1e6:.1f} MB,"
      f" authprobe CPU {render_cpu * 1000:.1f} ms per scrape{goal('<= 50 ms')}")
print(f"  in OpenMetrics:   median {om_ms:.1f} ms, max {om_times[-1] * 1000:.1f} ms, {om_size / 1e6:.1f} MB"
      f" ({om_size / size:.2f}× the text), authprobe CPU {om_render_cpu * 1000:.1f} ms per scrape{goal('<= 50 ms')}")
print(f"status page:        median {status_ms:.1f} ms, {status_bytes / 1e6:.2f} MB{goal('<= 100 ms, <= 2 MB')};"
      f" failing only: {page_figures('/?failing=1')[0]:.1f} ms")
print(f"logins:             {runs / wall:.1f}/s achieved vs {probes / interval:.1f}/s planned,"
      f" {100 * ok / runs if runs else 0:.2f} % success, {s1 - s0:.0f} ticks skipped")
cs_per_login = (cs1 - cs0) / runs if runs else float("nan")
print(f"wake-ups:           {cs_per_login:.2f} context switches per login (curl: {curl_cs:.2f})")
with open(csv, "a") as f:
    f.write(",".join(str(round(v, 4)) for v in [
        probes, cpu, cpu - kernel, kernel, sim_cpu, hwm / 1024, quantile(0.5) * 1000, quantile(0.99) * 1000,
        delay_max * 1000, 100 * within_5ms, metrics_ms, times[-1] * 1000, size / 1e6, render_cpu * 1000,
        runs / wall, probes / interval, 100 * ok / runs if runs else 0, s1 - s0, curl_cpu, cs_per_login, curl_cs,
        om_ms, om_size / 1e6, om_render_cpu * 1000, status_ms, status_bytes / 1e6]) + "\n")
PY
    if [ "${PROFILE:-0}" = 1 ]; then
        echo "profile (share of authprobe's samples, by function and by shared object):"
        perf report -i "$OUT_DIR/scale.perf.data" --no-children --sort symbol --percent-limit 0.7 --stdio -g none 2>/dev/null \
            | grep -E '^ +[0-9]' | cut -c1-150 | head -40
        perf report -i "$OUT_DIR/scale.perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -8
    fi
done

echo
echo "growth (per 1,000 probes; flat or falling is linear or better):"
python3 - "$CSV" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(f"{'probes':>8} {'CPU %':>7} {'RSS MB':>7} {'p99 ms':>7} {'/metrics ms':>12} {'CPU %/1k':>9} {'RSS MB/1k':>10} {'/metrics ms/1k':>15}")
for r in rows:
    k = float(r["probes"]) / 1000
    print(f"{int(float(r['probes'])):>8} {float(r['cpu_percent']):>7.2f} {float(r['peak_rss_mb']):>7.1f} {float(r['delay_p99_ms']):>7.2f}"
          f" {float(r['metrics_ms']):>12.1f} {float(r['cpu_percent']) / k:>9.3f} {float(r['peak_rss_mb']) / k:>10.2f}"
          f" {float(r['metrics_ms']) / k:>15.2f}")
PY
if [ "$(wc -l <"$CSV")" -gt 2 ]; then
    gnuplot <<GP
set terminal pngcairo size 1100,760 font "sans,10"
set output "$OUT_DIR/scale.png"
set datafile separator ","
set key autotitle columnhead
set multiplot layout 2,2 title "authprobe run: cost vs probe count (probes every ${INTERVAL}s, $(nproc) cores; dashed: the target at 10,000 probes)"
set logscale xy
set xrange [700:70000]
set xlabel "probes"
set grid
set style line 1 lw 2 pt 7 ps 1.2 lc rgb "#1f6feb"
set style line 2 lw 1 dt 2 lc rgb "#cf222e"
set title "CPU (% of one core; the goal: at most curl's)"
plot "$CSV" using 1:2 with linespoints ls 1 title "authprobe", "$CSV" using 1:19 with linespoints lw 1 pt 4 lc rgb "#2da44e" title "curl, the same logins", "$CSV" using 1:5 with linespoints lw 1 pt 6 lc rgb "#888888" title "simulator (apart)"
set title "peak RSS (MB)"
plot "$CSV" using 1:6 with linespoints ls 1 notitle, 64 ls 2 notitle
set title "scheduler delay p99 (ms)"
plot "$CSV" using 1:8 with linespoints ls 1 notitle, 5 ls 2 notitle
set title "/metrics scrape (ms) and size (MB)"
plot "$CSV" using 1:11 with linespoints ls 1 title "scrape ms", "$CSV" using 1:13 with linespoints lw 1 pt 6 lc rgb "#888888" title "MB", 50 ls 2 notitle
unset multiplot
GP
    echo "plot: $OUT_DIR/scale.png"
fi
echo "figures: $CSV"
