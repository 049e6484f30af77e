#!/usr/bin/env bash
# What an LDAP login (connect, bind with the password policy request control, search, unbind)
# costs authprobe, against OpenLDAP's own ldapsearch and Debian's check_ldap (monitoring-plugins)
# making the same logins, one process per login as a cron-driven checker runs them, in one run on
# loopback against one real slapd (tests/slapd/start.sh).
#
#   bench/ldap.sh                                  # about 12 minutes, and a build if needed
#   PROBES=1000 INTERVAL=60 DURATION=180 LOGINS=2000 bench/ldap.sh
#   SECURITY=starttls bench/ldap.sh                # or ldaps: the same with TLS (the harness's CA)
#
# The directory: slapd with the harness's entries, plus PROBES accounts added with ldapadd as the
# rootdn, uid=bench-NNNN,ou=Bench,dc=authprobe,dc=test, one per probe (as deployments give each
# probe its own account), all with the same {SSHA} password. Each login binds as one of them and
# searches ou=Bench for (uid=bench-NNNN), one entry expected; the k-th login of a reference tool
# uses account k mod PROBES.
# authprobe: `authprobe run` with PROBES LDAP probes every INTERVAL seconds (the scheduler spreads
# them over the interval), the state store on; after one interval and 5 s (every probe has run
# once), DURATION seconds measured: the process's utime+stime (/proc/PID/stat) per login, logins
# from its /metrics (authprobe_probe_runs_total, success apart).
# The references, authprobe stopped, each LOGINS logins paced at authprobe's rate (PROBES /
# INTERVAL a second), one process per login, CPU of the child processes from
# getrusage(RUSAGE_CHILDREN) around each:
#   ldapsearch          ldapsearch -x -H URL -D DN -w PW -b BASE FILTER (the issue's command; it
#                       asks for every attribute and sends no request control)
#   ldapsearch, same    the same with -e ppolicy and the attribute list 1.1: authprobe's exchange
#   check_ldap          check_ldap -3 -H 127.0.0.1 -p PORT -b BASE -a FILTER -D DN -P PW -W 1:1
#                       -C 1:1 (-3: slapd refuses its default LDAPv2 bind; -W/-C make it search
#                       the subtree and count the entries, otherwise it searches BASE alone)
#   ldapsearch -VV      START_RUNS runs that print the version and exit: the process start alone
#   libldap             the login work without a process start: a C loop over OpenLDAP's libldap
#                       (the library ldapsearch and check_ldap use), compiled here, making the same
#                       LOGINS logins as authprobe's exchange (ppolicy control, attribute 1.1), a new
#                       connection each, in one process; its own getrusage(RUSAGE_SELF) after 3
#                       warm-up logins
# and slapd's CPU per login under each client (/proc/PID/stat over the phase).
# Memory: authprobe's RSS after one interval with PROBES LDAP probes, minus its RSS with none (the
# same target, 3 s after it is ready), per probe, and again at the end of the measured time; then,
# unless RSS_COMPARE=0, the same for PROBES password-only probes against the simulator (another
# process), over the same times.
# The rest of the machine's CPU during each phase is printed: a run on a busy machine says so.
# Goal: authprobe's CPU per login <= 1.0x ldapsearch's.
set -euo pipefail
cd "$(dirname "$0")/.."

PROBES=${PROBES:-1000}
INTERVAL=${INTERVAL:-60}
DURATION=${DURATION:-120}
WARMUP=${WARMUP:-$((INTERVAL + 5))}
LOGINS=${LOGINS:-1000}
START_RUNS=${START_RUNS:-200}
SECURITY=${SECURITY:-plain}
RSS_COMPARE=${RSS_COMPARE:-1}
LDAP_PORT=${LDAP_PORT:-18389}
LDAPS_PORT=${LDAPS_PORT:-18636}
SIM_PORT=${SIM_PORT:-18188}
WEB_PORT=${WEB_PORT:-19878}
CHECK_LDAP=${CHECK_LDAP:-/usr/lib/nagios/plugins/check_ldap}
case "$SECURITY" in plain | starttls | ldaps) ;; *) echo "SECURITY is plain, starttls or ldaps" >&2; exit 2 ;; esac

