#!/usr/bin/env bash
# The Debian package, end to end, on this machine: builds it with cargo-deb, lints it with
# lintian, installs it with dpkg -i, checks what it installed (check-config on the conffile and on
# its examples uncommented, systemd-analyze on the unit, the man pages, the completions, the
# service user running the unit's command), purges it with dpkg --purge and checks that nothing
# of it is left. Run by tests/run.sh after `cargo test` (it needs a release build, the slow part:
# minutes on 2 cores, once; then seconds). Needs root and a machine it may install packages on;
# an authprobe package already installed here is refused, not replaced.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg -i, dpkg --purge)"
if dpkg-query -W -f='${db:Status-Status}' authprobe 2>/dev/null | grep -qv not-installed; then
    fail "an authprobe package is already installed (or configured) here: this test installs and purges its own"
fi
user_before=$(getent passwd authprobe || true)

target=${CARGO_TARGET_DIR:-target}
# cargo-deb from crates.io, into a tools folder kept between runs (pinned: its output is tested).
tools=target/tools
cargo_deb_version=3.8.0
if ! "$tools/bin/cargo-deb" --version 2>/dev/null | grep -qF "$cargo_deb_version"; then
    echo "installing cargo-deb $cargo_deb_version into $tools"
    cargo install --quiet --locked cargo-deb --version "$cargo_deb_version" --root "$tools"
fi

echo "--- release build"
cargo build --release --locked --bin authprobe
bin="$target/release/authprobe"

echo "--- man pages and completions, from the clap definitions (authprobe generate)"
assets=target/deb-assets
rm -rf "$assets"
"$bin" generate man --out "$assets/man"
for shell in bash zsh fish; do
    "$bin" generate completions "$shell" --out "$assets/completions"
done

echo "--- cargo deb"
deb=$("$tools/bin/cargo-deb" --no-build --locked --quiet)
[ -f "$deb" ] || fail "cargo deb printed no package: $deb"
echo "$deb"
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"

echo "--- lintian (every tag shown; each one left is overridden, with its reason, in debian/lintian-overrides)"
lintian --display-info --pedantic --fail-on error,warning,info,pedantic "$deb"
lintian --display-info --pedantic --show-overrides --fail-on none "$deb" | sed 's/^/  /'

echo "--- dpkg -i"
installed=1
# The system user and group authprobe outlive a purge by design (debian/postrm says why): this
# test removes them when it made them, so that the machine is left as it was.
remove_user() {
    if getent passwd authprobe >/dev/null && [ -z "$user_before" ]; then
        # (deluser mentions that cron is not installed to clean the user's crontab: it has none.)
        deluser --quiet --system authprobe 2>&1 | grep -v crontab || true
        if getent group authprobe >/dev/null; then delgroup --quiet --system authprobe; fi
    fi
}
cleanup() {
    if [ -n "${server:-}" ]; then kill "$server" 2>/dev/null || true; fi
    if [ -n "$installed" ]; then
        echo "cleaning up: dpkg --purge authprobe"
        dpkg --purge authprobe >/dev/null 2>&1 || true
    fi
    remove_user
}
trap cleanup EXIT
dpkg -i "$deb"
[ "$(dpkg-query -W -f='${db:Status-Status}' authprobe)" = installed ] || fail "not installed"
files=$(dpkg -L authprobe)
# The package has no md5sums (cargo-deb writes none: debian/lintian-overrides); dpkg made them.
[ -s /var/lib/dpkg/info/authprobe.md5sums ] || fail "dpkg kept no checksums of the package's files"
dpkg --verify authprobe || fail "dpkg --verify authprobe"

echo "--- the service user"
entry=$(getent passwd authprobe) || fail "postinst made no user authprobe"
echo "$entry"
IFS=: read -r _ _ uid _ _ home shell <<<"$entry"
[ "$uid" -lt 1000 ] || fail "authprobe is not a system user (uid $uid)"
[ "$shell" = /usr/sbin/nologin ] || fail "authprobe has a login shell: $shell"
[ ! -e "$home" ] || fail "authprobe's home $home exists"
getent group authprobe >/dev/null || fail "no group authprobe"

echo "--- conffiles"
conffiles=$(dpkg-query -W -f='${Conffiles}' authprobe)
echo "$conffiles"
for f in /etc/authprobe/probes.yaml /etc/default/authprobe; do
    grep -q " $f " <<<"$conffiles" || fail "$f is not a conffile"
done

echo "--- check-config on the installed probes file, as the service user"
runuser -u authprobe -- /usr/bin/authprobe check-config --config.file /etc/authprobe/probes.yaml

echo "--- check-config on its examples, uncommented"
work=$(mktemp -d)
sed -e '/^targets: \[\]/,$ s/^#  /  /' -e 's/^targets: \[\]/targets:/' -e 's/^probes: \[\]/probes:/' \
    /etc/authprobe/probes.yaml >"$work/probes.yaml"
mkdir "$work/secrets"
for s in etna-app-key idp-client alice probe; do echo "example-$s" >"$work/secrets/$s"; done
out=$(/usr/bin/authprobe check-config --config.file "$work/probes.yaml")
echo "$out"
grep -q "OK, 3 target(s), 3 probe(s)" <<<"$out" || fail "the examples are not 3 targets and 3 probes"
for p in alice service-account dir-bind; do grep -q "^probe $p " <<<"$out" || fail "example probe $p missing"; done

