//! libxl's builtin value types in their JSON spellings: [`Uuid`], [`Mac`], [`Defbool`] and
//! bitmaps.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// `libxl_uuid`. Parsed like libuuid's `uuid_parse` (36 characters, dashes at 8, 13, 18 and 23,
/// hex digits of either case); printed lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    pub const NIL: Uuid = Uuid([0; 16]);

    pub fn is_nil(&self) -> bool {
        *self == Uuid::NIL
    }
}

impl FromStr for Uuid {
    type Err = String;

    fn from_str(s: &str) -> Result<Uuid, String> {
        let b = s.as_bytes();
        let bad = || format!("{s:?} is not a UUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
        if b.len() != 36 {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        let mut nibbles = Vec::with_capacity(32);
        for (i, &c) in b.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return Err(bad());
                }
            } else {
                nibbles.push((c as char).to_digit(16).ok_or_else(bad)? as u8);
            }
        }
        for (i, pair) in nibbles.chunks(2).enumerate() {
            out[i] = pair[0] << 4 | pair[1];
        }
        Ok(Uuid(out))
    }
}

/// Lowercase hex digits of `bytes`, with `separator` before each byte at the positions
/// `before` names: one buffer, one write (every configuration prints a uuid, every nic a MAC).
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8], separator: u8, before: impl Fn(usize) -> bool) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 48];
    let mut len = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if before(i) {
            out[len] = separator;
            len += 1;
        }
        out[len] = DIGITS[usize::from(byte >> 4)];
        out[len + 1] = DIGITS[usize::from(byte & 0xf)];
        len += 2;
    }
    f.write_str(std::str::from_utf8(&out[..len]).expect("hex digits are ASCII"))
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0, b'-', |i| matches!(i, 4 | 6 | 8 | 10))
    }
}

/// `libxl_mac`. [`FromStr`] accepts the canonical `xx:xx:xx:xx:xx:xx` (hex of either case);
/// [`Mac::parse_like_libxl`] accepts exactly what libxl's own parser does. Printed lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// libxl's `libxl__parse_mac`: six tokens, each exactly two characters consumed by
    /// `strtol(tok, &end, 16)` (so `+a`, `-1` and ` a` pass), each followed by `:` or the end;
    /// anything after the sixth token is ignored. `None` where libxl returns `ERROR_INVAL`.
    pub fn parse_like_libxl(s: &str) -> Option<Mac> {
        let b = s.as_bytes();
        let mut mac = [0u8; 6];
        let mut pos = 0;
        let mut i = 0;
        while pos < b.len() && i < 6 {
            let (value, consumed) = strtol_hex(&b[pos..]);
            if consumed != 2 {
                return None;
            }
            let end = pos + 2;
            match b.get(end) {
                None => pos = end,
                Some(b':') => pos = end + 1,
                Some(_) => return None,
            }
            mac[i] = value as u8;
            i += 1;
        }
        (i == 6).then_some(Mac(mac))
    }
}

/// C `strtol(s, &end, 16)` on ASCII: the value and how many bytes it consumed (0 if no digits).
fn strtol_hex(s: &[u8]) -> (i64, usize) {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    // A "0x" prefix counts only when a hex digit follows it; otherwise just the "0" is read.
    if s.get(i) == Some(&b'0')
        && matches!(s.get(i + 1), Some(b'x' | b'X'))
        && s.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit())
    {
        i += 2;
    }
    let start = i;
    let mut value: i64 = 0;
    while i < s.len() && s[i].is_ascii_hexdigit() {
        value = value.saturating_mul(16).saturating_add((s[i] as char).to_digit(16).unwrap_or(0) as i64);
        i += 1;
    }
    if i == start {
        return (0, 0);
    }
    (if negative { value.wrapping_neg() } else { value }, i)
}

impl FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Mac, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad = || format!("{s:?} is not a MAC address (expected xx:xx:xx:xx:xx:xx)");
        if parts.len() != 6 || parts.iter().any(|p| p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit())) {
            return Err(bad());
        }
        let mut mac = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            mac[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(Mac(mac))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0, b':', |i| i > 0)
    }
}

/// `libxl_defbool`: unset, true or false. libxl reads it by prefix (`"Truely"` is true).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Defbool {
    #[default]
    Default,
    True,
    False,
}

