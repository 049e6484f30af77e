#!/usr/bin/env bash
# Scrape load and reload under load on `authprobe run` with 10,000 probes (loopback only).
#
#   bench/load.sh                  # 10,000 probes at 60s; 30 s of load, then load with reloads
#   PROBES=1000 bench/load.sh
#   SCRAPES=50 RELOADS=0 bench/load.sh   # the scrape load with 50 renders allowed at once (the
#                                        # default is 4): what the bound saves and costs
#
# 1. Scrape load: CLIENTS (50) concurrent clients on /metrics for LOAD_SECONDS (30) with wrk
#    (Debian's package, installed when missing): requests, errors (non-2xx and socket errors; must be 0), latency
#    p50/p99.
# 2. Reload under load: the same load, kept on until RELOADS (100) POST /-/reload, run one after
#    another, are done and at least one interval has passed, the file alternating between the probes
#    and the probes plus one. Every reload must answer 200 before the load ends, no scrape may
#    fail, and every probe must have run during the phase (none lost by a reload).
set -euo pipefail
cd "$(dirname "$0")/.."

PROBES=${PROBES:-10000}
INTERVAL=${INTERVAL:-60}
CLIENTS=${CLIENTS:-50}
LOAD_SECONDS=${LOAD_SECONDS:-30}
RELOADS=${RELOADS:-100}
WARMUP=${WARMUP:-$((INTERVAL + 5))}
SIM_PORT=${SIM_PORT:-18182}
WEB_PORT=${WEB_PORT:-19872}

. bench/common.sh
install_missing wrk:wrk
bench_init
gen_config "$PROBES" "$INTERVAL" 100 20ms "$SIM_PORT"
cp "$WORK/probes.yaml" "$WORK/probes-a.yaml"
cp "$WORK/probes.yaml" "$WORK/probes-b.yaml"
echo "  - {name: probe-extra, target: sim, username: user0000, password: pw0000}" >>"$WORK/probes-b.yaml"
start_simulator "$SIM_PORT"
start_authprobe "$WEB_PORT" --web.enable-lifecycle ${SCRAPES:+--web.max-concurrent-scrapes "$SCRAPES"}
URL="http://127.0.0.1:$WEB_PORT"

echo "authprobe $($BIN --version | cut -d' ' -f2): $PROBES probes every ${INTERVAL}s, $(nproc) cores; warming up ${WARMUP}s"
sleep "$WARMUP"

# wrk_report FILE LABEL: the figures of one wrk run.
wrk_report() {
    python3 - "$1" "$2" <<'PY'
import re, sys
text, label = open(sys.argv[1]).read(), sys.argv[2]
def secs(v):
    n, unit = re.match(r"([\d.]+)(us|ms|s|m)", v).groups()
    return float(n) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[unit]
lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
requests = int(re.search(r"(\d+) requests in", text).group(1))
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
sock_errors = sum(map(int, sock.groups())) if sock else 0
non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
print(f"{label}: {requests} scrapes ({rate:.1f}/s), errors {non2xx + sock_errors} "
      f"({non2xx} non-2xx, {sock_errors} socket), latency p50 {secs(lat['50']) * 1000:.0f} ms, p99 {secs(lat['99']) * 1000:.0f} ms")
sys.exit(1 if non2xx + sock_errors else 0)
PY
}

STATUS=0
echo "--- scrape load: $CLIENTS clients on /metrics for ${LOAD_SECONDS}s (--web.max-concurrent-scrapes ${SCRAPES:-default})"
SIZE=$(curl -fs -o /dev/null -w '%{size_download}' "$URL/metrics")
echo "peak RSS before the load: $(($(hwm_kb "$RUN_PID") / 1024)) MB"
wrk -t2 -c"$CLIENTS" -d"${LOAD_SECONDS}s" --timeout 60s --latency "$URL/metrics" >"$WORK/wrk-load.txt"
wrk_report "$WORK/wrk-load.txt" "scrape load ($((SIZE / 1000000)) MB per scrape)" || STATUS=1
echo "RSS after the load: $(($(rss_kb "$RUN_PID") / 1024)) MB (peak $(($(hwm_kb "$RUN_PID") / 1024)) MB)"
[ "$RELOADS" -gt 0 ] || exit "$STATUS"

echo "--- reload under load: $RELOADS reloads during the same load (kept on for at least ${INTERVAL}s)"
curl -fs "$URL/metrics" -o "$WORK/before.txt"
: >"$WORK/reloads.txt"
# wrk runs until stopped (SIGINT makes it print its figures): through every reload, and at
# least one interval, so that every probe is due once during the phase.
wrk -t2 -c"$CLIENTS" -d600s --timeout 60s --latency "$URL/metrics" >"$WORK/wrk-reload.txt" &
WRK_PID=$!
PHASE_START=$(date +%s)
sleep 2
for i in $(seq 1 "$RELOADS"); do
    if [ $((i % 2)) -eq 1 ]; then cp "$WORK/probes-b.yaml" "$WORK/probes.yaml"; else cp "$WORK/probes-a.yaml" "$WORK/probes.yaml"; fi
    code_time=$(curl -s -o /dev/null -X POST -w '%{http_code} %{time_total}' --max-time 60 "$URL/-/reload") || true
    echo "${code_time:-000 0} $(date +%s.%N)" >>"$WORK/reloads.txt"
done
while [ $(($(date +%s) - PHASE_START)) -lt $((INTERVAL + 5)) ]; do sleep 1; done
kill -INT "$WRK_PID"
wait "$WRK_PID" || true
LOAD_ENDED=$(date +%s.%N)
curl -fs "$URL/metrics" -o "$WORK/after.txt"
wrk_report "$WORK/wrk-reload.txt" "scrapes during reloads" || STATUS=1
python3 - "$WORK" "$PROBES" "$RELOADS" "$LOAD_ENDED" <<'PY' || STATUS=1
import re, sys
work, probes, reloads, load_ended = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rows = [l.split() for l in open(f"{work}/reloads.txt")]
codes = [r[0] for r in rows]
times = sorted(float(r[1]) for r in rows)
failed = sum(c != "200" for c in codes)
late = sum(float(r[2]) > load_ended for r in rows)
print(f"reloads: {len(rows)} of {reloads} in {sum(times):.1f} s, {failed} not 200, {late} after the load ended, "
      f"each p50 {times[len(times) // 2] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")
def runs(path):
    out = {}
    for line in open(path):
        if line.startswith("authprobe_probe_runs_total{"):
            name = re.search(r'probe="([^"]+)"', line).group(1)
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out
before, after = runs(f"{work}/before.txt"), runs(f"{work}/after.txt")
kept = [p for p in after if p != "probe-extra"]
stalled = [p for p in kept if after[p] <= before.get(p, 0.0)]
print(f"probes after the reloads: {len(kept)} of {probes} (extra probe present: {'probe-extra' in after}), "
      f"{len(stalled)} without a run during the phase")
sys.exit(1 if failed or late or len(rows) != reloads or len(kept) != probes or stalled or "probe-extra" in after else 0)
PY
echo "RSS at the end: $(($(rss_kb "$RUN_PID") / 1024)) MB (peak $(($(hwm_kb "$RUN_PID") / 1024)) MB)"
exit "$STATUS"