echo "--- systemd-analyze verify on the installed unit"
unit=/usr/lib/systemd/system/authprobe.service
[ -f "$unit" ] || fail "no $unit"
out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $out"
if grep -q . <<<"$out"; then fail "systemd-analyze verify said: $out"; fi
exposure=$(systemd-analyze security --offline=yes "$unit" 2>&1 | sed -n 's/.*Overall exposure level for authprobe.service: \([0-9.]*\).*/\1/p')
echo "exposure $exposure (systemd's scale: 0 safe .. 10 unsafe)"
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || fail "exposure $exposure"
# The same sandbox as deploy/systemd/authprobe.service: the settings from NoNewPrivileges= to
# UMask= are identical in both, and both keep the state in StateDirectory=authprobe.
sandbox() { sed -n '/^NoNewPrivileges=/,/^UMask=/p' "$1"; }
diff <(sandbox deploy/systemd/authprobe.service) <(sandbox "$unit") || fail "the packaged unit's sandbox differs from deploy/systemd's"
for u in deploy/systemd/authprobe.service "$unit"; do
    grep -qx 'StateDirectory=authprobe' "$u" || fail "$u: no StateDirectory=authprobe"
done
grep -qx 'User=authprobe' "$unit" || fail "the packaged unit does not run as authprobe"
grep -qx 'EnvironmentFile=-/etc/default/authprobe' "$unit" || fail "the packaged unit does not read /etc/default/authprobe"
[ -L /etc/systemd/system/multi-user.target.wants/authprobe.service ] || fail "the unit was not enabled"

echo "--- the unit's command, as systemd would run it (no systemd runs on this machine)"
# StateDirectory= as systemd makes it, then ExecStart= with /etc/default/authprobe's $ARGS
# (its listen address swapped for a free local port) as the service user.
install -d -m 0700 -o authprobe -g authprobe /var/lib/authprobe
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# shellcheck disable=SC1091
ARGS=$(. /etc/default/authprobe && echo "$ARGS")
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
command=${exec_start/\$ARGS/${ARGS/:9871/127.0.0.1:$port}}
echo "$command"
# shellcheck disable=SC2086
runuser -u authprobe -- $command >"$work/run.log" 2>&1 &
server=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && break
    sleep 0.1
done
metrics=$(curl -fsS "http://127.0.0.1:$port/metrics") || fail "no metrics: $(cat "$work/run.log")"
grep -q '^authprobe_build_info' <<<"$metrics" || fail "no authprobe_build_info in: $metrics"
kill "$server"
wait "$server" || true
server=
[ -n "$(ls -A /var/lib/authprobe)" ] || fail "the service left no state in /var/lib/authprobe: $(cat "$work/run.log")"
echo "state: $(ls /var/lib/authprobe | tr '\n' ' ')"
rm -rf "$work"

echo "--- man pages"
for page in authprobe authprobe-run authprobe-probe authprobe-check-config authprobe-healthcheck authprobe-simulate; do
    [ -f "/usr/share/man/man1/$page.1.gz" ] || fail "no man page $page"
done
text=$(MANWIDTH=100 man -P cat authprobe-run 2>&1)
grep -q -- '--config.file' <<<"$text" && grep -q -- '--storage.path' <<<"$text" || fail "man authprobe-run: $text"
text=$(MANWIDTH=100 man -P cat authprobe 2>&1)
grep -q 'check-config' <<<"$text" || fail "man authprobe: $text"
if grep -qw generate <<<"$text"; then fail "the packagers' generate command is in the man page"; fi
# groff's own warnings about the pages (man --warnings, as lintian's groff-message check does).
warnings=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z /usr/share/man/man1/authprobe*.1.gz 2>&1 >/dev/null)
[ -z "$warnings" ] || fail "groff: $warnings"

echo "--- completions"
bash_completion=/usr/share/bash-completion/completions/authprobe
for f in "$bash_completion" /usr/share/zsh/vendor-completions/_authprobe /usr/share/fish/vendor_completions.d/authprobe.fish; do
    [ -s "$f" ] || fail "no completion file $f"
    grep -q check-config "$f" || fail "$f does not complete check-config"
    if grep -qw generate "$f"; then fail "$f completes the packagers' generate command"; fi
done
# bash loads it and completes the subcommands.
words=$(bash -c "source $bash_completion; COMP_WORDS=(authprobe che); COMP_CWORD=1; COMP_LINE='authprobe che'; COMP_POINT=\${#COMP_LINE}; _authprobe authprobe che authprobe; echo \"\${COMPREPLY[*]}\"")
[ "$words" = check-config ] || fail "bash completes 'authprobe che' as '$words'"

echo "--- dpkg --purge"
dpkg --purge authprobe
installed=
left=()
while read -r f; do
    # Directories the package shares with others (/usr/bin, /usr/share/man/man1…) stay; its
    # own are in the list below.
    if [ -e "$f" ] || [ -L "$f" ]; then [ -d "$f" ] && [ ! -L "$f" ] || left+=("$f"); fi
done <<<"$files"
for f in /etc/authprobe /etc/default/authprobe /var/lib/authprobe /usr/share/doc/authprobe \
    /etc/systemd/system/multi-user.target.wants/authprobe.service \
    /var/lib/systemd/deb-systemd-helper-enabled/authprobe.service.dsh-also \
    /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/authprobe.service \
    /var/lib/systemd/deb-systemd-helper-masked/authprobe.service; do
    if [ -e "$f" ] || [ -L "$f" ]; then left+=("$f"); fi
done
if dpkg-query -W authprobe >/dev/null 2>&1; then left+=("dpkg's record of authprobe"); fi
((${#left[@]} == 0)) || fail "left behind by dpkg --purge: ${left[*]}"
echo "nothing of the package is left"

getent passwd authprobe >/dev/null || fail "dpkg --purge removed the system user authprobe"
echo "kept by design: the system user and group authprobe$([ -z "$user_before" ] && echo "; removed now, as this test made them")"
remove_user
trap - EXIT
echo "package test: OK"
