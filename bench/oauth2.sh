#!/usr/bin/env bash
# What an OAuth 2.0 probe costs, and what JWT verification adds to it, against curl making the
# same token request, in one run on loopback against the simulator's authorization server.
#
#   bench/oauth2.sh                          # 200 rounds; then 500 probes for 60 s each way
#   ROUNDS=500 PROBES=1000 DURATION=120 bench/oauth2.sh
#
# Latency: each round makes, one after another, a client_credentials token request with
#   curl            curl -u client:secret -d grant_type=client_credentials: time_total
#   authprobe       GET /probe?probe=plain on a running `authprobe run` (no validation)
#   authprobe+jwt   GET /probe?probe=jwt: the same, then the access token (ES256) verified
#                   against the cached JWKS: signature, iss, aud, exp, nbf, iat
# and reports each one's median and p95 duration; the median difference of the last two is the
# time JWT verification adds to a run.
# CPU: PROBES probes of each kind, every INTERVAL seconds, scheduled by `authprobe run` for
# DURATION seconds: authprobe's CPU time per login, against the CPU of one curl process making
# the same request (the floor of a shell-script prober).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-200}
PROBES=${PROBES:-500}
INTERVAL=${INTERVAL:-10}
DURATION=${DURATION:-60}
SIM_PORT=${SIM_PORT:-18186}
WEB_PORT=${WEB_PORT:-19876}

. bench/common.sh
bench_init

cat >"$WORK/accounts.yaml" <<YAML
accounts: []
oauth2:
  clients:
    - {client_id: curl, client_secret: bench-secret, grants: [client_credentials]}
    - {client_id: plain, client_secret: bench-secret, grants: [client_credentials]}
    - {client_id: jwt, client_secret: bench-secret, grants: [client_credentials]}
YAML
issuer="http://127.0.0.1:$SIM_PORT/oauth2"
probes_file() { # probes_file COUNT_PLAIN COUNT_JWT INTERVAL
    python3 - "$WORK/probes.yaml" "$issuer" "$@" <<'PY'
import sys
path, issuer, plain, jwt, interval = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
with open(path, "w") as f:
    f.write(f"defaults: {{interval: {interval}, timeout: 5s, lockout_guard: {{max_failures: 0}}}}\n")
    f.write("targets:\n")
    for name in ("plain", "jwt"):
        f.write(f"  - {{name: {name}, protocol: oauth2, issuer: '{issuer}', client_id: {name}, client_secret: bench-secret}}\n")
    f.write("probes:\n")
    for i in range(plain):
        f.write(f"  - {{name: plain{i if plain > 1 else ''}, target: plain, grant: client_credentials, audience: api}}\n")
    for i in range(jwt):
        f.write(f"  - {{name: jwt{i if jwt > 1 else ''}, target: jwt, grant: client_credentials, audience: api, validate: jwt}}\n")
PY
}

start_simulator "$SIM_PORT"
for _ in $(seq 1 100); do curl -fs "$issuer/.well-known/openid-configuration" >/dev/null 2>&1 && break; sleep 0.1; done
probes_file 1 1 24h
start_authprobe "$WEB_PORT" --probe.on-demand-min-interval 1ms

echo "authprobe $($BIN --version | cut -d' ' -f2), $(curl --version | head -1 | cut -d' ' -f1-2); $(nproc) cores"
echo "latency: $ROUNDS rounds of one client_credentials login per tool"
python3 - "$ROUNDS" "$SIM_PORT" "$WEB_PORT" <<'PY'
import re, statistics, subprocess, sys, urllib.request
rounds, sim, web = int(sys.argv[1]), sys.argv[2], sys.argv[3]
token_url = f"http://127.0.0.1:{sim}/oauth2/token"

def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()

def metric(text, name):
    return float(re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M).group(1))

def curl():
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-u", "curl:bench-secret", "-d", "grant_type=client_credentials",
                        "-d", "audience=api", "-w", "%{http_code} %{time_total}", token_url],
                       capture_output=True, text=True, check=True)
    code, took = r.stdout.split()
    assert code == "200", r.stdout
    return float(took)

