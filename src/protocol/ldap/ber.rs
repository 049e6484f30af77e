//! BER as LDAP writes it (RFC 4511 §5.1): one-byte tags, definite lengths in the short or the
//! long form (a server may send `84 00 00 00 2f` where DER would write `2f`), nothing indefinite.
//!
//! Hand-written rather than taken from a crate: the messages a bind probe exchanges are few, and
//! the crates at hand either own their sockets (ldap3, whose connections cannot be timed and
//! traced by the run) or refuse result codes outside RFC 4511's list when decoding (rasn-ldap's
//! closed `ResultCode`), where a prober must report whatever code a directory sends.

/// Why bytes are not the BER expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BerError {
    /// The bytes end inside an element.
    #[error("the message is cut short")]
    Truncated,
    /// An indefinite length, which LDAP forbids.
    #[error("an indefinite length, which LDAP does not use")]
    Indefinite,
    /// A length of more than four bytes, or past [`MAX_MESSAGE_BYTES`].
    #[error("a length beyond what a message may take")]
    TooLong,
    /// A tag of more than one byte, which LDAP does not use.
    #[error("a multi-byte tag, which LDAP does not use")]
    LongTag,
    /// Another element than the one the message must have there.
    #[error("tag {found:#04x} where {expected:#04x} belongs")]
    Tag {
        /// What was found.
        found: u8,
        /// What the message must have.
        expected: u8,
    },
    /// An INTEGER or ENUMERATED that is empty or longer than eight bytes.
    #[error("an integer that cannot be read")]
    Integer,
}

/// Largest message read: an answer to a bind, an extended operation or a bounded search.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// One element: its tag and its value's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The tag byte.
    pub tag: u8,
    /// The value.
    pub value: &'a [u8],
}

/// The tag and the length of the element at the start of `input`: where its value starts and
/// how long it is. `Truncated` when `input` ends before the length does.
fn head(input: &[u8]) -> Result<(u8, usize, usize), BerError> {
    let (&tag, rest) = input.split_first().ok_or(BerError::Truncated)?;
    if tag & 0x1f == 0x1f {
        return Err(BerError::LongTag);
    }
    let (&first, rest) = rest.split_first().ok_or(BerError::Truncated)?;
    if first < 0x80 {
        return Ok((tag, 2, usize::from(first)));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 {
        return Err(BerError::Indefinite);
    }
    if count > 4 {
        return Err(BerError::TooLong);
    }
    let bytes = rest.get(..count).ok_or(BerError::Truncated)?;
    let len = bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
    if len > MAX_MESSAGE_BYTES {
        return Err(BerError::TooLong);
    }
    Ok((tag, 2 + count, len))
}

/// The size of the element `buf` starts with, once `buf` holds all of it (`None` until then):
/// how a stream is cut into messages.
pub fn frame(buf: &[u8]) -> Result<Option<usize>, BerError> {
    match head(buf) {
        Err(BerError::Truncated) => Ok(None),
        Err(e) => Err(e),
        Ok((_, at, len)) => Ok((buf.len() >= at + len).then_some(at + len)),
    }
}

/// The element `input` starts with, and what follows it.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), BerError> {
    let (tag, at, len) = head(input)?;
    let value = input.get(at..at + len).ok_or(BerError::Truncated)?;
    Ok((Tlv { tag, value }, &input[at + len..]))
}

/// An INTEGER's or ENUMERATED's value (two's complement, at most eight bytes).
pub fn integer(value: &[u8]) -> Result<i64, BerError> {
    if value.is_empty() || value.len() > 8 {
        return Err(BerError::Integer);
    }
    let negative = value[0] & 0x80 != 0;
    let start = if negative { -1i64 } else { 0 };
    Ok(value.iter().fold(start, |n, b| (n << 8) | i64::from(*b)))
}

/// The elements of a constructed value, in order.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader of `value`'s elements.
    pub fn new(value: &'a [u8]) -> Self {
        Reader(value)
    }

    /// Whether every element was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next element, whatever its tag.
    pub fn element(&mut self) -> Result<Tlv<'a>, BerError> {
        let (tlv, rest) = read(self.0)?;
        self.0 = rest;
        Ok(tlv)
    }

    /// The next element's value, which must have `tag`.
    pub fn expect(&mut self, tag: u8) -> Result<&'a [u8], BerError> {
        let (tlv, rest) = read(self.0)?;
        if tlv.tag != tag {
            return Err(BerError::Tag { found: tlv.tag, expected: tag });
        }
        self.0 = rest;
        Ok(tlv.value)
    }

    /// The next element's value if it has `tag`; nothing is read otherwise.
    pub fn optional(&mut self, tag: u8) -> Result<Option<&'a [u8]>, BerError> {
        match self.0.first() {
            Some(t) if *t == tag => self.expect(tag).map(Some),
            _ => Ok(None),
        }
    }
}

/// An element of `tag` holding `value`.
pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    out.push(tag);
    if value.len() < 0x80 {
        out.push(value.len() as u8);
    } else {
        let bytes = (value.len() as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

/// An INTEGER (or, with its tag, ENUMERATED) of `n`, in the fewest bytes.
pub fn int(tag: u8, n: i64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    tlv(tag, &bytes[start..])
}

/// Bytes written in hex (the captures of tests/slapd/README.md), for tests.
#[cfg(test)]
pub(crate) fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lengths_short_and_long_and_integers() {
        assert_eq!(tlv(0x04, b"ab"), [0x04, 2, b'a', b'b']);
        let long = tlv(0x04, &[7; 300]);
        assert_eq!(&long[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(read(&long).unwrap().0.value.len(), 300);
        // A long form DER would not write, as some servers send.
        let (t, rest) = read(&[0x30, 0x84, 0, 0, 0, 2, 0x05, 0x00, 0xff]).unwrap();
        assert_eq!((t.tag, t.value, rest), (0x30, &[5u8, 0][..], &[0xffu8][..]));
        for n in [0i64, 1, 127, 128, 255, 256, -1, -128, -129, 432_000, i64::MAX, i64::MIN] {
            let e = int(0x02, n);
            assert_eq!(integer(read(&e).unwrap().0.value), Ok(n), "{n}: {e:02x?}");
        }
        assert_eq!(int(0x02, 128), [0x02, 2, 0x00, 0x80]);
        assert_eq!(read(&[0x30, 0x80, 0, 0]), Err(BerError::Indefinite));
        assert_eq!(read(&[0x1f, 0x81, 1]), Err(BerError::LongTag));
        assert_eq!(read(&[0x30, 0x85, 1, 1, 1, 1, 1]), Err(BerError::TooLong));
        assert_eq!(read(&[0x30, 0x84, 0x7f, 0, 0, 0]), Err(BerError::TooLong));
        assert_eq!(frame(&[0x30, 0x82, 0x01]), Ok(None));
        assert_eq!(frame(&[0x30, 0x03, 1, 2]), Ok(None));
        assert_eq!(frame(&[0x30, 0x03, 1, 2, 3, 4]), Ok(Some(5)));
        assert_eq!(integer(&[]), Err(BerError::Integer));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any bytes: read, framed and walked without a panic, and never past their end.
        #[test]
        fn arbitrary_bytes_are_read_safely(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Some(n)) = frame(&bytes) {
                prop_assert!(n <= bytes.len());
                let (_, rest) = read(&bytes).unwrap();
                prop_assert_eq!(n + rest.len(), bytes.len());
            }
            let mut r = Reader::new(&bytes);
            for _ in 0..64 {
                if r.element().is_err() {
                    break;
                }
            }
        }
    }
}
