# Shared by the bench scripts: build, write a probes file, start the simulator and authprobe on
# loopback, wait for readiness, read a process's resources, clean up. Source it; set WORK first
# (bench_init does).

# install_missing COMMAND:PACKAGE…: installs, from Debian's packages, those whose command is
# missing.
install_missing() {
    local missing=()
    for pair in "$@"; do command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing ${missing[*]}"
    # A fresh machine has no package lists yet.
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Builds the release binary (or takes $AUTHPROBE_BIN, e.g. one built with frame pointers for
# profiling) and makes a work directory removed on exit, with every process the script started.
bench_init() {
    command -v python3 >/dev/null || { echo "$0 needs python3" >&2; exit 1; }
    command -v curl >/dev/null || { echo "$0 needs curl (apt-get install curl)" >&2; exit 1; }
    if [ -n "${AUTHPROBE_BIN:-}" ]; then
        BIN=$AUTHPROBE_BIN
    else
        cargo build --release --locked --quiet
        BIN=target/release/authprobe
    fi
    WORK=$(mktemp -d)
    BENCH_PIDS=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for pid in "${BENCH_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}

# gen_config PROBES INTERVAL_S ACCOUNTS SIM_DELAY SIM_PORT: $WORK/accounts.yaml (password-only
# accounts with a delay) and $WORK/probes.yaml (PROBES probes spread over them, 10 teams).
gen_config() {
    python3 - "$WORK" "$@" <<'PY'
import sys
work, probes, interval, accounts, delay, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
with open(f"{work}/accounts.yaml", "w") as f:
    f.write("app_keys: [bench-app-key]\naccounts:\n")
    for a in range(accounts):
        f.write(f"  - {{username: user{a:04d}, password: pw{a:04d}, delay: {delay}}}\n")
with open(f"{work}/probes.yaml", "w") as f:
    f.write(f"defaults: {{interval: {interval}s, timeout: 10s}}\n")
    f.write(f"targets:\n  - {{name: sim, base_url: 'http://127.0.0.1:{port}/api', app_key: bench-app-key}}\n")
    f.write("probes:\n")
    for p in range(probes):
        a = p % accounts
        f.write(f"  - {{name: probe-{p:05d}, target: sim, username: user{a:04d}, password: pw{a:04d}, labels: {{team: t{p % 10}}}}}\n")
PY
}

# start_simulator PORT: serves $WORK/accounts.yaml; sets SIM_PID.
start_simulator() {
    "$BIN" --log.level warn simulate --accounts "$WORK/accounts.yaml" --listen "127.0.0.1:$1" >/dev/null 2>"$WORK/sim.log" &
    SIM_PID=$!
    BENCH_PIDS+=("$SIM_PID")
}

# start_authprobe WEB_PORT [ARGS…]: `authprobe run` on $WORK/probes.yaml, its state store in
# $WORK/data unless ARGS name another, waits until ready (20 s at most); sets RUN_PID.
start_authprobe() {
    local port=$1
    shift
    # The state store goes in the work directory (not the checkout's data/) unless asked for.
    local storage=(--storage.path "$WORK/data")
    case " $* " in *" --storage.path "*) storage=() ;; esac
    "$BIN" --log.level warn run --config.file "$WORK/probes.yaml" --web.listen-address "127.0.0.1:$port" \
        "${storage[@]}" "$@" 2>"$WORK/run.log" &
    RUN_PID=$!
    BENCH_PIDS+=("$RUN_PID")
    for _ in $(seq 1 200); do
        curl -fs "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "authprobe did not become ready" >&2
    cat "$WORK/run.log" >&2
    exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sys_ticks() { awk '{print $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
threads() { awk '/Threads/ {print $2}' "/proc/$1/status"; }
# Context switches (voluntary and not) of every live thread of a process: its wake-ups.
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {n += $2} END {print n + 0}'; }
open_fds() { ls "/proc/$1/fd" | wc -l; }
