#!/usr/bin/env bash
# What the state store (--storage.path) costs and how fast state comes back, at 10,000 probes.
#
#   bench/store.sh                    # ~10 minutes
#   PROBES=10000 DURATION=60 ROUNDS=2 RESTARTS=5 bench/store.sh
#
# 1. Restart: a store filled as a long-running service would have it (bench/fill_store.rs: every
#    probe with 100 runs, its failures, availability, last outcome; one in 20 backing off). Then
#    RESTARTS times: start `authprobe run` on it, time exec → /-/ready (polled every 10 ms) and the
#    restore the log reports, wait 2 s, SIGKILL. The same starts with --storage.path="" are the
#    reference. Goal (issue 19): no restart over 1 s.
# 2. Running cost: the same probes every INTERVAL against the simulator, with --storage.path=""
#    and with a store, taking turns ROUNDS times (the machine's drift falls on both), each warmed
#    up one interval and measured DURATION seconds: CPU % of one core, peak RSS; for the store,
#    batches written, the last batch's time and size, and the file's size.
set -euo pipefail
cd "$(dirname "$0")/.."

PROBES=${PROBES:-10000}
INTERVAL=${INTERVAL:-60}
DURATION=${DURATION:-60}
ROUNDS=${ROUNDS:-2}
RESTARTS=${RESTARTS:-5}
WARMUP=${WARMUP:-$((INTERVAL + 5))}
SIM_DELAY=${SIM_DELAY:-20ms}
SIM_PORT=${SIM_PORT:-18182}
WEB_PORT=${WEB_PORT:-19872}
ACCOUNTS=${ACCOUNTS:-100}

. bench/common.sh
bench_init
echo "authprobe $($BIN --version | cut -d' ' -f2) on $(nproc) cores; $PROBES probes every ${INTERVAL}s"
gen_config "$PROBES" "$INTERVAL" "$ACCOUNTS" "$SIM_DELAY" "$SIM_PORT"

echo
echo "== restart on a full store"
cargo bench --locked --quiet --bench fill_store -- "$WORK/probes.yaml" "$WORK/full"
du -sh "$WORK/full" | awk '{print "store directory: " $1}'

# start_timed ARGS…: starts authprobe, sets READY_MS to the milliseconds from exec to /-/ready
# and RUN_PID.
start_timed() {
    local t0 t1
    t0=$(date +%s%N)
    "$BIN" --log.level info run --config.file "$WORK/probes.yaml" --web.listen-address "127.0.0.1:$WEB_PORT" "$@" \
        >/dev/null 2>"$WORK/run.log" &
    RUN_PID=$!
    BENCH_PIDS+=("$RUN_PID")
    for _ in $(seq 1 3000); do
        if curl -fs "http://127.0.0.1:$WEB_PORT/-/ready" >/dev/null 2>&1; then
            t1=$(date +%s%N)
            READY_MS=$(((t1 - t0) / 1000000))
            return 0
        fi
        sleep 0.01
    done
    echo "authprobe did not become ready" >&2
    cat "$WORK/run.log" >&2
    exit 1
}

for mode in memory store; do
    worst=0
    line=""
    for i in $(seq 1 "$RESTARTS"); do
        if [ "$mode" = store ]; then
            start_timed --storage.path "$WORK/full"
            restored=$(grep -o 'restored=[0-9]*' "$WORK/run.log" | head -1 | cut -d= -f2)
            took=$(grep -o 'took_ms=[0-9]*' "$WORK/run.log" | head -1 | cut -d= -f2)
            [ "$restored" = "$PROBES" ] || { echo "restored $restored of $PROBES probes" >&2; cat "$WORK/run.log" >&2; exit 1; }
            line+=" ${READY_MS}ms(restore ${took}ms)"
        else
            start_timed --storage.path ""
            line+=" ${READY_MS}ms"
        fi
        [ "$READY_MS" -gt "$worst" ] && worst=$READY_MS
        sleep 2
        kill -9 "$RUN_PID"
        wait "$RUN_PID" 2>/dev/null || true
    done
    if [ "$mode" = store ]; then STORE_WORST=$worst; else MEMORY_WORST=$worst; fi
    printf '%-6s start to ready, %s starts after SIGKILL:%s; slowest %s ms\n' "$mode" "$RESTARTS" "$line" "$worst"
done
echo "slowest restart with the store: $STORE_WORST ms (goal <= 1000 ms); without: $MEMORY_WORST ms"

echo
echo "== running cost ($ROUNDS rounds, the two modes taking turns)"
start_simulator "$SIM_PORT"
declare -A CPUS RSS
for round in $(seq 1 "$ROUNDS"); do
    for mode in memory store; do
        if [ "$mode" = store ]; then
            rm -rf "$WORK/live"
            start_authprobe "$WEB_PORT" --storage.path "$WORK/live"
        else
            start_authprobe "$WEB_PORT" --storage.path ""
        fi
        sleep "$WARMUP"
        T0=$(cpu_ticks "$RUN_PID"); W0=$(date +%s.%N)
        sleep "$DURATION"
        T1=$(cpu_ticks "$RUN_PID"); W1=$(date +%s.%N)
        curl -fs "http://127.0.0.1:$WEB_PORT/metrics" -o "$WORK/metrics.txt"
        HWM_KB=$(hwm_kb "$RUN_PID")
        CPU=$(python3 -c "print(f'{($T1 - $T0) / $(getconf CLK_TCK) / ($W1 - $W0) * 100:.2f}')")
        CPUS[$mode]+="$CPU "
        RSS[$mode]+="$((HWM_KB / 1024)) "
        printf 'round %s %-6s CPU %s %% of one core, peak RSS %s MB\n' "$round" "$mode" "$CPU" "$((HWM_KB / 1024))"
        if [ "$mode" = store ]; then
            python3 - "$WORK/metrics.txt" "$WORK/live" <<'PY'
import os, sys
m = {}
for line in open(sys.argv[1]):
    if line.startswith("authprobe_storage_"):
        k, v = line.split()
        m[k] = float(v)
size = sum(os.path.getsize(os.path.join(sys.argv[2], f)) for f in os.listdir(sys.argv[2]))
failed = m["authprobe_storage_write_failures_total"]
print(f"               store: {m['authprobe_storage_writes_total']:.0f} batches, {failed:.0f} failed; "
      f"the last written in {m['authprobe_storage_last_write_duration_seconds'] * 1000:.1f} ms; files {size / 1e6:.1f} MB")
PY
        fi
        kill "$RUN_PID"
        wait "$RUN_PID" 2>/dev/null || true
    done
done
python3 - "${CPUS[memory]}" "${CPUS[store]}" "${RSS[memory]}" "${RSS[store]}" "$PROBES" <<'PY'
import statistics as st, sys
cm, cs, rm, rs = ([float(x) for x in a.split()] for a in sys.argv[1:5])
print(f"the store adds {st.mean(cs) - st.mean(cm):+.2f} points of CPU ({st.mean(cs) / st.mean(cm):.2f}x: "
      f"{st.mean(cm):.2f} -> {st.mean(cs):.2f} % of one core) and {max(rs) - max(rm):+.0f} MB of peak RSS "
      f"({max(rm):.0f} -> {max(rs):.0f} MB) at {sys.argv[5]} probes")
PY