impl Defbool {
    /// libxl's `libxl__defbool_parse_json`: a prefix match on `<default>`, `True`, `False`.
    pub fn parse_like_libxl(s: &str) -> Option<Defbool> {
        if s.starts_with("<default>") {
            Some(Defbool::Default)
        } else if s.starts_with("True") {
            Some(Defbool::True)
        } else if s.starts_with("False") {
            Some(Defbool::False)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Defbool::Default => "<default>",
            Defbool::True => "True",
            Defbool::False => "False",
        }
    }

    pub fn value(self) -> Option<bool> {
        match self {
            Defbool::Default => None,
            Defbool::True => Some(true),
            Defbool::False => Some(false),
        }
    }
}

impl From<bool> for Defbool {
    fn from(b: bool) -> Defbool {
        if b {
            Defbool::True
        } else {
            Defbool::False
        }
    }
}

/// The set bits of a JSON bitmap (an array of indices), ascending and without repeats; `None`
/// unless every element is a non-negative integer that fits `u32`.
pub fn bitmap_from_json(value: &Value) -> Option<Vec<u32>> {
    let mut bits: Vec<u32> =
        value.as_array()?.iter().map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok())).collect::<Option<_>>()?;
    bits.sort_unstable();
    bits.dedup();
    Some(bits)
}

/// A bitmap as libxl prints it: the ascending indices of the set bits.
pub fn bitmap_to_json(bits: &[u32]) -> Value {
    let mut sorted = bits.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    Value::Array(sorted.into_iter().map(Value::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_round_trip_and_case() {
        let u: Uuid = "3A9F1C2E-5B7D-4E8F-9A01-23456789ABCD".parse().unwrap();
        assert_eq!(u.to_string(), "3a9f1c2e-5b7d-4e8f-9a01-23456789abcd");
        assert!("3a9f1c2e5b7d4e8f9a0123456789abcd".parse::<Uuid>().is_err());
        assert!("3a9f1c2e-5b7d-4e8f-9a01-23456789abcdx".parse::<Uuid>().is_err());
        assert!("3a9f1c2e-5b7d-4e8f-9a01-23456789abcg".parse::<Uuid>().is_err());
        assert!("00000000-0000-0000-0000-000000000000".parse::<Uuid>().unwrap().is_nil());
    }

    #[test]
    fn mac_parsing_follows_libxl() {
        let ok = |s: &str| Mac::parse_like_libxl(s).map(|m| m.to_string());
        assert_eq!(ok("00:16:3E:11:22:33").as_deref(), Some("00:16:3e:11:22:33"));
        assert_eq!(ok("+a:bb:cc:dd:ee:ff").as_deref(), Some("0a:bb:cc:dd:ee:ff"));
        assert_eq!(ok(" a:bb:cc:dd:ee:ff").as_deref(), Some("0a:bb:cc:dd:ee:ff"));
        assert_eq!(ok("-1:00:00:00:00:00").as_deref(), Some("ff:00:00:00:00:00"));
        assert_eq!(ok("aa:bb:cc:dd:ee:ff:").as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(ok("aa:bb:cc:dd:ee:ff:zz").as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        for bad in [
            "aa:bb:cc",
            "",
            "aa:bb:cc:",
            "AA-BB-CC-DD-EE-FF",
            "aa:bb:cc:dd:ee:f",
            "0x:bb:cc:dd:ee:ff",
            "aab:cc:dd:ee:ff:00",
        ] {
            assert_eq!(ok(bad), None, "{bad:?}");
        }
        assert!("aa:bb:cc:dd:ee:ff".parse::<Mac>().is_ok());
        assert!("+a:bb:cc:dd:ee:ff".parse::<Mac>().is_err());
    }

    #[test]
    fn defbool_prefixes() {
        assert_eq!(Defbool::parse_like_libxl("Trueish"), Some(Defbool::True));
        assert_eq!(Defbool::parse_like_libxl("False"), Some(Defbool::False));
        assert_eq!(Defbool::parse_like_libxl("<default>"), Some(Defbool::Default));
        assert_eq!(Defbool::parse_like_libxl("true"), None);
    }

    #[test]
    fn bitmaps_are_canonical() {
        assert_eq!(bitmap_from_json(&serde_json::json!([3, 1, 3])), Some(vec![1, 3]));
        assert_eq!(bitmap_from_json(&serde_json::json!([1, -1])), None);
        assert_eq!(bitmap_to_json(&[5, 0, 5]), serde_json::json!([0, 5]));
    }
}
