//! The LDAP messages of a bind probe (RFC 4511): the requests it sends, written, and the
//! responses it reads, with their controls. Pure: bytes in, values out.

use zeroize::Zeroizing;

use super::ber::{self, BerError, Reader};

/// The password policy control (draft-behera-ldap-password-policy), asked with every bind.
pub const PPOLICY_OID: &str = "1.3.6.1.4.1.42.2.27.8.5.1";
/// RFC 4532's "Who am I?" extended operation.
pub const WHOAMI_OID: &str = "1.3.6.1.4.1.4203.1.11.3";
/// RFC 4511's StartTLS extended operation.
pub const STARTTLS_OID: &str = "1.3.6.1.4.1.1466.20037";
/// RFC 4511's notice of disconnection, an unsolicited response (message id 0).
pub const NOTICE_OF_DISCONNECTION_OID: &str = "1.3.6.1.4.1.1466.20036";

/// Application tags of the operations, as they appear on the wire.
pub mod op {
    /// BindRequest.
    pub const BIND_REQUEST: u8 = 0x60;
    /// BindResponse.
    pub const BIND_RESPONSE: u8 = 0x61;
    /// UnbindRequest (primitive, empty).
    pub const UNBIND_REQUEST: u8 = 0x42;
    /// SearchRequest.
    pub const SEARCH_REQUEST: u8 = 0x63;
    /// SearchResultEntry.
    pub const SEARCH_ENTRY: u8 = 0x64;
    /// SearchResultDone.
    pub const SEARCH_DONE: u8 = 0x65;
    /// SearchResultReference.
    pub const SEARCH_REFERENCE: u8 = 0x73;
    /// ExtendedRequest.
    pub const EXTENDED_REQUEST: u8 = 0x77;
    /// ExtendedResponse.
    pub const EXTENDED_RESPONSE: u8 = 0x78;
}

/// A control of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// `controlType`.
    pub oid: String,
    /// `criticality`.
    pub critical: bool,
    /// `controlValue`.
    pub value: Option<Vec<u8>>,
}

/// A response that carries an LDAPResult (bind, search done, extended), or another operation's
/// message with its tag alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `messageID`: 0 for an unsolicited notification.
    pub id: i64,
    /// The operation's application tag ([`op`]).
    pub op: u8,
    /// `resultCode`, whatever its value (directories send codes RFC 4511 does not list).
    pub code: i64,
    /// `matchedDN`.
    pub matched_dn: String,
    /// `diagnosticMessage`, as sent (lossy UTF-8).
    pub message: String,
    /// Whether it carries a `referral`.
    pub referral: bool,
    /// An extended response's `responseName`.
    pub name: Option<String>,
    /// An extended response's `responseValue`.
    pub value: Option<Vec<u8>>,
    /// Its controls.
    pub controls: Vec<Control>,
    /// A search result entry's name and attributes.
    pub entry: Option<Entry>,
}

/// A search result entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `objectName`: its DN, as sent (lossy UTF-8).
    pub dn: String,
    /// Its attributes and their values.
    pub attributes: Vec<(String, Vec<Vec<u8>>)>,
}

impl Entry {
    /// The first value of `name` (case ignored), if it has one.
    pub fn first(&self, name: &str) -> Option<&[u8]> {
        let (_, values) = self.attributes.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        values.first().map(Vec::as_slice)
    }
}

/// How far below its base a search looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The base entry alone.
    Base,
    /// Its children.
    One,
    /// The base and everything below it.
    Sub,
}

impl Scope {
    /// Its name in probes.yaml.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Base => "base",
            Scope::One => "one",
            Scope::Sub => "sub",
        }
    }
}

