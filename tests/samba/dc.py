#!/usr/bin/python3
"""A Samba Active Directory domain controller for authprobe's tests: Debian's samba, its LDAP
server only, in a network namespace of its own, reached through loopback ports of the caller's
namespace that this script relays into it. See README.md beside this file.

  dc.py template [--template T]          provision the template T unless it is there and current
  dc.py serve --dir DIR [--template T]   copy T into DIR (unless DIR holds a DC already), start
        [--ldap-port P] [--ldaps-port P]  it, print one line `listening ldap=… ldaps=… gc=… gcs=…
        [--strong-auth yes|no|…]          pid=…` once it accepts LDAP connections, and relay
        [--tls-cert F --tls-key F]        until its stdin closes (or SIGTERM, SIGINT), like samba -i
  dc.py unlock --dir DIR USER             unlock USER (badPwdCount and lockoutTime to 0)

Samba's LDAP ports are fixed (389, 636, 3268, 3269: no smb.conf option moves them), hence the
namespace: every DC has its own loopback, and any number of them can run at once. Making a
network namespace needs root (CAP_SYS_ADMIN), as does samba itself.

Runs with Debian's /usr/bin/python3, whose samba modules provision and fill the template (the
script re-executes itself with it when started by another Python).
"""

import argparse
import asyncio
import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

SYSTEM_PYTHON = "/usr/bin/python3"
SAMBA = "/usr/sbin/samba"
SAMBA_TOOL = "/usr/bin/samba-tool"
if os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON) and os.path.exists(SYSTEM_PYTHON):
    os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, os.path.abspath(__file__)] + sys.argv[1:])

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONF_IN = os.path.join(HERE, "smb.conf.in")
DEFAULT_TEMPLATE = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "tmp",
                                "samba-template")
# A template older than this is made again: the user's password (pwdLastSet = when the template
# was made) expires after the domain's maximum password age, 42 days.
TEMPLATE_MAX_AGE = 30 * 86400

# The domain. Mirrored by tests/common/samba.rs.
REALM = "AUTHPROBE.TEST"
DNS_DOMAIN = "authprobe.test"
DOMAIN = "AUTHPROBE"
HOST = "DC1"
ADMIN_PASSWORD = "ldap-Admin-Pw-Xx91"
LOCKOUT_THRESHOLD = 3
# 2000-01-01T00:00:00Z: the pwdLastSet of the expired password, the lockoutTime of the locked user.
LONG_AGO = 946684800
# 2020-01-01T00:00:00Z: the accountExpires of the expired account.
ACCOUNT_EXPIRED_AT = 1577836800

# sAMAccountName, password, what else. Passwords meet Samba's default complexity rules and hold
# no token of the account's names.
USERS = [
    ("svc-authprobe", "ldap-Svc-Pw-Hh81", {"service": True}),
    ("probe-user", "ldap-User-Pw-Aa11", {"given": "Grace", "surname": "Probe", "mail": "probe-user@authprobe.test"}),
    ("probe-mustchange", "ldap-Must-Pw-Dd44", {"must_change": True}),
    ("probe-expired", "ldap-Expired-Pw-Cc33", {"pwd_last_set": LONG_AGO}),
    ("probe-disabled", "ldap-Disabled-Pw-Ee55", {"disabled": True}),
    ("probe-acctexpired", "ldap-AcctExp-Pw-Ff66", {"account_expires": ACCOUNT_EXPIRED_AT}),
    ("probe-locked", "ldap-Locked-Pw-Bb22", {"lockout": True, "locked": True}),
    ("probe-lockme", "ldap-Lockme-Pw-Gg77", {"lockout": True}),
]

INNER_PORTS = {"ldap": 389, "ldaps": 636, "gc": 3268, "gcs": 3269}

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

libc = ctypes.CDLL(None, use_errno=True)


def log(*args):
    print("samba dc.py:", *args, file=sys.stderr, flush=True)


def conf_path(d):
    return os.path.join(d, "etc", "smb.conf")