. bench/common.sh
# slapd: preseeded so that its postinst creates no system directory and starts no system slapd
# (tests/slapd/README.md).
if ! command -v slapd >/dev/null && [ ! -x /usr/sbin/slapd ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing slapd"
    echo "slapd slapd/no_configuration boolean true" | $sudo debconf-set-selections
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends slapd >/dev/null
fi
install_missing ldapsearch:ldap-utils openssl:openssl cc:gcc
[ -f /usr/include/ldap.h ] || install_missing ldap-h:libldap-dev
[ -x "$CHECK_LDAP" ] || install_missing check_ldap:monitoring-plugins-standard
PATH="$PATH:/usr/sbin"
# The release binary is rebuilt only when a source is newer than it (bench_init builds unless
# AUTHPROBE_BIN is set).
if [ -z "${AUTHPROBE_BIN:-}" ] && [ -x target/release/authprobe ] &&
    [ -z "$(find src build.rs Cargo.toml Cargo.lock -newer target/release/authprobe -print -quit)" ]; then
    AUTHPROBE_BIN=target/release/authprobe
fi
bench_init

# Busy ticks of the whole machine (every core), to tell what else ran during a phase.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
metric_sum() { awk -v m="$2" 'index($0, m) == 1 {n += $NF} END {printf "%d\n", n}' <<<"$1"; }

# slapd, in the foreground in its own folder (start.sh execs it: the pid is slapd's).
mkdir "$WORK/slapd"
tests/slapd/start.sh "$WORK/slapd" "$LDAP_PORT" "$LDAPS_PORT" >"$WORK/slapd.log" 2>&1 &
SLAPD_PID=$!
BENCH_PIDS+=("$SLAPD_PID")
for _ in $(seq 1 100); do
    ldapsearch -x -H "ldap://127.0.0.1:$LDAP_PORT" -b "" -s base namingContexts >/dev/null 2>&1 && break
    kill -0 "$SLAPD_PID" 2>/dev/null || break
    sleep 0.1
done
ldapsearch -x -H "ldap://127.0.0.1:$LDAP_PORT" -b "" -s base namingContexts >/dev/null 2>&1 || {
    echo "slapd did not start on 127.0.0.1:$LDAP_PORT" >&2; cat "$WORK/slapd.log" >&2; exit 1; }
export LDAPTLS_CACERT="$WORK/slapd/ca.pem"

# The accounts, added as the rootdn.
password=bench-Ldap-Pw-41
hash=$(slappasswd -h '{SSHA}' -s "$password")
python3 - "$PROBES" "$hash" >"$WORK/accounts.ldif" <<'PY'
import sys
n, h = int(sys.argv[1]), sys.argv[2]
print("dn: ou=Bench,dc=authprobe,dc=test\nobjectClass: organizationalUnit\nou: Bench\n")
for i in range(n):
    print(f"dn: uid=bench-{i:04d},ou=Bench,dc=authprobe,dc=test\nobjectClass: inetOrgPerson\nuid: bench-{i:04d}\n"
          f"cn: Bench {i}\nsn: Bench\nuserPassword: {h}\n")
PY
ldapadd -x -H "ldap://127.0.0.1:$LDAP_PORT" -D cn=admin,dc=authprobe,dc=test -w slapd-Root-Pw-Qx47 \
    -f "$WORK/accounts.ldif" >/dev/null

case "$SECURITY" in
    plain) url="ldap://127.0.0.1:$LDAP_PORT"; port=$LDAP_PORT; tls_fields=""; ldap_tls=(); check_tls=() ;;
    starttls) url="ldap://127.0.0.1:$LDAP_PORT"; port=$LDAP_PORT; ldap_tls=(-ZZ); check_tls=(-T)
        tls_fields=", start_tls: true, tls: {ca_file: '$LDAPTLS_CACERT'}" ;;
    ldaps) url="ldaps://127.0.0.1:$LDAPS_PORT"; port=$LDAPS_PORT; ldap_tls=(); check_tls=(-S)
        tls_fields=", tls: {ca_file: '$LDAPTLS_CACERT'}" ;;
