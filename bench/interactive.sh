#!/usr/bin/env bash
# What an interactive login (the authorization code grant through the identity provider's own
# pages: username and password, a TOTP code, consent, then the token exchange) costs authprobe,
# against headless Chromium making the same login as a browser check does, in one run on loopback
# against the simulator's login pages.
#
#   bench/interactive.sh                                   # about 3 minutes, and a build if needed
#   PROBES=2000 INTERVAL=60 DURATION=120 LOGINS=60 LAUNCHES=20 bench/interactive.sh
#
# Chromium: Debian's package, driven by puppeteer-core (bench/browser, pinned, installed with
# npm ci; no browser is downloaded), headless, a fresh profile directory per launch. Each login
# builds the authorization URL (PKCE S256, state, nonce), types the username and password, the
# TOTP code (RFC 6238, computed in Node), approves consent, answers the redirect to the redirect
# URI itself (CDP Fetch, only that URL is paused: it never reaches a network) and exchanges the
# code at the token endpoint with Node's fetch. Two ways:
#   browser check   launched once, a fresh incognito context per login: WARMUP logins, then
#                   LOGINS measured (the launch is reported apart);
#   launch a login  launched, one login, closed, LAUNCHES times.
# CPU: utime+stime of Node and every Chromium process, the exited ones included (their parents'
# cutime; the harness is a child subreaper, so nothing escapes to init), read from /proc between
# phases while nothing runs. Memory: the process tree's summed RSS (and PSS, which counts pages
# shared between Chromium's processes once), sampled every 100 ms (PSS every 500 ms); the peak of
# each phase.
# authprobe: `authprobe run` with PROBES interactive probes, each with its own account and TOTP
# secret (a code's time step is good once), every INTERVAL seconds; after one interval (every
# probe's first run, with discovery), DURATION seconds measured: the process's CPU time per login
# (/proc/PID/stat; logins from its /metrics), and its peak RSS (VmHWM, since its start).
# The simulator runs in its own process; its CPU is printed for each side and counted in neither.
set -euo pipefail
cd "$(dirname "$0")/.."

PROBES=${PROBES:-1000}
INTERVAL=${INTERVAL:-60}
DURATION=${DURATION:-60}
WARMUP=${WARMUP:-3}
LOGINS=${LOGINS:-30}
LAUNCHES=${LAUNCHES:-10}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
SIM_PORT=${SIM_PORT:-18187}
WEB_PORT=${WEB_PORT:-19877}

. bench/common.sh
install_missing node:nodejs npm:npm
[ -x "$CHROMIUM" ] || install_missing chromium:chromium
# The release binary is rebuilt only when a source is newer than it (bench_init builds unless
# AUTHPROBE_BIN is set).
if [ -z "${AUTHPROBE_BIN:-}" ] && [ -x target/release/authprobe ] &&
    [ -z "$(find src build.rs Cargo.toml Cargo.lock -newer target/release/authprobe -print -quit)" ]; then
    AUTHPROBE_BIN=target/release/authprobe
fi
bench_init
if [ ! -f bench/browser/node_modules/.package-lock.json ] ||
    [ bench/browser/package-lock.json -nt bench/browser/node_modules/.package-lock.json ]; then
    echo "installing bench/browser with npm ci"
    PUPPETEER_SKIP_DOWNLOAD=1 npm ci --prefix bench/browser --no-audit --no-fund --loglevel=error >/dev/null
fi

issuer="http://127.0.0.1:$SIM_PORT/oauth2"
redirect="https://app.example.test/callback"
# Accounts: one per probe (probe-NNNNN) and one per browser login (browser-NNNN), each with its
# own random TOTP secret (30 s steps); the client asks for consent.
python3 - "$WORK" "$PROBES" "$INTERVAL" "$((WARMUP + LOGINS + LAUNCHES))" "$issuer" "$redirect" "$CHROMIUM" \
    "$WARMUP" "$LOGINS" "$LAUNCHES" <<'PY'
import base64, json, secrets, sys
work, probes, interval, browser, issuer, redirect, chromium = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
warmup, logins, launches = map(int, sys.argv[8:11])
secret = lambda: base64.b32encode(secrets.token_bytes(20)).decode()
users = [(f"probe-{i:05d}", f"pw-{secrets.token_hex(6)}", secret()) for i in range(probes)]
people = [(f"browser-{i:04d}", f"pw-{secrets.token_hex(6)}", secret()) for i in range(browser)]
with open(f"{work}/accounts.yaml", "w") as f:
    f.write("accounts:\n")
    for u, p, s in users + people:
        f.write(f"  - {{username: {u}, password: {p}, totp_secret: {s}}}\n")
    f.write("oauth2:\n  clients:\n")
    f.write(f"    - {{client_id: web, client_secret: bench-secret, grants: [authorization_code], redirect_uris: ['{redirect}'], consent: true}}\n")