/// A search of `base` with `scope` and `filter` (BER, from [`super::filter::encode`]) for
/// `attributes` (none: `1.1`, no attributes), at most `size_limit` entries, without following
/// aliases.
pub fn search_request(
    id: i32,
    base: &str,
    scope: Scope,
    filter: &[u8],
    attributes: &[&str],
    size_limit: i64,
) -> Vec<u8> {
    let mut body = ber::tlv(0x04, base.as_bytes());
    body.extend(ber::int(0x0a, scope as i64));
    body.extend(ber::int(0x0a, 0));
    body.extend(ber::int(0x02, size_limit));
    body.extend(ber::int(0x02, 0));
    body.extend(ber::tlv(0x01, &[0x00]));
    body.extend_from_slice(filter);
    let wanted: &[&str] = if attributes.is_empty() { &["1.1"] } else { attributes };
    let list: Vec<u8> = wanted.iter().flat_map(|a| ber::tlv(0x04, a.as_bytes())).collect();
    body.extend(ber::tlv(0x30, &list));
    message(id, ber::tlv(op::SEARCH_REQUEST, &body), &[])
}

impl Response {
    /// The value of the control `oid`, if the response carries it (an empty value if it has none).
    pub fn control(&self, oid: &str) -> Option<&[u8]> {
        self.controls.iter().find(|c| c.oid == oid).map(|c| c.value.as_deref().unwrap_or_default())
    }
}

/// One LDAPMessage: `SEQUENCE { messageID, protocolOp, controls [0] OPTIONAL }`.
fn message(id: i32, op: Vec<u8>, controls: &[&str]) -> Vec<u8> {
    let mut body = ber::int(0x02, i64::from(id));
    body.extend(op);
    if !controls.is_empty() {
        // Control ::= SEQUENCE { controlType, criticality DEFAULT FALSE, controlValue OPTIONAL }
        let list: Vec<u8> = controls.iter().flat_map(|oid| ber::tlv(0x30, &ber::tlv(0x04, oid.as_bytes()))).collect();
        body.extend(ber::tlv(0xa0, &list));
    }
    ber::tlv(0x30, &body)
}

/// A simple bind as `dn` with `password`, asking for the `controls` (without values). Wiped when
/// dropped: it holds the password.
pub fn bind_request(id: i32, dn: &str, password: &[u8], controls: &[&str]) -> Zeroizing<Vec<u8>> {
    let mut bind = Zeroizing::new(ber::int(0x02, 3));
    bind.extend(ber::tlv(0x04, dn.as_bytes()));
    let simple = Zeroizing::new(ber::tlv(0x80, password));
    bind.extend_from_slice(&simple);
    let op = Zeroizing::new(ber::tlv(op::BIND_REQUEST, &bind));
    Zeroizing::new(message(id, op.to_vec(), controls))
}

/// An extended operation `oid` without a value (StartTLS, "Who am I?").
pub fn extended_request(id: i32, oid: &str) -> Vec<u8> {
    message(id, ber::tlv(op::EXTENDED_REQUEST, &ber::tlv(0x80, oid.as_bytes())), &[])
}