esac
# ldap_config COUNT: $WORK/probes.yaml with COUNT LDAP probes (0: the target alone).
ldap_config() {
    python3 - "$WORK/probes.yaml" "$1" "$INTERVAL" "$url" "$tls_fields" "$password" <<'PY'
import sys
path, n, interval, url, tls, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
with open(path, "w") as f:
    f.write(f"defaults: {{interval: {interval}s, timeout: 10s}}\n")
    f.write(f"targets:\n  - {{name: dir, protocol: ldap, url: '{url}'{tls}}}\n")
    f.write("probes:\n" if n else "probes: []\n")
    for i in range(n):
        f.write(f"  - {{name: ldap-{i:05d}, target: dir, bind_dn: 'uid=bench-{i:04d},ou=Bench,dc=authprobe,dc=test', "
                f"password: {password}, search: {{base: 'ou=Bench,dc=authprobe,dc=test', filter: '(uid=bench-{i:04d})', "
                f"expect_entries: 1}}}}\n")
PY
}
stop_authprobe() { kill "$RUN_PID" 2>/dev/null || true; wait "$RUN_PID" 2>/dev/null || true; }

echo "authprobe $($BIN --version | cut -d' ' -f2), slapd and ldapsearch $(dpkg-query -W -f='${Version}' ldap-utils)," \
    "check_ldap $("$CHECK_LDAP" -V | awk '{print $2}'); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "slapd on $url ($SECURITY), $PROBES accounts; a login: connect,$([ "$SECURITY" = starttls ] && echo ' StartTLS,')" \
    "bind, search of ou=Bench for (uid=bench-NNNN) (1 entry), unbind"

# authprobe with the target alone: the RSS every count starts from.
ldap_config 0
start_authprobe "$WEB_PORT" --storage.path "$WORK/data-ldap0"
sleep 3
rss_zero=$(rss_kb "$RUN_PID")
stop_authprobe

echo "authprobe: $PROBES LDAP probes every ${INTERVAL}s, ${WARMUP}s of warm-up, then ${DURATION}s measured"
ldap_config "$PROBES"
"$BIN" check-config --config.file "$WORK/probes.yaml" >"$WORK/check-config.log" 2>&1 || { cat "$WORK/check-config.log" >&2; exit 1; }
start_authprobe "$WEB_PORT" --storage.path "$WORK/data-ldap"
sleep "$WARMUP"
rss_warm=$(rss_kb "$RUN_PID")
before=$(curl -fs "http://127.0.0.1:$WEB_PORT/metrics")
t0=$(cpu_ticks "$RUN_PID"); s0=$(sys_ticks "$RUN_PID"); d0=$(cpu_ticks "$SLAPD_PID"); m0=$(machine_ticks)
cs0=$(ctx_switches "$RUN_PID"); w0=$(date +%s.%N)
sleep "$DURATION"
t1=$(cpu_ticks "$RUN_PID"); s1=$(sys_ticks "$RUN_PID"); d1=$(cpu_ticks "$SLAPD_PID"); m1=$(machine_ticks)
cs1=$(ctx_switches "$RUN_PID"); w1=$(date +%s.%N)
after=$(curl -fs "http://127.0.0.1:$WEB_PORT/metrics")
rss_end=$(rss_kb "$RUN_PID"); hwm=$(hwm_kb "$RUN_PID")
runs=$(($(metric_sum "$after" authprobe_probe_runs_total) - $(metric_sum "$before" authprobe_probe_runs_total)))
ok=$(($(awk '/^authprobe_probe_runs_total\{.*result="success"/ {n += $NF} END {printf "%d\n", n}' <<<"$after") -
    $(awk '/^authprobe_probe_runs_total\{.*result="success"/ {n += $NF} END {printf "%d\n", n}' <<<"$before")))
skipped=$(($(metric_sum "$after" authprobe_probe_skipped_total) - $(metric_sum "$before" authprobe_probe_skipped_total)))
# Each probe's last run, as authprobe timed it (the network's and slapd's time).
durations=$(awk '/^authprobe_probe_duration_seconds\{/ {print $NF}' <<<"$after" | sort -g |
    awk '{v[NR] = $1} END {printf "%.2f %.2f\n", v[int(NR / 2) + 1] * 1000, v[int(NR * 0.99)] * 1000}')
if [ "$ok" -ne "$runs" ]; then
    echo "  not every login succeeded; outcomes over the whole run:"
    grep '^authprobe_probe_outcome' <<<"$after" | sed 's/probe="[^"]*",//' | awk '{print $1}' | sort | uniq -c | sort -rn | head -5