def write_conf(d, strong_auth="no", tls=None):
    """Writes DIR/etc/smb.conf from smb.conf.in; tls is (cert, key) files or None (Samba's own)."""
    with open(CONF_IN) as f:
        text = f.read()
    tls_lines = ""
    if tls:
        tls_lines = "\ttls certfile = %s\n\ttls keyfile = %s\n" % tls
    text = text.replace("@DIR@", os.path.abspath(d)).replace("@STRONG_AUTH@", strong_auth)
    text = text.replace("@TLS@\n", tls_lines)
    os.makedirs(os.path.join(d, "etc"), exist_ok=True)
    for sub in ("log", "run", "cache", "state", "private"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    with open(conf_path(d), "w") as f:
        f.write(text)


def new_netns():
    """Moves this process into a new network namespace whose loopback is up."""
    if libc.unshare(CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        sys.exit("samba dc.py: unshare(CLONE_NEWNET): %s (a network namespace needs root)" % os.strerror(e))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sh22x", b"lo", 0))
        flags = struct.unpack("16sh22x", ifr)[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
    finally:
        s.close()


def die_with_parent():
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def samba_argv(d):
    # -i: foreground, logs on stdout, ends when its stdin closes; -M single: one process.
    return [SAMBA, "-i", "-M", "single", "-s", conf_path(d)]


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_accepting(running, d, timeout):
    """Waits until samba accepts connections on 389 and 636 (True), or has ended or not within
    timeout seconds (False, its output copied to stderr)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running():
        if accepts(389) and accepts(636):
            return True
        time.sleep(0.02)
    out = os.path.join(d, "log", "samba.out")
    if os.path.exists(out):
        with open(out) as f:
            sys.stderr.write(f.read()[-4000:])
    return False


# --- the template ---------------------------------------------------------------------------


def stamp():
    """What the template is made from: this script, smb.conf.in and samba's version."""
    h = hashlib.sha256()
    for p in (os.path.abspath(__file__), CONF_IN):
        with open(p, "rb") as f:
            h.update(f.read())
    h.update(subprocess.run([SAMBA, "-V"], capture_output=True).stdout)
    return h.hexdigest()


def template_current(template):
    try:
        with open(os.path.join(template, "authprobe-stamp")) as f:
            lines = f.read().split()
    except OSError:
        return False
    return len(lines) == 2 and lines[0] == stamp() and time.time() - float(lines[1]) < TEMPLATE_MAX_AGE


def ensure_template(template, copy_to=None):
    """Makes the template unless it is there and current, and copies it into copy_to, under a lock
    (another process making it is waited for)."""
    os.makedirs(os.path.dirname(template), exist_ok=True)
    with open(template + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template_current(template):
            # In a child: the first start needs a network namespace of its own.
            args = [SYSTEM_PYTHON, os.path.abspath(__file__), "build-template", template]
            if subprocess.run(args).returncode != 0:
                sys.exit("samba dc.py: making the template %s failed" % template)
        if copy_to:
            os.makedirs(copy_to, exist_ok=True)
            subprocess.run(["cp", "-a", os.path.join(template, "."), copy_to], check=True)


def populate(d):
    """The users, their states and the lockout policy, written through Samba's own modules into
    the local sam.ldb (no server running)."""
    import ldb
    import samba
    from samba.auth import system_session
    from samba.param import LoadParm
    from samba.samdb import SamDB

    lp = LoadParm()
    lp.load(conf_path(d))
    db = SamDB(url=os.path.join(d, "private", "sam.ldb"), session_info=system_session(), lp=lp)
    base = db.domain_dn()

    def dn_of(name):
        return db.search(base, ldb.SCOPE_SUBTREE, "(sAMAccountName=%s)" % name, ["dn"])[0].dn

    def replace(name, values, controls=()):
        m = ldb.Message()
        m.dn = dn_of(name)
        for attr, value in values.items():
            m[attr] = ldb.MessageElement(value, ldb.FLAG_MOD_REPLACE, attr)
        db.modify(m, controls=list(controls))

    lockout = []
    for name, password, opts in USERS:
        named = "given" in opts
        db.newuser(name, password, force_password_change_at_next_login_req=opts.get("must_change", False),
                   useusernameascn=None if named else False, givenname=opts.get("given"),
                   surname=opts.get("surname"), mailaddress=opts.get("mail"))
        if opts.get("service"):
            db.setexpiry("(sAMAccountName=%s)" % name, 0, no_expiry_req=True)
        if opts.get("disabled"):
            db.disable_account("(sAMAccountName=%s)" % name)
        if "account_expires" in opts:
            replace(name, {"accountExpires": str(samba.unix2nttime(opts["account_expires"]))})
        if "pwd_last_set" in opts:
            # pwdLastSet takes only 0 and -1, from LDAP and from the local database alike, except
            # with the password itself and Samba's control for imported passwords
            # (DSDB_CONTROL_PASSWORD_BYPASS_LAST_SET_OID).
            replace(name, {"pwdLastSet": str(samba.unix2nttime(opts["pwd_last_set"])),
                           "clearTextPassword": password.encode("utf-16-le")},
                    controls=["local_oid:1.3.6.1.4.1.7165.4.3.20:0"])
        if opts.get("lockout"):
            lockout.append(str(dn_of(name)))
        if opts.get("locked"):
            replace(name, {"lockoutTime": str(samba.unix2nttime(LONG_AGO)), "badPwdCount": str(LOCKOUT_THRESHOLD)})

    # A fine-grained password policy for the lockout users only (the domain's own threshold stays
    # 0, Samba's default, so wrong passwords never lock the others): 3 wrong passwords within 30
    # minutes lock the account until it is unlocked (msDS-LockoutDuration 0).
    db.add_ldif("""dn: CN=authprobe-lockout,CN=Password Settings Container,CN=System,%s
objectClass: msDS-PasswordSettings
msDS-PasswordSettingsPrecedence: 1
msDS-PasswordReversibleEncryptionEnabled: FALSE
msDS-PasswordHistoryLength: 24
msDS-PasswordComplexityEnabled: TRUE
msDS-MinimumPasswordLength: 7
msDS-MinimumPasswordAge: -864000000000
msDS-MaximumPasswordAge: -36288000000000
msDS-LockoutThreshold: %d
msDS-LockoutObservationWindow: -18000000000
msDS-LockoutDuration: 0
%s""" % (base, LOCKOUT_THRESHOLD, "".join("msDS-PSOAppliesTo: %s\n" % dn for dn in lockout)))


def build_template(template):
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="authprobe-samba-")  # short: samba's unix sockets live in it
    try:
        write_conf(work)
        # libwbclient's own default (/run/samba/winbindd) otherwise: looked at, never used.
        os.environ["WINBINDD_SOCKET_DIR"] = os.path.join(work, "winbindd")
        subprocess.run([SAMBA_TOOL, "domain", "provision", "-s", conf_path(work), "--targetdir=" + work,
                        "--realm=" + REALM, "--domain=" + DOMAIN, "--server-role=dc", "--dns-backend=NONE",
                        "--host-name=" + HOST, "--adminpass=" + ADMIN_PASSWORD],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        provisioned = time.monotonic()
        populate(work)
        populated = time.monotonic()
        # The first start makes the TLS key and the self-signed certificates (private/tls); the
        # copies share them.
        new_netns()
        with open(os.path.join(work, "log", "samba.out"), "w") as out:
            proc = subprocess.Popen(samba_argv(work), stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                                    preexec_fn=die_with_parent)
            ok = wait_accepting(lambda: proc.poll() is None, work, 120)
            proc.stdin.close()
            proc.wait(30)
        if not ok:
            sys.exit("samba dc.py: the template's first start failed")
        for p in ("private/ldapi", "private/ldap_priv", "msg.sock", "run", "log", "ncalrpc", "private/smbd.tmp"):
            path = os.path.join(work, p)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
        with open(os.path.join(work, "authprobe-stamp"), "w") as f:
            f.write("%s %f\n" % (stamp(), time.time()))
        new = template + ".new"
        shutil.rmtree(new, ignore_errors=True)
        subprocess.run(["cp", "-a", work, new], check=True)
        shutil.rmtree(template, ignore_errors=True)
        os.rename(new, template)
        log("template %s made in %.1f s (provision %.1f s, users %.1f s, first start %.1f s)" % (
            template, time.monotonic() - started, provisioned - started, populated - provisioned,
            time.monotonic() - populated))
    except subprocess.CalledProcessError as e:
        sys.stderr.write((e.stderr or b"").decode(errors="replace")[-4000:])
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- serve ----------------------------------------------------------------------------------


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass


def relay_to(inner_port):
    async def handle(client_reader, client_writer):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", inner_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))
        writer.close()
        client_writer.close()

    return handle


async def serve_async(d, listeners):
    out = open(os.path.join(d, "log", "samba.out"), "a")
    proc = await asyncio.create_subprocess_exec(*samba_argv(d), stdin=subprocess.PIPE, stdout=out,
                                                stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    loop = asyncio.get_running_loop()
    ready = await loop.run_in_executor(None, wait_accepting, lambda: proc.returncode is None, d, 60)
    if not ready:
        proc.kill()
        sys.exit("samba dc.py: samba did not accept LDAP connections within 60 s (log: %s)" % out.name)
    servers = [await asyncio.start_server(relay_to(INNER_PORTS[name]), sock=sock) for name, sock in listeners.items()]
    ports = " ".join("%s=%d" % (name, sock.getsockname()[1]) for name, sock in listeners.items())
    print("listening %s pid=%d dir=%s" % (ports, proc.pid, d), flush=True)

    def stop():
        # samba -i ends when its stdin closes (it logs "EOF on stdin"); killed if it lingers.
        if not proc.stdin.is_closing():
            proc.stdin.close()
            loop.call_later(10, lambda: proc.returncode is None and proc.kill())

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    # A daemon thread: a blocked read must not hold up the exit once samba has ended otherwise.
    threading.Thread(target=read_until_eof, args=(lambda: loop.call_soon_threadsafe(stop),), daemon=True).start()
    code = await proc.wait()
    for s in servers:
        s.close()
    return code


def read_until_eof(then):
    """Calls then() when this process's stdin closes: its caller has gone."""
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    try:
        then()
    except RuntimeError:  # the loop has closed already
        pass


def serve(args):
    d = os.path.abspath(args.dir)
    if not os.path.exists(conf_path(d)):
        if os.path.isdir(d) and os.listdir(d):
            sys.exit("samba dc.py: %s is neither empty nor a DC's folder" % d)
        ensure_template(args.template, copy_to=d)
    tls = None
    if args.tls_cert:
        # Samba refuses a key file that others may read.
        own = os.path.join(d, "private", "authprobe-tls")
        os.makedirs(own, mode=0o700, exist_ok=True)
        tls = (os.path.join(own, "cert.pem"), os.path.join(own, "key.pem"))
        shutil.copyfile(args.tls_cert, tls[0])
        shutil.copyfile(args.tls_key, tls[1])
        os.chmod(tls[1], 0o600)
    write_conf(d, strong_auth=args.strong_auth, tls=tls)
    # The listening sockets belong to the namespace they are made in: this one.
    listeners = {}
    for name, port in (("ldap", args.ldap_port), ("ldaps", args.ldaps_port), ("gc", 0), ("gcs", 0)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
        s.setblocking(False)
        listeners[name] = s
    new_netns()
    sys.exit(asyncio.run(serve_async(d, listeners)))


def unlock(args):
    d = os.path.abspath(args.dir)
    subprocess.run([SAMBA_TOOL, "user", "unlock", args.user, "-H", os.path.join(d, "private", "sam.ldb"),
                    "-s", conf_path(d)], check=True, stdout=subprocess.DEVNULL)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("template", help="make the template unless it is there and current")
    t.add_argument("--template", default=DEFAULT_TEMPLATE)
    b = sub.add_parser("build-template", help=argparse.SUPPRESS)
    b.add_argument("template")
    s = sub.add_parser("serve", help="start a DC in DIR and relay to it")
    s.add_argument("--dir", required=True, help="its folder: empty (a copy of the template) or a DC's")
    s.add_argument("--template", default=DEFAULT_TEMPLATE)
    s.add_argument("--ldap-port", type=int, default=0, help="loopback port relayed to 389 (0: a free one)")
    s.add_argument("--ldaps-port", type=int, default=0, help="loopback port relayed to 636 (0: a free one)")
    s.add_argument("--strong-auth", default="no", choices=["no", "yes", "allow_sasl_over_tls"],
                   help="ldap server require strong auth (default no: simple binds over plain LDAP work)")
    s.add_argument("--tls-cert", help="serve this certificate chain (PEM) instead of Samba's own")
    s.add_argument("--tls-key", help="its private key (PEM)")
    u = sub.add_parser("unlock", help="unlock a user of the DC in DIR (running or not)")
    u.add_argument("--dir", required=True)
    u.add_argument("user")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("samba dc.py: needs root (samba, and the network namespace)")
    if args.command == "template":
        ensure_template(os.path.abspath(args.template))
    elif args.command == "build-template":
        build_template(args.template)
    elif args.command == "serve":
        if bool(args.tls_cert) != bool(args.tls_key):
            sys.exit("samba dc.py: --tls-cert and --tls-key go together")
        args.template = os.path.abspath(args.template)
        serve(args)
    elif args.command == "unlock":
        unlock(args)


if __name__ == "__main__":
    main()
