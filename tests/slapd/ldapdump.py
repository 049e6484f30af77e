#!/usr/bin/env python3
"""Prints the LDAP messages of a pcap file (tcpdump -w) on a port, decoded, with their bytes in hex:
how README.md's dumps were made. Plain LDAP only (after StartTLS it says "TLS"). No dependencies.

    tcpdump -i lo -Z root -U -w /tmp/ldap.pcap 'tcp port 38901' &   # then run ldapwhoami...
    python3 tests/slapd/ldapdump.py /tmp/ldap.pcap 38901
"""
import struct
import sys

RESULT = {0: 'success', 1: 'operationsError', 2: 'protocolError', 13: 'confidentialityRequired',
          32: 'noSuchObject', 34: 'invalidDNSyntax', 48: 'inappropriateAuthentication',
          49: 'invalidCredentials', 50: 'insufficientAccessRights', 53: 'unwillingToPerform'}
PPOLICY_ERROR = ['passwordExpired', 'accountLocked', 'changeAfterReset', 'passwordModNotAllowed',
                 'mustSupplyOldPassword', 'insufficientPasswordQuality', 'passwordTooShort',
                 'passwordTooYoung', 'passwordInHistory']
OPS = {0x60: 'BindRequest', 0x61: 'BindResponse', 0x42: 'UnbindRequest', 0x63: 'SearchRequest',
       0x64: 'SearchResultEntry', 0x65: 'SearchResultDone', 0x77: 'ExtendedRequest',
       0x78: 'ExtendedResponse'}
PPOLICY_OID = '1.3.6.1.4.1.42.2.27.8.5.1'


def streams(path, port):
    """The TCP payloads to and from `port`, per client port, in capture order."""
    data = open(path, 'rb').read()
    assert struct.unpack('<I', data[:4])[0] in (0xa1b2c3d4, 0xa1b23c4d), 'not a little-endian pcap'
    link = struct.unpack('<I', data[20:24])[0]
    strip = {1: 14, 113: 16, 276: 20}[link]
    off, out = 24, {}
    while off < len(data):
        incl = struct.unpack('<I', data[off + 8:off + 12])[0]
        pkt = data[off + 16 + strip:off + 16 + incl]
        off += 16 + incl
        if pkt[0] >> 4 != 4 or pkt[9] != 6:
            continue
        ihl = (pkt[0] & 15) * 4
        sp, dp = struct.unpack('>HH', pkt[ihl:ihl + 4])
        payload = pkt[ihl + (pkt[ihl + 12] >> 4) * 4:struct.unpack('>H', pkt[2:4])[0]]
        if port in (sp, dp) and payload:
            out.setdefault(dp if sp == port else sp, []).append(('C' if dp == port else 'S', payload))
    return out


def tlv(b, i=0):
    """(tag, value, end) of the BER element at i; IndexError when incomplete."""
    t, n = b[i], b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7f
        n = int.from_bytes(b[i:i + k], 'big')
        i += k
    if i + n > len(b):
        raise IndexError
    return t, b[i:i + n], i + n


def seq(b):
    i, out = 0, []
    while i < len(b):
        t, v, i = tlv(b, i)
        out.append((t, v))
    return out


def ppolicy(v):
    parts = []
    for t, x in seq(seq(v)[0][1]):
        if t == 0xa0:
            (t2, x2), = seq(x)
            name = 'timeBeforeExpiration' if t2 == 0x80 else 'graceAuthNsRemaining'
            parts.append('%s=%d' % (name, int.from_bytes(x2, 'big')))
        elif t == 0x81:
            e = int.from_bytes(x, 'big')
            parts.append('error=%d (%s)' % (e, PPOLICY_ERROR[e]))
    return '{' + ', '.join(parts) + '}'


def describe(msg):
    items = seq(seq(msg)[0][1])
    t, op = items[1]
    s = 'id=%d %s' % (int.from_bytes(items[0][1], 'big'), OPS.get(t, hex(t)))
    if t in (0x61, 0x65, 0x78):
        f = seq(op)
        code = int.from_bytes(f[0][1], 'big')
        s += ' resultCode=%d (%s) matchedDN=%r diagnosticMessage=%r' % (
            code, RESULT.get(code, '?'), f[1][1].decode(), f[2][1].decode())
        for tt, vv in f[3:]:
            s += ' [%d]=%r' % (tt & 0x1f, vv.decode())
    elif t == 0x60:
        f = seq(op)
        s += ' name=%r simple=%r' % (f[1][1].decode(), f[2][1].decode())
    elif t == 0x77:
        s += ' requestName=%r' % seq(op)[0][1].decode()
    elif t == 0x64:
        s += ' dn=%r' % seq(op)[0][1].decode()
    for tt, vv in items[2:]:
        for _, cv in seq(vv):
            c = seq(cv)
            oid = c[0][1].decode()
            value = [x for x in c[1:] if x[0] == 0x04]
            s += ' control=' + oid
            if value:
                s += ' value=' + value[0][1].hex() + (' ' + ppolicy(value[0][1]) if oid == PPOLICY_OID else '')
    return s


def main():
    for client, chunks in streams(sys.argv[1], int(sys.argv[2])).items():
        print('--- connection from port', client)
        pending = {'C': b'', 'S': b''}
        for d, p in chunks:
            pending[d] += p
            while pending[d]:
                if pending[d][0] != 0x30:
                    print(d, 'TLS', pending[d][:5].hex())
                    pending[d] = b''
                    break
                try:
                    _, _, end = tlv(pending[d])
                except IndexError:
                    break
                m, pending[d] = pending[d][:end], pending[d][end:]
                print(d, describe(m))
                print('  ', m.hex())


if __name__ == '__main__':
    main()