with open(f"{work}/probes.yaml", "w") as f:
    f.write(f"defaults: {{interval: {interval}s, timeout: 10s, lockout_guard: {{max_failures: 0}}}}\n")
    f.write(f"targets:\n  - {{name: idp, protocol: oauth2, issuer: '{issuer}', client_id: web, client_secret: bench-secret}}\n")
    f.write("probes:\n")
    for i, (u, p, s) in enumerate(users):
        f.write(f"  - {{name: login-{i:05d}, target: idp, grant: authorization_code, redirect_uri: '{redirect}', scope: openid, "
                f"username: {u}, password: {p}, totp_secret: {s}, consent: approve}}\n")
with open(f"{work}/browser.json", "w") as f:
    json.dump({"issuer": issuer, "client_id": "web", "client_secret": "bench-secret", "redirect_uri": redirect,
               "executable": chromium, "warmup": warmup, "logins": logins, "launches": launches,
               "accounts": [{"username": u, "password": p, "totp_secret": s} for u, p, s in people]}, f)
PY
"$BIN" check-config --config.file "$WORK/probes.yaml" >/dev/null

start_simulator "$SIM_PORT"
for _ in $(seq 1 100); do curl -fs "$issuer/.well-known/openid-configuration" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fs "$issuer/.well-known/openid-configuration" >/dev/null || { cat "$WORK/sim.log" >&2; exit 1; }

# Busy ticks of the whole machine (every core), to tell what else ran during a phase.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

echo "authprobe $($BIN --version | cut -d' ' -f2), $("$CHROMIUM" --version 2>/dev/null | cut -d' ' -f1-2)," \
    "puppeteer-core $(node -p 'require("./bench/browser/node_modules/puppeteer-core/package.json").version'), node $(node --version);" \
    "$(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"

# Chromium. The harness runs login.mjs, reads the tree's CPU at each of its marks and samples its
# memory; it writes $WORK/browser-result.json.
echo "Chromium: launch, $WARMUP warm-up logins, $LOGINS logins with a context each; then $LAUNCHES launches of one login"
python3 - "$WORK" "$SIM_PID" <<'PY'
import ctypes, json, os, resource, subprocess, sys, threading, time
work, sim_pid = sys.argv[1], int(sys.argv[2])
tick = os.sysconf("SC_CLK_TCK")
me = os.getpid()
# PR_SET_CHILD_SUBREAPER: a process Chromium orphans is reparented here, not to init, so that it
# stays in the tree and its CPU is counted when it is reaped.
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)

def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()  # fields from the state on: ppid at 1, utime at 11

def tree():
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                children.setdefault(int(stat(d)[1]), []).append(int(d))
            except (OSError, IndexError):
                pass
    found, todo = [], list(children.get(me, []))
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found

