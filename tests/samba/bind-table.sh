#!/usr/bin/env bash
# Prints what a test DC (tests/samba/dc.py) answers to simple binds in each account state, over
# plain LDAP, StartTLS and LDAPS, as ldapsearch (ldap-utils) reports it: the table of README.md.
# Then the same plain binds with Samba's default `ldap server require strong auth = yes`.
#   tests/samba/bind-table.sh [TEMPLATE]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
template=${1:-}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# start NAME ARGS...: a DC in $work/NAME; sets ldap and ldaps to its relayed ports.
start() {
    local name=$1
    shift
    mkfifo "$work/$name.in"
    sleep infinity >"$work/$name.in" &
    pids+=($!)
    "$here/dc.py" serve --dir "$work/$name" ${template:+--template "$template"} "$@" \
        <"$work/$name.in" >"$work/$name.out" &
    pids+=($!)
    for _ in $(seq 1 1200); do
        grep -q '^listening' "$work/$name.out" 2>/dev/null && break
        sleep 0.05
    done
    local line
    line=$(head -1 "$work/$name.out")
    ldap=$(sed 's/.* ldap=\([0-9]*\).*/\1/' <<<"$line")
    ldaps=$(sed 's/.* ldaps=\([0-9]*\).*/\1/' <<<"$line")
}

# bind URL WHO PASSWORD [-ZZ]: "0" or "CODE MESSAGE" of a simple bind.
bind() {
    local out
    if out=$(LDAPTLS_REQCERT=never ldapsearch ${4:-} -LLL -x -H "$1" -D "$2" -w "$3" -b '' -s base dnsHostName 2>&1); then
        echo "0 (success)"
    else
        sed -n 's/.*(\([0-9]*\))$/\1/p; s/^\tadditional info: //p' <<<"$out" | paste -sd' '
    fi
}

cases=(
    "good user, UPN|probe-user@authprobe.test|ldap-User-Pw-Aa11"
    "good user, DN|CN=Grace Probe,CN=Users,DC=authprobe,DC=test|ldap-User-Pw-Aa11"
    "good user, DOMAIN\\name|AUTHPROBE\\probe-user|ldap-User-Pw-Aa11"
    "good user, bare sAMAccountName|probe-user|ldap-User-Pw-Aa11"
    "service account, DN|CN=svc-authprobe,CN=Users,DC=authprobe,DC=test|ldap-Svc-Pw-Hh81"
    "wrong password|probe-user@authprobe.test|ldap-Wrong-Pw-Zz00"
    "unknown user|probe-nobody@authprobe.test|ldap-Wrong-Pw-Zz00"
    "empty password (unauthenticated bind)|probe-user@authprobe.test|"
    "must change (pwdLastSet=0)|probe-mustchange@authprobe.test|ldap-Must-Pw-Dd44"
    "must change, wrong password|probe-mustchange@authprobe.test|ldap-Wrong-Pw-Zz00"
    "password expired|probe-expired@authprobe.test|ldap-Expired-Pw-Cc33"
    "password expired, wrong password|probe-expired@authprobe.test|ldap-Wrong-Pw-Zz00"
    "disabled|probe-disabled@authprobe.test|ldap-Disabled-Pw-Ee55"
    "disabled, wrong password|probe-disabled@authprobe.test|ldap-Wrong-Pw-Zz00"
    "account expired|probe-acctexpired@authprobe.test|ldap-AcctExp-Pw-Ff66"
    "account expired, wrong password|probe-acctexpired@authprobe.test|ldap-Wrong-Pw-Zz00"
    "locked out|probe-locked@authprobe.test|ldap-Locked-Pw-Bb22"
    "locked out, wrong password|probe-locked@authprobe.test|ldap-Wrong-Pw-Zz00"
)

table() {
    local label=$1 url=$2 flag=${3:-}
    echo "## $label"
    for c in "${cases[@]}"; do
        IFS='|' read -r what who pw <<<"$c"
        echo "$what: $(bind "$url" "$who" "$pw" "$flag")"
    done
    echo "lockout user, wrong passwords 1-4 then right: $(for i in 1 2 3 4; do
        bind "$url" probe-lockme@authprobe.test ldap-Wrong-Pw-Zz00 "$flag" | cut -d" " -f1,9
    done | paste -sd';') ; $(bind "$url" probe-lockme@authprobe.test ldap-Lockme-Pw-Gg77 "$flag")"
    "$here/dc.py" unlock --dir "$dir" probe-lockme
    echo "lockout user after dc.py unlock: $(bind "$url" probe-lockme@authprobe.test ldap-Lockme-Pw-Gg77 "$flag")"
}

start plain
dir=$work/plain
table "ldap:// (strong auth no)" "ldap://127.0.0.1:$ldap"
table "ldap:// + StartTLS" "ldap://127.0.0.1:$ldap" -ZZ
table "ldaps://" "ldaps://127.0.0.1:$ldaps"

start strong --strong-auth yes
dir=$work/strong
echo "## ldap:// with Samba's default, strong auth yes"
for c in "${cases[0]}" "${cases[5]}" "${cases[6]}"; do
    IFS='|' read -r what who pw <<<"$c"
    echo "$what: $(bind "ldap://127.0.0.1:$ldap" "$who" "$pw")"
done
echo "good user over StartTLS: $(bind "ldap://127.0.0.1:$ldap" probe-user@authprobe.test ldap-User-Pw-Aa11 -ZZ)"
echo "good user over ldaps: $(bind "ldaps://127.0.0.1:$ldaps" probe-user@authprobe.test ldap-User-Pw-Aa11)"
echo "anonymous rootDSE: $(LDAPTLS_REQCERT=never ldapsearch -LLL -x -H "ldap://127.0.0.1:$ldap" -b '' -s base dnsHostName 2>&1 | paste -sd' ')"
