#!/usr/bin/env bash
# Measurement overhead: how much of a reported login time is the tool's own, against curl and
# Debian's prometheus-blackbox-exporter, in one interleaved run on loopback.
#
#   bench/overhead.sh                 # 200 rounds, 50 ms server delay
#   ROUNDS=500 bench/overhead.sh
#
# The simulator serves four identical accounts (one per tool) whose /token answers take a fixed
# DELAY; it measures its own time over each answer at the socket, from the first byte of the
# request read to the last byte of the answer written (GET /_sim/server-seconds/USER). Each round runs,
# one after another, one login by each tool:
#   curl            curl -w '%{time_total}': one process, one fresh connection (the floor)
#   authprobe probe `authprobe probe NAME --output json`: its duration_seconds
#   authprobe run   GET /probe?probe=NAME on a running `authprobe run`: the exported
#                   authprobe_probe_duration_seconds of that run
#   blackbox        GET /probe of prometheus-blackbox-exporter with an http module sending the same
#                   POST and headers: probe_duration_seconds
# and subtracts the server's time for that very request. Then, as an operator runs it, for
# SCHEDULED seconds (default 120): a second `authprobe run` logs in on schedule once a second
# (its runs' durations read from /api/v1/probes/NAME), and curl logs in once a second half a
# second away from it, both idle in between; each login's server time is subtracted again. Prints median and p95 of each tool's
# overhead and the ratios; writes the samples to $OUT (default target/bench/overhead.csv) and,
# with gnuplot (Debian's gnuplot-nox), the distributions to overhead.png beside it (scheduled runs
# dashed).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-200}
SCHEDULED=${SCHEDULED:-120}
SCHED_WEB_PORT=${SCHED_WEB_PORT:-19876}
DELAY=${DELAY:-50ms}
SIM_PORT=${SIM_PORT:-18185}
WEB_PORT=${WEB_PORT:-19874}
BB_PORT=${BB_PORT:-19875}
OUT=${OUT:-target/bench/overhead.csv}

. bench/common.sh
install_missing prometheus-blackbox-exporter:prometheus-blackbox-exporter gnuplot:gnuplot-nox
bench_init

cat >"$WORK/accounts.yaml" <<YAML
app_keys: [bench-app-key]
accounts:
  - {username: curl, password: pw, delay: $DELAY}
  - {username: cli, password: pw, delay: $DELAY}
  - {username: run, password: pw, delay: $DELAY}
  - {username: blackbox, password: pw, delay: $DELAY}
  - {username: sched, password: pw, delay: $DELAY}
  - {username: curl-sched, password: pw, delay: $DELAY}
YAML
cat >"$WORK/probes.yaml" <<YAML
defaults: {interval: 24h, timeout: 5s}
targets:
  - {name: sim, base_url: 'http://127.0.0.1:$SIM_PORT/api', app_key: bench-app-key}
probes:
  - {name: cli, target: sim, username: cli, password: pw}
  - {name: run, target: sim, username: run, password: pw}
YAML
cat >"$WORK/blackbox.yml" <<YAML
modules:
  etna_login:
    prober: http
    timeout: 5s
    http:
      method: POST
      preferred_ip_protocol: ip4
      valid_status_codes: [200]
      headers:
        Accept: application/json
        Content-Length: "0"
        Et-App-Key: bench-app-key
        Username: blackbox
        Password: pw
YAML

start_simulator "$SIM_PORT"
start_authprobe "$WEB_PORT" --probe.on-demand-min-interval 1ms
prometheus-blackbox-exporter --config.file "$WORK/blackbox.yml" --web.listen-address "127.0.0.1:$BB_PORT" \
    --log.level warn 2>"$WORK/blackbox.log" &
BENCH_PIDS+=("$!")
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$BB_PORT/-/healthy" >/dev/null 2>&1 && break; sleep 0.1; done

echo "authprobe $($BIN --version | cut -d' ' -f2), $(curl --version | head -1 | cut -d' ' -f1-2)," \
    "blackbox_exporter $(prometheus-blackbox-exporter --version 2>&1 | head -1 | awk '{print $3}'); $(nproc) cores"
echo "$ROUNDS rounds of one login per tool, server delay $DELAY"
mkdir -p "$(dirname "$OUT")"
python3 - "$BIN" "$WORK" "$ROUNDS" "$SIM_PORT" "$WEB_PORT" "$BB_PORT" "$OUT" <<'PY'
import json, re, statistics, subprocess, sys, time, urllib.request
binary, work, rounds, sim, web, bb, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
token_url = f"http://127.0.0.1:{sim}/api/token"

def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()

seen = {}

