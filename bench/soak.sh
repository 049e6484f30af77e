#!/usr/bin/env bash
# Soak of `authprobe run`: 1,000 probes covering every server fault of the fault matrix (and
# healthy, PIN and verification-code logins) for 15 minutes, on loopback only.
#
#   bench/soak.sh                          # 1,000 probes at 3s for 900 s, after a 310 s warm-up
#   DURATION=120 bench/soak.sh             # a short look
#
# Samples authprobe's RSS, open file descriptors, threads and alive runtime tasks every SAMPLE
# seconds and prints them with the growth from the first sample to the last. The warm-up lasts
# until every probe's history (its last 100 runs, a bounded buffer) is full: before that, RSS grows
# by design (some 1.4 MB for 1,000 probes), which would hide a leak or fake one. Passes if RSS grows by at most 5 % and descriptors and tasks end within 10 % (or
# 20) of where they started.
set -euo pipefail
cd "$(dirname "$0")/.."

PROBES=${PROBES:-1000}
INTERVAL=${INTERVAL:-3}
TIMEOUT=${TIMEOUT:-2s}
DURATION=${DURATION:-900}
SAMPLE=${SAMPLE:-60}
WARMUP=${WARMUP:-$((INTERVAL * 100 + 10))}
SIM_PORT=${SIM_PORT:-18183}
TLS_PORT=${TLS_PORT:-18184}
WEB_PORT=${WEB_PORT:-19873}

command -v openssl >/dev/null || { echo "bench/soak.sh needs openssl" >&2; exit 1; }
. bench/common.sh
bench_init

FAULTS="stall slow_drip headers_then_stall close_without_response reset_mid_body oversized truncated_json
wrong_shape json_string empty_object html redirect_loop not_found server_error server_error_model
unavailable unknown_step endless202 random_reason non_utf8"
# A TLS server whose certificate names another host: authprobe must refuse it (tls_error).
openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=wrong-name.example" -addext "subjectAltName=DNS:wrong-name.example" \
    -keyout "$WORK/wrong.key" -out "$WORK/wrong.crt" -days 2 2>/dev/null
python3 - "$WORK" "$TLS_PORT" <<'PY' &
import http.server, ssl, sys
work, port = sys.argv[1], int(sys.argv[2])
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(f"{work}/wrong.crt", f"{work}/wrong.key")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
PY
BENCH_PIDS+=("$!")

python3 - "$WORK" "$PROBES" "$INTERVAL" "$TIMEOUT" "$SIM_PORT" "$TLS_PORT" $FAULTS <<'PY'
import socket, sys
work, probes, interval, timeout, port, tls_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
faults = sys.argv[7:]
s = socket.socket(); s.bind(("127.0.0.1", 0)); closed = s.getsockname()[1]; s.close()
accounts = [f"  - {{username: {f}, password: pw, fault: {f}}}" for f in faults]
accounts += ["  - {username: healthy, password: pw}", "  - {username: pinned, password: pw, pin: '1234'}",
             "  - {username: coded, password: pw, verification_code: '765432'}"]
with open(f"{work}/accounts.yaml", "w") as f:
    f.write("app_keys: [soak-app-key]\naccounts:\n" + "\n".join(accounts) + "\n")
# endless202 alternates both steps: a probe that can answer both meets its step limit.
kinds = [(f, "sim", f, ", pin: '1', verification_code: '2'" if f == "endless202" else "") for f in faults]
kinds += [("healthy", "sim", "healthy", ""), ("pinned", "sim", "pinned", ", pin: '1234'"),
          ("coded", "sim", "coded", ", verification_code: '765432'")]
kinds += [(t, t, "healthy", "") for t in ("refused", "unresolvable", "tls_to_plain", "wrong_name")]
with open(f"{work}/probes.yaml", "w") as f:
    f.write(f"defaults: {{interval: {interval}s, timeout: {timeout}, max_steps: 4, lockout_guard: {{max_failures: 0}}}}\n")
    f.write("targets:\n")
    f.write(f"  - {{name: sim, base_url: 'http://127.0.0.1:{port}/api', app_key: soak-app-key}}\n")
    f.write(f"  - {{name: refused, base_url: 'http://127.0.0.1:{closed}/api', app_key: soak-app-key}}\n")
    f.write(f"  - {{name: unresolvable, base_url: 'http://authprobe-soak.invalid/api', app_key: soak-app-key}}\n")
    f.write(f"  - {{name: tls_to_plain, base_url: 'https://127.0.0.1:{port}/api', app_key: soak-app-key}}\n")
    f.write(f"  - {{name: wrong_name, base_url: 'https://127.0.0.1:{tls_port}/api', app_key: soak-app-key, tls: {{ca_file: {work}/wrong.crt}}}}\n")
    f.write("probes:\n")
    for p in range(probes):
        kind, target, user, extra = kinds[p % len(kinds)]
        f.write(f"  - {{name: {kind}-{p:04d}, target: {target}, username: {user}, password: pw{extra}}}\n")
print(f"{probes} probes over {len(kinds)} behaviours")
PY
start_simulator "$SIM_PORT"
start_authprobe "$WEB_PORT" --log.level error
URL="http://127.0.0.1:$WEB_PORT"
echo "authprobe $($BIN --version | cut -d' ' -f2): $PROBES probes every ${INTERVAL}s (timeout $TIMEOUT) for ${DURATION}s, $(nproc) cores; warming up ${WARMUP}s"
sleep "$WARMUP"

tasks() { curl -fs "$URL/metrics" | awk '/^authprobe_runtime_alive_tasks / {print $2}'; }
: >"$WORK/samples.txt"
START=$(date +%s)
while :; do
    NOW=$(($(date +%s) - START))
    echo "$NOW $(rss_kb "$RUN_PID") $(open_fds "$RUN_PID") $(threads "$RUN_PID") $(tasks)" >>"$WORK/samples.txt"
    [ "$NOW" -ge "$DURATION" ] && break
    sleep "$(( SAMPLE < DURATION - NOW ? SAMPLE : DURATION - NOW ))"
done
curl -fs "$URL/metrics" -o "$WORK/metrics.txt"

python3 - "$WORK" <<'PY'
import re, sys
work = sys.argv[1]
rows = [list(map(float, l.split())) for l in open(f"{work}/samples.txt")]
print(f"{'seconds':>8} {'RSS MB':>8} {'fds':>6} {'threads':>8} {'tasks':>7}")
for t, rss, fds, threads, tasks in rows:
    print(f"{t:8.0f} {rss / 1024:8.1f} {fds:6.0f} {threads:8.0f} {tasks:7.0f}")
first, last = rows[0], rows[-1]
growth = 100 * (last[1] - first[1]) / first[1]
runs = {}
for line in open(f"{work}/metrics.txt"):
    if line.startswith("authprobe_probe_runs_total{"):
        r = re.search(r'result="([^"]+)"', line).group(1)
        runs[r] = runs.get(r, 0) + float(line.rsplit(" ", 1)[1])
print("runs by result: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(runs.items()) if v))
print(f"RSS {first[1] / 1024:.1f} -> {last[1] / 1024:.1f} MB ({growth:+.1f} %, limit +5 %); "
      f"fds {first[2]:.0f} -> {last[2]:.0f}; threads {first[3]:.0f} -> {last[3]:.0f}; tasks {first[4]:.0f} -> {last[4]:.0f}")
bounded = lambda a, b: b <= max(a * 1.1, a + 20)
ok = growth <= 5 and bounded(first[2], last[2]) and bounded(first[4], last[4])
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