fi
stop_authprobe
echo "$runs $ok $skipped $t0 $t1 $s0 $s1 $d0 $d1 $m0 $m1 $cs0 $cs1 $w0 $w1 $rss_zero $rss_warm $rss_end $hwm $durations ${#after}" \
    >"$WORK/authprobe.txt"

# libldap's own cost per login, in one process (see the top).
cat >"$WORK/logins.c" <<'C'
#include <ldap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}
static double secs(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Connect, [StartTLS,] bind with the ppolicy request control, search for one entry, unbind. */
static int login(const char *uri, int starttls, int k, int accounts, const char *password, const char *base) {
    char dn[128], filter[64];
    snprintf(dn, sizeof dn, "uid=bench-%04d,%s", k % accounts, base);
    snprintf(filter, sizeof filter, "(uid=bench-%04d)", k % accounts);
    LDAP *ld;
    int version = LDAP_VERSION3, ok = 0;
    if (ldap_initialize(&ld, uri) != LDAP_SUCCESS) return 0;
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
    if (starttls && ldap_start_tls_s(ld, NULL, NULL) != LDAP_SUCCESS) goto out;
    LDAPControl ppolicy = {LDAP_CONTROL_PASSWORDPOLICYREQUEST, {0, NULL}, 0}, *ctrls[] = {&ppolicy, NULL};
    struct berval cred = {strlen(password), (char *)password};
    if (ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &cred, ctrls, NULL, NULL) != LDAP_SUCCESS) goto out;
    char *attrs[] = {"1.1", NULL};
    LDAPMessage *res = NULL;
    if (ldap_search_ext_s(ld, base, LDAP_SCOPE_SUBTREE, filter, attrs, 0, NULL, NULL, NULL, 0, &res) == LDAP_SUCCESS)
        ok = ldap_count_entries(ld, res) == 1;
    ldap_msgfree(res);
out:
    ldap_unbind_ext_s(ld, NULL, NULL);
    return ok;
}

/* URI STARTTLS LOGINS WARMUP RATE ACCOUNTS PASSWORD BASE: prints the logins made after WARMUP,
 * how many succeeded, user and system seconds, context switches, the median wall per login. */
int main(int argc, char **argv) {
    if (argc != 9) return 2;
    const char *uri = argv[1], *password = argv[7], *base = argv[8];
    int starttls = atoi(argv[2]), n = atoi(argv[3]), warmup = atoi(argv[4]), accounts = atoi(argv[6]);
    double rate = atof(argv[5]);
    for (int k = 0; k < warmup; k++) login(uri, starttls, k, accounts, password, base);
    double *walls = calloc(n, sizeof *walls), start = now(), deadline = start + n / rate + 120;
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    int done = 0, ok = 0;
    for (int k = 0; k < n; k++) {
        double pause = start + k / rate - now();
        if (pause > 0) {
            struct timespec t = {(time_t)pause, (long)((pause - (time_t)pause) * 1e9)};
            nanosleep(&t, NULL);
        }
        if (now() > deadline) break;
        double t0 = now();
        ok += login(uri, starttls, k, accounts, password, base);
        walls[done++] = now() - t0;
    }
    getrusage(RUSAGE_SELF, &r1);
    qsort(walls, done, sizeof *walls, cmp);
    printf("%d %d %.6f %.6f %ld %.6f\n", done, ok, secs(r1.ru_utime) - secs(r0.ru_utime),
           secs(r1.ru_stime) - secs(r0.ru_stime), (r1.ru_nvcsw + r1.ru_nivcsw) - (r0.ru_nvcsw + r0.ru_nivcsw),
           done ? walls[done / 2] : 0.0);
    return 0;
}
C
cc -O2 -Wall -o "$WORK/logins" "$WORK/logins.c" -lldap -llber

# The references, one process per login, paced at authprobe's rate.
echo "references: $LOGINS logins each at $(python3 -c "print(f'{$PROBES / $INTERVAL:.1f}')")/s, one process per login;" \
    "then $START_RUNS starts of ldapsearch -VV"