/// An unbind.
pub fn unbind_request(id: i32) -> Vec<u8> {
    message(id, ber::tlv(op::UNBIND_REQUEST, &[]), &[])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads one whole LDAPMessage.
pub fn response(bytes: &[u8]) -> Result<Response, BerError> {
    let (outer, _) = ber::read(bytes)?;
    if outer.tag != 0x30 {
        return Err(BerError::Tag { found: outer.tag, expected: 0x30 });
    }
    let mut m = Reader::new(outer.value);
    let id = ber::integer(m.expect(0x02)?)?;
    let operation = m.element()?;
    let mut r = Response {
        id,
        op: operation.tag,
        code: 0,
        matched_dn: String::new(),
        message: String::new(),
        referral: false,
        name: None,
        value: None,
        controls: Vec::new(),
        entry: None,
    };
    if operation.tag == op::SEARCH_ENTRY {
        let mut e = Reader::new(operation.value);
        let dn = text(e.expect(0x04)?);
        let mut attributes = Vec::new();
        let mut list = Reader::new(e.expect(0x30)?);
        while !list.is_empty() {
            let mut attribute = Reader::new(list.expect(0x30)?);
            let name = text(attribute.expect(0x04)?);
            let mut vals = Reader::new(attribute.expect(0x31)?);
            let mut values = Vec::new();
            while !vals.is_empty() {
                values.push(vals.expect(0x04)?.to_vec());
            }
            attributes.push((name, values));
        }
        r.entry = Some(Entry { dn, attributes });
    }
    if matches!(operation.tag, op::BIND_RESPONSE | op::SEARCH_DONE | op::EXTENDED_RESPONSE) {
        let mut result = Reader::new(operation.value);
        r.code = ber::integer(result.expect(0x0a)?)?;
        r.matched_dn = text(result.expect(0x04)?);
        r.message = text(result.expect(0x04)?);
        r.referral = result.optional(0xa3)?.is_some();
        if operation.tag == op::EXTENDED_RESPONSE {
            r.name = result.optional(0x8a)?.map(text);
            r.value = result.optional(0x8b)?.map(<[u8]>::to_vec);
        }
    }
    if let Some(list) = m.optional(0xa0)? {
        let mut controls = Reader::new(list);
        while !controls.is_empty() {
            let mut c = Reader::new(controls.expect(0x30)?);
            let oid = text(c.expect(0x04)?);
            let critical = c.optional(0x01)?.is_some_and(|v| v.iter().any(|b| *b != 0));
            let value = c.optional(0x04)?.map(<[u8]>::to_vec);
            r.controls.push(Control { oid, critical, value });
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::super::ber::hex;
    use super::*;
    use proptest::prelude::*;

    /// The bind request OpenLDAP's ldapwhoami sends with `-e ppolicy`, byte for byte
    /// (tests/slapd/README.md).
    #[test]
    fn a_bind_request_is_what_openldap_sends() {
        let got =
            bind_request(1, "uid=probe-user,ou=People,dc=authprobe,dc=test", b"slapd-User-Pw-Tz38", &[PPOLICY_OID]);
        let want = "306a0201016046020103042d7569643d70726f62652d757365722c6f753d50656f706c652c64633d6175746870726f62652c64633d746573748012736c6170642d557365722d50772d547a3338a01d301b0419312e332e362e312e342e312e34322e322e32372e382e352e31";
        assert_eq!(*got, hex(want));
        assert_eq!(unbind_request(3), [0x30, 0x05, 0x02, 0x01, 0x03, 0x42, 0x00]);
        let whoami = extended_request(2, WHOAMI_OID);
        let (outer, _) = ber::read(&whoami).unwrap();
        assert_eq!(outer.value[3], op::EXTENDED_REQUEST);
    }

    /// slapd's answers (tests/slapd/README.md): the result code and the ppolicy control.
    #[test]
    fn slapds_bind_responses_are_read() {
        let ok = response(&hex(
            "302f02010161070a010004000400a021301f0419312e332e362e312e342e312e34322e322e32372e382e352e3104023000",
        ))
        .unwrap();
        assert_eq!((ok.id, ok.op, ok.code, ok.message.as_str()), (1, op::BIND_RESPONSE, 0, ""));
        assert_eq!(ok.control(PPOLICY_OID), Some(&[0x30, 0x00][..]));
        let refused = response(&hex(
            "302f02010161070a013104000400a021301f0419312e332e362e312e342e312e34322e322e32372e382e352e3104023000",
        ))
        .unwrap();
        assert_eq!(refused.code, 49);
        let expiring = response(&hex("303602010161070a010004000400a02830260419312e332e362e312e342e312e34322e322e32372e382e352e3104093007a0058003069780")).unwrap();
        assert_eq!(expiring.control(PPOLICY_OID), Some(&hex("3007a0058003069780")[..]));
        // Cut anywhere, a message is refused, never misread.
        let whole = hex(
            "303202010161070a013104000400a02430220419312e332e362e312e342e312e34322e322e32372e382e352e3104053003810100",
        );
        for cut in 0..whole.len() {
            assert!(response(&whole[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn extended_responses_and_codes_rfc_4511_does_not_list() {
        // Who am I? answered with the identity; a code no RFC lists (AD's and others').
        let mut result = ber::int(0x0a, 0);
        result.extend(ber::tlv(0x04, b""));
        result.extend(ber::tlv(0x04, b""));
        result.extend(ber::tlv(0x8b, b"dn:uid=probe-user,dc=test"));
        let mut body = ber::int(0x02, 2);
        body.extend(ber::tlv(op::EXTENDED_RESPONSE, &result));
        let r = response(&ber::tlv(0x30, &body)).unwrap();
        assert_eq!(r.value.as_deref(), Some(&b"dn:uid=probe-user,dc=test"[..]));
        let mut odd = ber::int(0x0a, 4096);
        odd.extend(ber::tlv(0x04, b"dc=test"));
        odd.extend(ber::tlv(0x04, b"why"));
        let mut body = ber::int(0x02, 5);
        body.extend(ber::tlv(op::BIND_RESPONSE, &odd));
        let r = response(&ber::tlv(0x30, &body)).unwrap();
        assert_eq!((r.code, r.matched_dn.as_str(), r.message.as_str()), (4096, "dc=test", "why"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_messages_are_read_safely(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
            let _ = response(&bytes);
        }

        /// Any bind response a server may send — any code, texts, controls (the password
        /// policy's with any warning and error), every length in the short or the long form of
        /// any width, as BER allows and DER would not — reads back as sent; cut anywhere, it is
        /// refused.
        #[test]
        fn bind_responses_in_any_length_form_read_back_as_sent(
            id in 1i64..=i64::from(i32::MAX),
            code in any::<i64>(),
            message in ".{0,40}",
            matched in "[a-z=,]{0,30}",
            warning in prop::option::of((any::<bool>(), 0u64..=u64::from(u32::MAX))),
            error in prop::option::of(0i64..9),
            widths in prop::collection::vec(0usize..5, 16),
        ) {
            // An element with its length in the form `widths` picks: 0 short (where it fits), 1–4
            // long with that many bytes.
            let mut at = 0;
            let mut el = |tag: u8, value: &[u8]| -> Vec<u8> {
                let w = widths[at % widths.len()];
                at += 1;
                let len = value.len();
                let mut out = vec![tag];
                if w == 0 && len < 0x80 {
                    out.push(len as u8);
                } else {
                    let w = w.max((usize::BITS - len.leading_zeros()).div_ceil(8) as usize).max(1);
                    out.push(0x80 | w as u8);
                    out.extend_from_slice(&(len as u64).to_be_bytes()[8 - w..]);
                }
                out.extend_from_slice(value);
                out
            };
            let mut policy = Vec::new();
            if let Some((expiry, n)) = warning {
                let choice = el(if expiry { 0x80 } else { 0x81 }, &ber::int(0x02, n as i64)[2..]);
                policy.extend(el(0xa0, &choice));
            }
            if let Some(e) = error {
                policy.extend(el(0x81, &[e as u8]));
            }
            let policy = el(0x30, &policy);
            let mut control = el(0x04, PPOLICY_OID.as_bytes());
            control.extend(el(0x04, &policy));
            let control = el(0x30, &control);
            let controls = el(0xa0, &control);
            let mut result = el(0x0a, &ber::int(0x0a, code)[2..]);
            result.extend(el(0x04, matched.as_bytes()));
            result.extend(el(0x04, message.as_bytes()));
            let mut body = el(0x02, &ber::int(0x02, id)[2..]);
            body.extend(el(op::BIND_RESPONSE, &result));
            body.extend(controls);
            let whole = el(0x30, &body);
            let r = response(&whole).unwrap();
            prop_assert_eq!((r.id, r.op, r.code), (id, op::BIND_RESPONSE, code));
            prop_assert_eq!((r.matched_dn.as_str(), r.message.as_str()), (matched.as_str(), message.as_str()));
            let p = super::super::classify::policy(r.control(PPOLICY_OID).unwrap()).unwrap();
            prop_assert_eq!(p.expires_in, warning.filter(|w| w.0).map(|w| w.1));
            prop_assert_eq!(p.grace_left, warning.filter(|w| !w.0).map(|w| w.1));
            prop_assert_eq!(p.error.is_some(), error.is_some());
            for cut in [0, 1, whole.len() / 2, whole.len() - 1] {
                prop_assert!(response(&whole[..cut]).is_err());
            }
        }

        /// A real answer with bytes changed anywhere: read or refused, never a panic.
        #[test]
        fn mutated_answers_are_read_safely(at in 0usize..52, byte in any::<u8>()) {
            let mut m = hex("303202010161070a013104000400a02430220419312e332e362e312e342e312e34322e322e32372e382e352e3104053003810100");
            let at = at % m.len();
            m[at] = byte;
            let _ = response(&m);
        }
    }
}
