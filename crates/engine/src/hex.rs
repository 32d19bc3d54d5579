//! Lowercase hex of key bytes: how keys appear where only text may go (manifests, journals,
//! checkpoints). Keys are bytes, so a JSON string cannot hold them as they are.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends the lowercase hex of `b` to `out`.
#[inline]
pub fn push(out: &mut Vec<u8>, b: &[u8]) {
    out.reserve(b.len() * 2);
    for &x in b {
        out.push(DIGITS[(x >> 4) as usize]);
        out.push(DIGITS[(x & 15) as usize]);
    }
}

/// The lowercase hex of `b`.
pub fn encode(b: &[u8]) -> String {
    let mut v = Vec::with_capacity(b.len() * 2);
    push(&mut v, b);
    // SAFETY: hex digits are ASCII.
    unsafe { String::from_utf8_unchecked(v) }
}

/// Decodes hex (either case). The error names the offending input.
pub fn decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return Err(format!("odd-length hex {s:?}"));
    }
    let d = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!("bad hex digit {:?} in {s:?}", c as char)),
    };
    b.chunks(2).map(|p| Ok((d(p[0])? << 4) | d(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        for b in [&b""[..], b"\x00\xffab", b"t01\n"] {
            assert_eq!(decode(&encode(b)).unwrap(), b);
        }
        assert_eq!(encode(b"\x00\xab"), "00ab");
        assert_eq!(decode("00AB").unwrap(), b"\x00\xab");
        assert!(decode("abc").unwrap_err().contains("odd-length"));
        assert!(decode("zz").unwrap_err().contains("bad hex digit"));
    }
}
