//! Search filters as people write them (RFC 4515: `(&(objectClass=user)(sAMAccountName=probe))`)
//! read into the BER a search request carries (RFC 4511 §4.5.1.7), and values escaped for a
//! filter, so that a username never changes a filter's meaning.

use super::ber;

/// Why a filter cannot be read: what is wrong and where (a character offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at character {at}")]
pub struct FilterError {
    /// What is wrong.
    pub what: &'static str,
    /// Where, counted in characters from the start.
    pub at: usize,
}

/// Deepest nesting of `&`, `|` and `!` read: far beyond any real filter, well within the stack.
const MAX_DEPTH: usize = 32;
/// Longest filter read.
pub const MAX_LEN: usize = 4096;

/// A filter as its BER element. Surrounding space is ignored; a filter without parentheses
/// (`uid=probe`) is read as if it had them, as OpenLDAP's tools do.
pub fn encode(text: &str) -> Result<Vec<u8>, FilterError> {
    let text = text.trim();
    if text.len() > MAX_LEN {
        return Err(FilterError { what: "a filter longer than 4096 bytes", at: 0 });
    }
    let wrapped;
    let text = if text.starts_with('(') {
        text
    } else {
        wrapped = format!("({text})");
        &wrapped
    };
    let chars: Vec<char> = text.chars().collect();
    let mut p = Parser { chars: &chars, at: 0 };
    let out = p.filter(0)?;
    if p.at != chars.len() {
        return Err(p.error("text after the filter's closing parenthesis"));
    }
    Ok(out)
}

/// `value` escaped for a filter's assertion value (RFC 4515 §3): `*`, `(`, `)`, `\` and NUL as
/// `\2a`, `\28`, `\29`, `\5c` and `\00`.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

