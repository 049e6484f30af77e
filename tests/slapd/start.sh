#!/usr/bin/env bash
# Starts OpenLDAP's slapd (Debian packages slapd and ldap-utils) for authprobe's tests, in the
# foreground, with everything in DIR (an empty folder of its own):
#
#     tests/slapd/start.sh DIR LDAP_PORT LDAPS_PORT [--require-tls] [--use-lockout]
#
# It makes a CA (DIR/ca.pem) and a server certificate for 127.0.0.1 and localhost with openssl,
# fills in slapd.conf.in and entries.ldif.in, loads the entries with slapadd into an MDB database
# in DIR/db, then becomes slapd listening on ldap://127.0.0.1:LDAP_PORT/ (StartTLS offered) and
# ldaps://127.0.0.1:LDAPS_PORT/. Nothing under /etc/ldap or /var/lib/ldap is written or read,
# except the schema files of /etc/ldap/schema. tests/common/slapd.rs runs it; README.md says what
# the directory holds and what slapd answers.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if (($# < 3)); then
    echo "usage: $0 DIR LDAP_PORT LDAPS_PORT [--require-tls] [--use-lockout]" >&2
    exit 2
fi
dir="$(cd "$1" && pwd)" ldap_port="$2" ldaps_port="$3"
shift 3
security="" use_lockout=""
for opt in "$@"; do
    case "$opt" in
        --require-tls) security="security simple_bind=128" ;;
        --use-lockout) use_lockout="ppolicy_use_lockout" ;;
        *) echo "$0: unknown option $opt" >&2; exit 2 ;;
    esac
done
for tool in slapd slapadd openssl; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
        echo "$0: $tool is missing: apt-get install slapd ldap-utils openssl (see tests/slapd/README.md)" >&2
        exit 127
    }
done
PATH="$PATH:/usr/sbin"

# The certificates: an EC P-256 CA, and a server certificate it issued for 127.0.0.1 and localhost.
(
    cd "$dir"
    openssl req -x509 -nodes -days 30 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout ca.key -out ca.pem -subj "/CN=authprobe slapd test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > server.ext
    openssl x509 -req -days 30 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -extfile server.ext -out server.pem 2>/dev/null
)

gtime() { date -u -d "$1" +%Y%m%d%H%M%SZ; }
sed -e "s|@DIR@|$dir|g" -e "s|@SECURITY@|$security|" -e "s|@USE_LOCKOUT@|$use_lockout|" \
    "$here/slapd.conf.in" > "$dir/slapd.conf"
sed -e "s|@NOW_1D@|$(gtime '1 day ago')|g" -e "s|@AGO_25D@|$(gtime '25 days ago')|g" \
    -e "s|@AGO_60D@|$(gtime '60 days ago')|g" "$here/entries.ldif.in" > "$dir/entries.ldif"
mkdir -p "$dir/db"
slapadd -q -f "$dir/slapd.conf" -l "$dir/entries.ldif"

exec slapd -d 0 -f "$dir/slapd.conf" -h "ldap://127.0.0.1:$ldap_port/ ldaps://127.0.0.1:$ldaps_port/"