python3 - "$WORK/references.json" "$SLAPD_PID" "$LOGINS" "$START_RUNS" "$(python3 -c "print($PROBES / $INTERVAL)")" \
    "$PROBES" "$url" "$port" "$password" "$CHECK_LDAP" "${ldap_tls[*]:-}" "${check_tls[*]:-}" "$WORK/logins" <<'PY'
import json, os, resource, statistics, subprocess, sys, time
out, slapd, logins, starts, rate, accounts, url, port, password, check_ldap = sys.argv[1:11]
slapd, logins, starts, rate, accounts = int(slapd), int(logins), int(starts), float(rate), int(accounts)
ldap_tls, check_tls, in_process = sys.argv[11].split(), sys.argv[12].split(), sys.argv[13]
tick = os.sysconf("SC_CLK_TCK")
base = "ou=Bench,dc=authprobe,dc=test"

def account(k):
    return f"uid=bench-{k % accounts:04d},{base}", f"(uid=bench-{k % accounts:04d})"

def ldapsearch(same):
    def cmd(k):
        dn, flt = account(k)
        extra = ["-e", "ppolicy"] if same else []
        return ["ldapsearch", "-x", *ldap_tls, "-H", url, "-D", dn, "-w", password, "-b", base, *extra, flt] + (["1.1"] if same else [])
    return cmd, lambda rc, text: rc == 0 and "# numEntries: 1\n" in text

def check(k):
    dn, flt = account(k)
    return [check_ldap, "-3", *check_tls, "-H", "127.0.0.1", "-p", port, "-b", base, "-a", flt, "-D", dn, "-P", password,
            "-W", "1:1", "-C", "1:1"]

tools = [
    ("ldapsearch", *ldapsearch(False), logins),
    ("ldapsearch, same", *ldapsearch(True), logins),
    ("check_ldap", check, lambda rc, text: rc == 0 and "found 1 entries" in text, logins),
    ("ldapsearch -VV", lambda k: ["ldapsearch", "-VV"], lambda rc, text: rc == 0, starts),
]

def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    v = s[s.rindex(")") + 2:].split()
    return int(v[11]) + int(v[12])

def machine():
    with open("/proc/stat") as f:
        v = f.readline().split()[1:]
    return sum(int(v[i]) for i in (0, 1, 2, 5, 6, 7))

results = {}
for name, cmd, good, n in tools:
    for k in range(3):  # warm-up: the binaries and libraries in the page cache
        try:
            subprocess.run(cmd(k), capture_output=True, timeout=10)
        except subprocess.TimeoutExpired:
            pass
    user = system = 0.0
    switches, ok, walls, failed = 0, 0, [], None
    d0, m0, h0, start = ticks(slapd), machine(), time.process_time(), time.monotonic()
    deadline = start + n / rate + 120
    done = 0
    for k in range(n):
        pause = start + k / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        if time.monotonic() > deadline:
            break
        r0, c0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        try:
            p = subprocess.run(cmd(k), capture_output=True, text=True, timeout=10)
        except subprocess.TimeoutExpired as e:  # killed and reaped: its CPU counts all the same
            p = subprocess.CompletedProcess(e.cmd, -9, "", "timed out after 10 s")
        c1, r1 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        user += r1.ru_utime - r0.ru_utime
        system += r1.ru_stime - r0.ru_stime
        switches += r1.ru_nvcsw + r1.ru_nivcsw - r0.ru_nvcsw - r0.ru_nivcsw
        walls.append(c1 - c0)
        done += 1
        if good(p.returncode, p.stdout):
            ok += 1
        elif failed is None:
            failed = f"exit {p.returncode}: {(p.stdout + p.stderr).strip()[:300]}"
    wall = time.monotonic() - start
    d, m, h = ticks(slapd) - d0, machine() - m0, time.process_time() - h0
    results[name] = {"logins": done, "ok": ok, "user": user / done, "sys": system / done, "switches": switches / done,
                     "wall": statistics.median(walls), "slapd": d / tick / done,
                     "other": (m / tick - user - system - d / tick - h) / wall, "failed": failed}
    if failed:
        print(f"  {name}: {done - ok} of {done} failed, the first: {failed}")

# libldap in one process: it reports its own CPU over the measured logins.
d0, m0, h0, c0, start = ticks(slapd), machine(), time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
p = subprocess.run([in_process, url, "1" if "-ZZ" in ldap_tls else "0", str(logins), "3", str(rate), str(accounts), password,
                    base], capture_output=True, text=True, timeout=logins / rate + 180, check=True)