def tree_cpu():
    """CPU seconds of every process below the harness, live or exited."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    ticks = 0
    for p in tree():
        try:
            f = stat(p)
            ticks += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
        except (OSError, IndexError):
            pass
    return r.ru_utime + r.ru_stime + ticks / tick

def ticks_of(pid):
    f = stat(pid)
    return int(f[11]) + int(f[12])

def machine():
    with open("/proc/stat") as f:
        v = f.readline().split()[1:]
    return sum(int(v[i]) for i in (0, 1, 2, 5, 6, 7)) / tick

def memory(with_pss):
    rss = pss = n = 0
    for p in tree():
        try:
            with open(f"/proc/{p}/status") as f:
                kb = [int(l.split()[1]) for l in f if l.startswith("VmRSS:")]
            if not kb:
                continue  # a zombie
            if with_pss:  # smaps_rollup walks the page tables: ~1 ms a Chromium process
                with open(f"/proc/{p}/smaps_rollup") as f:
                    pss += sum(int(l.split()[1]) for l in f if l.startswith("Pss:"))
            rss += kb[0]
            n += 1
        except (OSError, ValueError):
            pass
    return rss, pss, n

lock = threading.Lock()
peak = {"rss": 0, "pss": 0, "procs": 0}
done = threading.Event()
node = subprocess.Popen(["node", "bench/browser/login.mjs", f"{work}/browser.json"], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=open(f"{work}/browser.log", "w"), text=True, bufsize=1)

def sampler():
    i = 0
    while not done.is_set():
        rss, pss, n = memory(i % 5 == 0)  # RSS every 100 ms, PSS every 500 ms
        i += 1
        with lock:
            if rss > peak["rss"]:
                peak.update(rss=rss, procs=n)
            peak["pss"] = max(peak["pss"], pss)
        # Reap what was orphaned to the harness (never node: Popen waits for it).
        try:
            while (w := os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)) and w.si_pid != node.pid:
                os.waitpid(w.si_pid, 0)
        except ChildProcessError:
            pass
        done.wait(0.1)

threading.Thread(target=sampler, daemon=True).start()
marks, result = {}, None
for line in node.stdout:
    msg = json.loads(line)
    if "mark" in msg:
        with lock:
            mem = dict(peak)
            peak.update(rss=0, pss=0, procs=0)
        marks[msg["mark"]] = {"cpu": tree_cpu(), "node": ticks_of(node.pid) / tick, "sim": ticks_of(sim_pid) / tick,
                              "machine": machine(), "at": time.monotonic(), "peak": mem,
                              "harness": time.process_time()}
        node.stdin.write("\n")
        node.stdin.flush()
    elif "result" in msg:
        result = msg["result"]
done.set()
if node.wait() != 0 or result is None:
    sys.stderr.write(open(f"{work}/browser.log").read())
    sys.exit("the browser logins failed")
# Everything the tree used, read once all of it exited and was reaped: the marks' sum must agree.
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        if os.waitpid(-1, os.WNOHANG) == (0, 0):
            time.sleep(0.05)
    except ChildProcessError:
        break
else:
    sys.exit(f"still running 10 s after the browser logins: {tree()}")
r = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({"marks": marks, "walls": result, "exited": r.ru_utime + r.ru_stime},
          open(f"{work}/browser-result.json", "w"))
PY

# authprobe.
echo "authprobe: $PROBES interactive probes every ${INTERVAL}s, one interval of warm-up, then ${DURATION}s measured"
start_authprobe "$WEB_PORT"
sleep "$INTERVAL"
metric_sum() { awk -v m="$2" 'index($0, m) == 1 {n += $NF} END {print n + 0}' <<<"$1"; }
before=$(curl -fs "http://127.0.0.1:$WEB_PORT/metrics")
ticks_before=$(cpu_ticks "$RUN_PID"); sim_before=$(cpu_ticks "$SIM_PID"); machine_before=$(machine_ticks)
sleep "$DURATION"
ticks_after=$(cpu_ticks "$RUN_PID"); sim_after=$(cpu_ticks "$SIM_PID"); machine_after=$(machine_ticks)
after=$(curl -fs "http://127.0.0.1:$WEB_PORT/metrics")
hwm=$(hwm_kb "$RUN_PID"); rss=$(rss_kb "$RUN_PID")
runs=$(($(metric_sum "$after" authprobe_probe_runs_total) - $(metric_sum "$before" authprobe_probe_runs_total)))
ok=$(($(awk '/^authprobe_probe_runs_total\{.*result="success"/ {n += $NF} END {print n + 0}' <<<"$after") -
    $(awk '/^authprobe_probe_runs_total\{.*result="success"/ {n += $NF} END {print n + 0}' <<<"$before")))
if [ "$ok" -ne "$runs" ]; then
    echo "  not every login succeeded; results over the whole run:"
    grep '^authprobe_probe_runs_total' <<<"$after" | sed 's/probe="[^"]*",//' |
        awk '{sub(/ [^ ]*$/, "", $0)} {print}' | sort | uniq -c | sort -rn | head -5
fi

python3 - "$WORK/browser-result.json" "$(getconf CLK_TCK)" "$DURATION" "$runs" "$ok" \
    "$ticks_before" "$ticks_after" "$sim_before" "$sim_after" "$machine_before" "$machine_after" "$hwm" "$rss" <<'PY'
import json, statistics, sys
b = json.load(open(sys.argv[1]))
tick, duration, runs, ok = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
t0, t1, s0, s1, m0, m1, hwm, rss = (int(x) for x in sys.argv[6:14])
m, w = b["marks"], b["walls"]

def phase(a, z, n):
    """CPU per login of the tree, of Node alone, of the simulator; the rest of the machine (cores)."""
    d = lambda k: m[z][k] - m[a][k]
    secs = d("at")
    return {"cpu": d("cpu") / n, "node": d("node") / n, "sim": d("sim") / n, "secs": secs, "harness": d("harness") / secs,
            "other": (d("machine") - d("cpu") - d("sim") - d("harness")) / secs, "peak": m[z]["peak"]}

ctx = phase("context-start", "context-end", len(w["context"]))
launch = phase("closed", "launch-end", len(w["launch"]))
start = phase("start", "launched", 1)
warm_peak = m["context-start"]["peak"]
ap_cpu = (t1 - t0) / tick / runs
ap_sim = (s1 - s0) / tick / runs
ap_other = ((m1 - m0) - (t1 - t0) - (s1 - s0)) / tick / duration
mb = lambda kb: kb / 1024
cores = lambda per: per * 1000 / 60

print("Chromium + Node (puppeteer-core), CPU of the whole process tree:")
print(f"  launch: {start['cpu']:.3f} s of CPU, {start['secs']:.2f} s; peak RSS {mb(start['peak']['rss']):.0f} MB")
for name, p, walls in (("browser check (a context per login)", ctx, w["context"]), ("launch per login", launch, w["launch"])):
    peak = p["peak"]
    if name.startswith("browser"):  # the warm-up logins ran in the same browser: its peak counts too
        peak = {k: max(peak[k], warm_peak[k]) for k in peak}
    print(f"  {name}: {len(walls)} logins, {p['cpu'] * 1000:.1f} ms of CPU per login (Node {p['node'] * 1000:.1f} ms), "
          f"wall median {statistics.median(walls) * 1000:.0f} ms; peak RSS {mb(peak['rss']):.0f} MB "
          f"({peak['procs']} processes), PSS {mb(peak['pss']):.0f} MB; simulator {p['sim'] * 1000:.2f} ms/login; "
          f"harness {p['harness']:.2f} cores, rest of the machine {p['other']:.2f}")
    p["peak"] = peak
print(f"  CPU of the tree, all phases: {m['launch-end']['cpu'] - m['start']['cpu']:.2f} s at the last mark, "
      f"{b['exited'] - m['start']['cpu']:.2f} s once all of it had exited (the check that nothing escaped)")
print(f"authprobe run: {runs} logins ({ok / runs * 100:.1f} % success), {ap_cpu * 1000:.2f} ms of CPU per login, "
      f"{(t1 - t0) / tick / duration * 100:.1f} % of a core; peak RSS (VmHWM) {mb(hwm):.1f} MB, RSS now {mb(rss):.1f} MB; "
      f"simulator {ap_sim * 1000:.2f} ms/login; rest of the machine {ap_other:.2f} cores")
busy = [(n, o) for n, o in (("browser check", ctx["other"]), ("launch per login", launch["other"]), ("authprobe", ap_other)) if o > 0.25]
if busy:
    print("  DISTURBED: other processes used " + ", ".join(f"{o:.2f} cores during {n}" for n, o in busy) + "; run again when the machine is idle")
print("ratios, authprobe / Chromium (goals: CPU <= 1/50, memory <= 1/10):")
for name, p in (("browser check", ctx), ("launch per login", launch)):
    c = ap_cpu / p["cpu"]
    r = hwm / p["peak"]["rss"]
    print(f"  {name:<17} CPU 1/{1 / c:.0f} ({'met' if c <= 1 / 50 else 'NOT met'}), "
          f"RSS 1/{1 / r:.1f} ({'met' if r <= 1 / 10 else 'NOT met'}; 1/{p['peak']['pss'] / hwm:.1f} of its PSS)")
print("1,000 interactive probes a minute (CPU = CPU per login x 1000 / 60):")
print(f"  authprobe         {cores(ap_cpu):.3f} cores, {mb(hwm):.0f} MB (measured at {runs / duration * 60:.0f} logins a minute)")
for name, p, walls in (("browser check", ctx, w["context"]), ("launch per login", launch, w["launch"])):
    inflight = 1000 / 60 * statistics.median(walls)
    print(f"  {name:<17} {cores(p['cpu']):.2f} cores; {inflight:.1f} logins in flight at once "
          f"(at {statistics.median(walls) * 1000:.0f} ms each), measured one at a time: {mb(p['peak']['rss']):.0f} MB RSS for one")
PY