struct Parser<'a> {
    chars: &'a [char],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &'static str) -> FilterError {
        FilterError { what, at: self.at }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn expect(&mut self, c: char, what: &'static str) -> Result<(), FilterError> {
        if self.peek() != Some(c) {
            return Err(self.error(what));
        }
        self.at += 1;
        Ok(())
    }

    /// `( filtercomp )`
    fn filter(&mut self, depth: usize) -> Result<Vec<u8>, FilterError> {
        if depth > MAX_DEPTH {
            return Err(self.error("filters nested more than 32 deep"));
        }
        self.expect('(', "'(' expected")?;
        let out = match self.peek() {
            Some('&') => self.set(0xa0, depth)?,
            Some('|') => self.set(0xa1, depth)?,
            Some('!') => {
                self.at += 1;
                let inner = self.filter(depth + 1)?;
                ber::tlv(0xa2, &inner)
            }
            Some(_) => self.item()?,
            None => return Err(self.error("the filter ends after '('")),
        };
        self.expect(')', "')' expected")?;
        Ok(out)
    }

    /// `&` or `|` and one or more filters.
    fn set(&mut self, tag: u8, depth: usize) -> Result<Vec<u8>, FilterError> {
        self.at += 1;
        let mut inner = Vec::new();
        while self.peek() == Some('(') {
            inner.extend(self.filter(depth + 1)?);
        }
        if inner.is_empty() {
            return Err(self.error("'&' or '|' needs at least one filter"));
        }
        Ok(ber::tlv(tag, &inner))
    }

    /// An attribute description: letters, digits, `-`, `;` options and dotted OIDs.
    fn attribute(&mut self) -> String {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ';' | '.' | '_')) {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    /// A simple, present, substring or extensible item, up to its `)`.
    fn item(&mut self) -> Result<Vec<u8>, FilterError> {
        let attr = self.attribute();
        if self.peek() == Some(':') {
            return self.extensible(attr);
        }
        if attr.is_empty() {
            return Err(self.error("an attribute name expected"));
        }
        let tag = match self.peek() {
            Some('=') => {
                self.at += 1;
                0xa3
            }
            Some(c @ ('~' | '>' | '<')) => {
                self.at += 1;
                self.expect('=', "'=' expected after '~', '>' or '<'")?;
                match c {
                    '~' => 0xa8,
                    '>' => 0xa5,
                    _ => 0xa6,
                }
            }
            _ => return Err(self.error("'=', '~=', '>=' or '<=' expected after the attribute")),
        };
        let parts = self.value_parts()?;
        if tag != 0xa3 && parts.len() > 1 {
            return Err(self.error("'*' is only for '=' filters"));
        }
        if tag == 0xa3 && parts.len() == 2 && parts.iter().all(Vec::is_empty) {
            // `(attr=*)`: present.
            return Ok(ber::tlv(0x87, attr.as_bytes()));
        }
        if parts.len() == 1 {
            let mut body = ber::tlv(0x04, attr.as_bytes());
            body.extend(ber::tlv(0x04, &parts[0]));
            return Ok(ber::tlv(tag, &body));
        }
        // Substrings: initial, any…, final; empty ones left out.
        let last = parts.len() - 1;
        let mut subs = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                if i != 0 && i != last {
                    return Err(self.error("'**' in a substring filter"));
                }
                continue;
            }
            let t = match i {
                0 => 0x80,
                i if i == last => 0x82,
                _ => 0x81,
            };
            subs.extend(ber::tlv(t, part));
        }
        let mut body = ber::tlv(0x04, attr.as_bytes());
        body.extend(ber::tlv(0x30, &subs));
        Ok(ber::tlv(0xa4, &body))
    }

    /// `attr[:dn][:rule]:=value` or `[:dn]:rule:=value` (extensible match).
    fn extensible(&mut self, attr: String) -> Result<Vec<u8>, FilterError> {
        let mut dn = false;
        let mut rule: Option<Vec<u8>> = None;
        while self.peek() == Some(':') {
            self.at += 1;
            if self.peek() == Some('=') {
                self.at += 1;
                let value = self.value()?;
                if attr.is_empty() && rule.is_none() {
                    return Err(self.error("an extensible filter needs an attribute or a matching rule"));
                }
                let mut body = Vec::new();
                if let Some(r) = &rule {
                    body.extend(ber::tlv(0x81, r));
                }
                if !attr.is_empty() {
                    body.extend(ber::tlv(0x82, attr.as_bytes()));
                }
                body.extend(ber::tlv(0x83, &value));
                if dn {
                    body.extend(ber::tlv(0x84, &[0xff]));
                }
                return Ok(ber::tlv(0xa9, &body));
            }
            let word = self.attribute();
            if word.eq_ignore_ascii_case("dn") && !dn && rule.is_none() {
                dn = true;
            } else if !word.is_empty() && rule.is_none() {
                rule = Some(word.into_bytes());
            } else {
                return Err(self.error("':dn', a matching rule or ':=' expected"));
            }
        }
        Err(self.error("':=' expected in an extensible filter"))
    }

    /// An assertion value without `*`, up to the `)`.
    fn value(&mut self) -> Result<Vec<u8>, FilterError> {
        let parts = self.value_parts()?;
        if parts.len() > 1 {
            return Err(self.error("'*' is only for '=' filters"));
        }
        Ok(parts.into_iter().next().unwrap_or_default())
    }

    /// An assertion value up to the `)`, cut at each unescaped `*`, escapes decoded.
    fn value_parts(&mut self) -> Result<Vec<Vec<u8>>, FilterError> {
        let mut parts = vec![Vec::new()];
        loop {
            match self.peek() {
                None => return Err(self.error("the filter ends inside a value")),
                Some(')') => return Ok(parts),
                Some('(') => return Err(self.error("'(' in a value must be written \\28")),
                Some('*') => {
                    self.at += 1;
                    parts.push(Vec::new());
                }
                Some('\\') => {
                    let hex: String = self.chars.get(self.at + 1..self.at + 3).unwrap_or_default().iter().collect();
                    let byte = u8::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == 2 && hex.chars().all(|c| c.is_ascii_hexdigit()))
                        .ok_or_else(|| self.error("'\\' must be followed by two hex digits"))?;
                    parts.last_mut().expect("one part at least").push(byte);
                    self.at += 3;
                }
                Some(c) => {
                    let mut buf = [0; 4];
                    parts.last_mut().expect("one part at least").extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    self.at += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ber::hex;
    use super::*;
    use proptest::prelude::*;

    /// Filters encoded as RFC 4511 §4.5.1.7 lays them out.
    #[test]
    fn filters_encode_as_rfc_4511_lays_them_out() {
        // (uid=probe-user)
        assert_eq!(encode("(uid=probe-user)").unwrap(), hex("a3110403756964040a70726f62652d75736572"));
        assert_eq!(encode("uid=probe-user").unwrap(), encode("(uid=probe-user)").unwrap());
        // (objectClass=*)
        assert_eq!(encode("(objectClass=*)").unwrap(), hex("870b6f626a656374436c617373"));
        // (&(objectClass=person)(!(cn=a*b*c)))
        let got = encode("(&(objectClass=person)(!(cn=a*b*c)))").unwrap();
        let (outer, rest) = ber::read(&got).unwrap();
        assert!(rest.is_empty() && outer.tag == 0xa0);
        let (first, rest) = ber::read(outer.value).unwrap();
        assert_eq!(first.tag, 0xa3);
        let (not, _) = ber::read(rest).unwrap();
        assert_eq!(not.tag, 0xa2);
        assert_eq!(not.value, hex("a40f0402636e3009800161810162820163"));
        // AD's bit-and matching rule.
        assert_eq!(
            encode("(userAccountControl:1.2.840.113556.1.4.803:=2)").unwrap(),
            hex("a92f8116312e322e3834302e3131333535362e312e342e3830338212757365724163636f756e74436f6e74726f6c830132")
        );
        assert_eq!(encode("(cn:dn:=x)").unwrap(), hex("a90a8202636e8301788401ff"));
        // Escapes decoded; >=, <=, ~=.
        assert_eq!(encode("(cn=a\\2ab)").unwrap(), hex("a3090402636e0403612a62"));
        assert_eq!(encode("(n>=5)").unwrap(), hex("a50604016e040135"));
        assert_eq!(encode("(n<=5)").unwrap(), hex("a60604016e040135"));
        assert_eq!(encode("(n~=5)").unwrap(), hex("a80604016e040135"));
    }

    #[test]
    fn bad_filters_say_what_and_where() {
        for (text, at) in [("(uid=a", 6), ("(&)", 2), ("(uid=a)x", 7), ("(=a)", 1), ("(cn=a\\zz)", 5), ("(cn=a(b)", 5)]
        {
            let e = encode(text).unwrap_err();
            assert_eq!(e.at, at, "{text}: {e}");
        }
        let deep = "(!".repeat(40) + "(a=b)" + &")".repeat(40);
        assert!(encode(&deep).is_err());
        assert!(encode(&"a".repeat(5000)).is_err());
    }

    #[test]
    fn escaped_values_are_matched_literally() {
        let user = "x)(uid=*))(|(uid=*";
        let filter = format!("(uid={})", escape(user));
        let encoded = encode(&filter).unwrap();
        let mut want = ber::tlv(0x04, b"uid");
        want.extend(ber::tlv(0x04, user.as_bytes()));
        assert_eq!(encoded, ber::tlv(0xa3, &want));
        assert_eq!(escape("a\\b*\0"), "a\\5cb\\2a\\00");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_filters_are_read_safely(text in "[()&|!=*~<>:a-z0-9\\\\ ]{0,60}") {
            let _ = encode(&text);
        }

        #[test]
        fn any_escaped_value_is_one_equality(value in ".{0,40}") {
            let encoded = encode(&format!("(uid={})", escape(&value))).unwrap();
            prop_assert_eq!(encoded[0], 0xa3);
        }
    }
}