wall = time.monotonic() - start
d, m, h, c1 = ticks(slapd) - d0, machine() - m0, time.process_time() - h0, resource.getrusage(resource.RUSAGE_CHILDREN)
done, ok, user, system, switches, median = p.stdout.split()
done, ok = int(done), int(ok)
whole = c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
results["libldap"] = {"logins": done, "ok": ok, "user": float(user) / done, "sys": float(system) / done,
                      "switches": int(switches) / done, "wall": float(median), "slapd": d / tick / done,
                      "other": (m / tick - whole - d / tick - h) / wall, "failed": None}
if ok != done:
    print(f"  libldap: {done - ok} of {done} failed")
json.dump(results, open(out, "w"))
PY

# Memory of another family, measured the same way: password-only probes against the simulator.
if [ "$RSS_COMPARE" = 1 ]; then
    echo "password-only probes for the RSS comparison: the target alone, then $PROBES probes for $((WARMUP + DURATION))s"
    gen_config 0 "$INTERVAL" 100 20ms "$SIM_PORT"
    sed -i 's/^probes:$/probes: []/' "$WORK/probes.yaml"
    start_simulator "$SIM_PORT"
    start_authprobe "$WEB_PORT" --storage.path "$WORK/data-etna0"
    sleep 3
    etna_zero=$(rss_kb "$RUN_PID")
    stop_authprobe
    gen_config "$PROBES" "$INTERVAL" 100 20ms "$SIM_PORT"
    start_authprobe "$WEB_PORT" --storage.path "$WORK/data-etna"
    # The same steps as the LDAP probes': a scrape after one interval, another at the end.
    sleep "$WARMUP"
    etna_warm=$(rss_kb "$RUN_PID")
    curl -fs "http://127.0.0.1:$WEB_PORT/metrics" >/dev/null
    sleep "$DURATION"
    etna_metrics=$(curl -fs "http://127.0.0.1:$WEB_PORT/metrics")
    etna_end=$(rss_kb "$RUN_PID"); etna_hwm=$(hwm_kb "$RUN_PID")
    etna_runs=$(awk '/^authprobe_probe_runs_total\{/ {n += $NF; if ($0 ~ /result="success"/) ok += $NF}
        END {printf "%d %d\n", n, ok}' <<<"$etna_metrics")
    stop_authprobe
    echo "$etna_zero $etna_warm $etna_end $etna_hwm $etna_runs ${#etna_metrics}" >"$WORK/etna.txt"
fi

python3 - "$WORK" "$(getconf CLK_TCK)" "$PROBES" "$DURATION" "$RSS_COMPARE" <<'PY'
import json, sys
work, tick, probes, duration, compare = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1"
a = open(f"{work}/authprobe.txt").read().split()
runs, ok, skipped = (int(x) for x in a[0:3])
t0, t1, s0, s1, d0, d1, m0, m1, cs0, cs1 = (int(x) for x in a[3:13])
w0, w1 = float(a[13]), float(a[14])
rss_zero, rss_warm, rss_end, hwm = (int(x) for x in a[15:19])
dur_p50, dur_p99, metrics_size = float(a[19]), float(a[20]), int(a[21])
wall = w1 - w0
ap = {"logins": runs, "ok": ok, "user": (t1 - t0 - (s1 - s0)) / tick / runs, "sys": (s1 - s0) / tick / runs,
      "slapd": (d1 - d0) / tick / runs, "switches": (cs1 - cs0) / runs,
      "other": ((m1 - m0) - (t1 - t0) - (d1 - d0)) / tick / wall}
refs = json.load(open(f"{work}/references.json"))
ls = refs["ldapsearch"]
cpu = lambda r: r["user"] + r["sys"]
ms = lambda s: f"{s * 1000:.3f}"

print()
print(f"{'':<34}{'logins':>7}{'ok':>8}  {'CPU per login (user + sys), ms':<32}{'vs ldapsearch':>14}"
      f"{'slapd CPU/login':>16}{'switches':>9}{'wall median':>12}{'rest':>7}")
rows = [("ldapsearch (the issue's command)", ls, f"{ls['wall'] * 1000:.1f} ms"),
        ("ldapsearch -e ppolicy … 1.1", refs["ldapsearch, same"], f"{refs['ldapsearch, same']['wall'] * 1000:.1f} ms"),
        ("check_ldap -3 … -W 1:1 -C 1:1", refs["check_ldap"], f"{refs['check_ldap']['wall'] * 1000:.1f} ms"),
        ("libldap, one process (C)", refs["libldap"], f"{refs['libldap']['wall'] * 1000:.2f} ms"),
        ("authprobe run", ap, f"{dur_p50:.2f} ms*"),
        ("ldapsearch -VV (start, no login)", refs["ldapsearch -VV"], f"{refs['ldapsearch -VV']['wall'] * 1000:.1f} ms")]
for name, r, w in rows:
    login = "-VV" not in name
    share = f"{100 * r['ok'] / r['logins']:.1f} %"
    print(f"{name:<34}{r['logins']:>7}{share:>8}  "
          f"{ms(cpu(r)) + ' (' + ms(r['user']) + ' + ' + ms(r['sys']) + ')':<32}{cpu(r) / cpu(ls):>13.3f}×"
          f"{(ms(r['slapd']) if login else '-'):>16}{r['switches']:>9.2f}{w:>12}{r['other']:>7.2f}")
print(f"(* authprobe: each probe's last run as it timed it, median; p99 {dur_p99:.2f} ms. libldap: the login's;"
      f" the others: process start to exit.")
print(f" rest: cores the rest of the machine used during the phase. authprobe: {runs / wall:.1f} logins/s over {wall:.0f} s,"
      f" {100 * (t1 - t0) / tick / wall:.2f} % of a core, {skipped} ticks skipped.)")
busy = [n for n, r, _ in rows if r["other"] > 0.25]
if busy:
    print(f"DISTURBED: other processes used more than 0.25 cores during {', '.join(busy)}; run again when the machine is idle")
per_probe = (rss_warm - rss_zero) / probes
print()
print(f"RSS, per probe = (RSS with {probes} probes - RSS with the target alone, 3 s after the start) / {probes};"
      f" at the end: after two scrapes of /metrics")
print(f"  LDAP:          {rss_zero / 1024:.1f} MB alone; with {probes}: {rss_warm / 1024:.1f} MB after one interval"
      f" ({per_probe:.2f} KB per probe), {rss_end / 1024:.1f} MB at the end ({(rss_end - rss_zero) / probes:.2f} KB per probe),"
      f" peak {hwm / 1024:.1f} MB; /metrics {metrics_size / 1e6:.1f} MB ({metrics_size / probes / 1000:.1f} KB per probe)")
if compare:
    ez, ew, ee, eh, er, eok, es = (int(x) for x in open(f"{work}/etna.txt").read().split())
    print(f"  password-only: {ez / 1024:.1f} MB alone; with {probes}: {ew / 1024:.1f} MB after one interval"
          f" ({(ew - ez) / probes:.2f} KB per probe), {ee / 1024:.1f} MB at the end"
          f" ({(ee - ez) / probes:.2f} KB per probe), peak {eh / 1024:.1f} MB; /metrics {es / 1e6:.1f} MB"
          f" ({es / probes / 1000:.1f} KB per probe); {er} logins, {100 * eok / er:.1f} % success")
    print(f"  LDAP / password-only per probe: {per_probe / ((ew - ez) / probes):.2f}× after one interval,"
          f" {(rss_end - rss_zero) / (ee - ez):.2f}× at the end")
ratio = cpu(ap) / cpu(ls)
print()
print(f"goal: authprobe's CPU per login <= 1.0× ldapsearch's: {ratio:.3f}× ({'met' if ratio <= 1 else 'NOT met'});"
      f" 1/{1 / ratio:.0f} of ldapsearch's, 1/{cpu(refs['ldapsearch, same']) / cpu(ap):.0f} with authprobe's exchange,"
      f" 1/{cpu(refs['check_ldap']) / cpu(ap):.0f} of check_ldap's")
print(f"      ldapsearch's start alone (-VV) is {cpu(refs['ldapsearch -VV']) / cpu(ls) * 100:.0f} % of its CPU per login;"
      f" the login work alone, libldap in one process: authprobe {cpu(ap) / cpu(refs['libldap']):.2f}× its CPU per login")
PY