def server_time(user):
    # The simulator records an answer as its last byte is written, which can be a moment after
    # the client has read it: wait for this login's entry.
    for _ in range(200):
        times = json.loads(get(f"http://127.0.0.1:{sim}/_sim/server-seconds/{user}"))
        if len(times) > seen.get(user, 0):
            seen[user] = len(times)
            return times[-1]
        time.sleep(0.005)
    raise SystemExit(f"the simulator recorded no time for {user}'s login")

def metric(text, name):
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1))

def curl():
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-d", "", "-H", "Accept: application/json",
                        "-H", "Et-App-Key: bench-app-key", "-H", "Username: curl", "-H", "Password: pw",
                        "-w", "%{http_code} %{time_total}", token_url], capture_output=True, text=True, check=True)
    code, took = r.stdout.split()
    assert code == "200", r.stdout
    return float(took)

def cli():
    r = subprocess.run([binary, "--log.level", "error", "probe", "cli", "--config.file", f"{work}/probes.yaml",
                        "--output", "json"], capture_output=True, text=True)
    v = json.loads(r.stdout)
    assert v["result"] == "success", r.stdout
    return v["duration_seconds"]

def run():
    text = get(f"http://127.0.0.1:{web}/probe?probe=run")
    assert metric(text, "authprobe_probe_success") == 1.0, text
    return metric(text, "authprobe_probe_duration_seconds")

def blackbox():
    text = get(f"http://127.0.0.1:{bb}/probe?module=etna_login&target={token_url}")
    assert metric(text, "probe_success") == 1.0, text
    return metric(text, "probe_duration_seconds")

tools = [("curl", curl, "curl"), ("authprobe probe", cli, "cli"), ("authprobe run", run, "run"),
         ("blackbox_exporter", blackbox, "blackbox")]
for _, measure, user in tools:  # one warm-up login each
    measure()
    server_time(user)
samples = {name: [] for name, _, _ in tools}
raw = {name: [] for name, _, _ in tools}
server = []
for i in range(rounds):
    for name, measure, user in tools:
        took = measure()
        s = server_time(user)
        samples[name].append(took - s)
        raw[name].append(took)
        server.append(s)

def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))]

with open(out, "w") as f:
    f.write("tool,round,reported_seconds,overhead_seconds\n")
    for name in samples:
        for i, (r, o) in enumerate(zip(raw[name], samples[name])):
            f.write(f"{name},{i},{r:.6f},{o:.6f}\n")
print(f"server's own time per login: median {statistics.median(server) * 1000:.3f} ms, p95 {q(server, 0.95) * 1000:.3f} ms")
print(f"{'tool':<20}{'reported median':>16}{'overhead median':>17}{'overhead p95':>14}")
for name in samples:
    print(f"{name:<20}{statistics.median(raw[name]) * 1000:>13.3f} ms{statistics.median(samples[name]) * 1000:>14.3f} ms"
          f"{q(samples[name], 0.95) * 1000:>11.3f} ms")
m = {name: statistics.median(v) for name, v in samples.items()}
for a in ("authprobe probe", "authprobe run"):
    print(f"{a}: overhead {m[a] / m['curl']:.2f}× curl's, {m[a] / m['blackbox_exporter']:.2f}× blackbox_exporter's")
print(f"median overhead beyond curl's (the same fresh connection and request): "
      + ", ".join(f"{a} {(m[a] - m['curl']) * 1000:+.3f} ms" for a in ("authprobe probe", "authprobe run", "blackbox_exporter")))
print(f"samples: {out}")
# Empirical distribution of each tool's overhead, for the plot.
with open(out.replace(".csv", "-cdf.dat"), "w") as f:
    for name in samples:
        v = sorted(samples[name])
        f.write(f'"{name}"\n')
        for i, o in enumerate(v):
            f.write(f"{o * 1000:.4f} {(i + 1) / len(v):.4f}\n")
        f.write("\n\n")
PY

if [ "$SCHEDULED" -gt 0 ]; then
    # Scheduled runs, as an operator has them: another instance, one probe every second.
    ON_DEMAND_PID=$RUN_PID
    sed -e 's/interval: 24h, timeout: 5s/interval: 1s, timeout: 900ms/' -e '/name: cli\|name: run/d' "$WORK/probes.yaml" >"$WORK/sched.yaml"
    echo "  - {name: sched, target: sim, username: sched, password: pw}" >>"$WORK/sched.yaml"
    kill "$ON_DEMAND_PID" 2>/dev/null || true
    cp "$WORK/sched.yaml" "$WORK/probes.yaml"
    start_authprobe "$SCHED_WEB_PORT" --storage.path "$WORK/data-sched"
    echo "scheduled: ${SCHEDULED}s of one login a second by authprobe run and by curl, half a second apart"
    python3 - "$WORK" "$SIM_PORT" "$SCHED_WEB_PORT" "$SCHEDULED" "${OUT%.csv}-scheduled.csv" <<'PY'