def probe(name):
    def measure():
        text = get(f"http://127.0.0.1:{web}/probe?probe={name}")
        assert metric(text, "authprobe_probe_success") == 1.0, text
        return metric(text, "authprobe_probe_duration_seconds")
    return measure

tools = [("curl", curl), ("authprobe", probe("plain")), ("authprobe+jwt", probe("jwt"))]
for _, measure in tools:  # warm-up: the first run of each probe also fetches discovery and the JWKS
    measure()
samples = {name: [] for name, _ in tools}
for _ in range(rounds):
    for name, measure in tools:
        samples[name].append(measure())

def q(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))]

print(f"{'tool':<16}{'median':>12}{'p95':>12}")
for name, v in samples.items():
    print(f"{name:<16}{statistics.median(v) * 1000:>9.3f} ms{q(v, 0.95) * 1000:>9.3f} ms")
m = {n: statistics.median(v) for n, v in samples.items()}
print(f"authprobe: {m['authprobe'] / m['curl']:.2f}× curl's time; authprobe+jwt: {m['authprobe+jwt'] / m['curl']:.2f}×")
print(f"JWT verification adds {(m['authprobe+jwt'] - m['authprobe']) * 1000:+.3f} ms to a run (median difference)")
PY
kill "$RUN_PID" 2>/dev/null || true
wait "$RUN_PID" 2>/dev/null || true

# CPU per login of curl, over 200 processes.
curl_cpu=$(python3 - "$SIM_PORT" <<'PY'
import resource, subprocess, sys
url = f"http://127.0.0.1:{sys.argv[1]}/oauth2/token"
before = resource.getrusage(resource.RUSAGE_CHILDREN)
n = 200
for _ in range(n):
    subprocess.run(["curl", "-s", "-o", "/dev/null", "-u", "curl:bench-secret", "-d", "grant_type=client_credentials",
                    "-d", "audience=api", url], check=True)
after = resource.getrusage(resource.RUSAGE_CHILDREN)
print((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / n)
PY
)
tick=$(getconf CLK_TCK)
echo "CPU: $PROBES probes every ${INTERVAL}s for ${DURATION}s; curl: $(python3 -c "print(f'{$curl_cpu * 1000:.3f}')") ms of CPU per login"
for kind in plain jwt; do
    if [ "$kind" = plain ]; then probes_file "$PROBES" 0 "${INTERVAL}s"; else probes_file 0 "$PROBES" "${INTERVAL}s"; fi
    start_authprobe "$WEB_PORT"
    # One interval for every probe's first run (discovery, JWKS), then measure.
    sleep "$INTERVAL"
    runs_before=$(curl -fs "http://127.0.0.1:$WEB_PORT/metrics" | awk '/^authprobe_probe_runs_total/ {n += $NF} END {print n}')
    ticks_before=$(cpu_ticks "$RUN_PID")
    sleep "$DURATION"
    ticks_after=$(cpu_ticks "$RUN_PID")
    metrics=$(curl -fs "http://127.0.0.1:$WEB_PORT/metrics")
    runs_after=$(echo "$metrics" | awk '/^authprobe_probe_runs_total/ {n += $NF} END {print n}')
    ok=$(echo "$metrics" | awk '/^authprobe_probe_runs_total\{.*result="success"/ {n += $NF} END {print n}')
    rss=$(rss_kb "$RUN_PID")
    python3 - "$kind" "$ticks_before" "$ticks_after" "$tick" "$runs_before" "$runs_after" "$ok" "$curl_cpu" "$rss" "$DURATION" <<'PY'
import sys
kind, t0, t1, tick, r0, r1, ok, curl, rss, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8]), int(sys.argv[9]), float(sys.argv[10])
runs = r1 - r0
cpu = (t1 - t0) / tick
per = cpu / runs
print(f"  {('validate: jwt' if kind == 'jwt' else 'no validation'):<14} {runs:.0f} logins ({ok / r1 * 100:.1f} % success), "
      f"{cpu / duration * 100:.1f} % of a core, {per * 1000:.3f} ms of CPU per login = {per / curl:.2f}× curl's; RSS {rss / 1024:.1f} MB")
PY
    kill "$RUN_PID" 2>/dev/null || true
    wait "$RUN_PID" 2>/dev/null || true
done