import json, statistics, subprocess, sys, time, urllib.request
work, sim, web, seconds, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
get = lambda url: json.loads(urllib.request.urlopen(url, timeout=10).read().decode())
token_url = f"http://127.0.0.1:{sim}/api/token"
def runs():
    return get(f"http://127.0.0.1:{web}/api/v1/probes/sched")["history"]
# Wait for the first scheduled run: its second's fraction is the probe's phase.
deadline = time.time() + 10
while not runs():
    assert time.time() < deadline, "no scheduled run"
    time.sleep(0.05)
# The probe's runs land at a fixed fraction of each second (its phase): seen as the moment a new
# run appears; curl goes half a second after it.
last_seen = runs()[0]
offset = None
while offset is None:
    h = runs()
    if h[0] != last_seen:
        offset = (time.time() % 1.0) + 0.5
    time.sleep(0.01)
curl_times = []
end = time.time() + seconds
while time.time() < end:
    now = time.time()
    wait = (offset - now % 1.0) % 1.0
    time.sleep(wait)
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-d", "", "-H", "Accept: application/json",
                        "-H", "Et-App-Key: bench-app-key", "-H", "Username: curl-sched", "-H", "Password: pw",
                        "-w", "%{http_code} %{time_total}", token_url], capture_output=True, text=True, check=True)
    code, took = r.stdout.split()
    assert code == "200", r.stdout
    curl_times.append(float(took))
time.sleep(1.5)
history = list(reversed(runs()))  # oldest first, at most 100
server = get(f"http://127.0.0.1:{sim}/_sim/server-seconds/sched")
assert all(r["result"] == "success" for r in history)
# The last len(history) logins the simulator answered for sched are these runs, in order.
server = server[-len(history):]
ap = [r["duration_seconds"] - s for r, s in zip(history, server)]
cs = get(f"http://127.0.0.1:{sim}/_sim/server-seconds/curl-sched")[-len(curl_times):]
cu = [t - s for t, s in zip(curl_times, cs)]
def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))]
with open(out, "w") as f:
    f.write("tool,overhead_seconds\n")
    for name, v in (("authprobe run (scheduled)", ap), ("curl (once a second)", cu)):
        for o in v:
            f.write(f"{name},{o:.6f}\n")
for name, v in (("curl, once a second", cu), ("authprobe run, scheduled", ap)):
    print(f"{name:<26} {len(v):>4} logins: overhead median {statistics.median(v) * 1000:.3f} ms, p95 {q(v, 0.95) * 1000:.3f} ms")
print(f"scheduled authprobe run: overhead {statistics.median(ap) / statistics.median(cu):.2f}× curl's (median); samples: {out}")
with open(out.replace(".csv", "-cdf.dat"), "w") as f:
    for name, v in (("curl, once a second", cu), ("authprobe run, scheduled", ap)):
        f.write(f'"{name}"\n')
        for i, o in enumerate(sorted(v)):
            f.write(f"{o * 1000:.4f} {(i + 1) / len(v):.4f}\n")
        f.write("\n\n")
PY
fi
CDF=${OUT%.csv}-cdf.dat
SCHED_CDF=${OUT%.csv}-scheduled-cdf.dat
PNG=${OUT%.csv}.png
# The scheduled runs, when measured, as dashed lines beside the on-demand ones.
SCHED_PLOT=""
SCHED_TITLE=""
if [ "$SCHEDULED" -gt 0 ] && [ -s "$SCHED_CDF" ]; then
    SCHED_PLOT=", for [i=0:1] \"$SCHED_CDF\" index i using 1:2 with lines lw 2 dt 2 lc (i == 0 ? 1 : 3) title columnheader(1)"
    SCHED_TITLE="\\ndashed: once a second for ${SCHEDULED}s, authprobe run on its schedule and curl half a second apart"
fi
gnuplot <<GP
set terminal pngcairo size 900,520 font "sans,10"
set termoption noenhanced
set output "$PNG"
set title "Measurement overhead per login: reported time minus the server's own ($ROUNDS logins each, server delay $DELAY, loopback)$SCHED_TITLE"
set xlabel "overhead (ms)"
set ylabel "share of logins at or below"
set xrange [0:2]
set yrange [0:1]
set grid
set key right bottom
plot for [i=0:3] "$CDF" index i using 1:2 with lines lw 2 title columnheader(1)$SCHED_PLOT
GP
echo "plot: $PNG"
