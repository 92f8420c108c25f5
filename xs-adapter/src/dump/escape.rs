//! Value escaping: `sanitise_value` as `xenstore-ls` prints values, its strict inverse for
//! reading dumps, and `unsanitise_value` exactly as `xenstore-write` decodes its arguments.

/// `XENSTORE_PAYLOAD_MAX`: no xenstore value can be longer.
pub const VALUE_MAX: usize = 4096;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `value` escaped as `xenstore-ls` prints it (`sanitise_value` of Xen 4.17): bytes
/// from `' '` to `'~'` except `\` as they are (so `"` is not escaped), `\t` `\n` `\r` `\\`,
/// bytes below 8 as `\` and three octal digits, every other byte as `\x` and two lowercase hex
/// digits. `xenstore-write` decodes the result back to the same bytes.
pub fn escape_value_into(out: &mut Vec<u8>, value: &[u8]) {
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b' '..=b'~' => out.push(b),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=7 => out.extend_from_slice(&[b'\\', b'0', b'0', b'0' + b]),
            _ => out.extend_from_slice(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
    }
}

/// `value` escaped as `xenstore-ls` prints it; see [`escape_value_into`].
pub fn escape_value(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    escape_value_into(&mut out, value);
    // Every byte pushed is ASCII.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
/// How many bytes `b` takes once escaped.
pub(crate) fn escaped_len(b: u8) -> usize {
    match b {
        b'\\' | b'\t' | b'\n' | b'\r' => 2,
        b' '..=b'~' => 1,
        _ => 4,
    }
}

/// Why an escaped value could not be decoded; `offset` is the byte offset in the escaped text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    BadEscape { offset: usize, len: usize },
    RawByte { offset: usize, byte: u8 },
    TooLong { len: usize },
}

pub(crate) const DUMP_ESCAPES: &str = "xenstore-ls prints only \\\\ \\t \\n \\r \\ooo \\xhh";

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn octal_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'7' => Some(b - b'0'),
        _ => None,
    }
}

/// One complete escape at the start of `s` (which starts with `\`): the byte and its length.
/// Accepted: `\\ \t \n \r`, three octal digits up to `\377`, `\x` and two hex digits.
fn canonical_escape(s: &[u8]) -> Option<(u8, usize)> {
    match *s.get(1)? {
        b'\\' => Some((b'\\', 2)),
        b't' => Some((b'\t', 2)),
        b'n' => Some((b'\n', 2)),
        b'r' => Some((b'\r', 2)),
        b'x' => {
            let hi = hex_digit(*s.get(2)?)?;
            let lo = hex_digit(*s.get(3)?)?;
            Some(((hi << 4) | lo, 4))
        }
        b'0'..=b'3' => {
            let a = octal_digit(s[1])?;
            let b = octal_digit(*s.get(2)?)?;
            let c = octal_digit(*s.get(3)?)?;
            Some(((a << 6) | (b << 3) | c, 4))
        }
        _ => None,
    }
}

/// Whether `s` (starting with `\`) is the beginning of a canonical escape cut short, as
/// `xenstore-ls` leaves one when it cuts a value in the middle of an escape.
fn partial_escape(s: &[u8]) -> bool {
    match s.len() {
        1 => true,
        2 => matches!(s[1], b'x' | b'0'..=b'3'),
        3 => {
            (s[1] == b'x' && hex_digit(s[2]).is_some())
                || (octal_digit(s[1]).is_some() && octal_digit(s[2]).is_some() && s[1] <= b'3')
        }
        _ => false,
    }
}

/// Decodes a value as `xenstore-ls` printed it, into `out` (cleared first). With `cut`, the
/// text is the prefix of a truncated value and may end in the middle of an escape, which is
/// dropped.
pub(crate) fn decode_dump_value(s: &[u8], cut: bool, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    out.clear();
    // Each byte takes at most 4 characters, so a longer text cannot fit the limit.
    if s.len() > 4 * VALUE_MAX {
        return Err(DecodeError::TooLong { len: s.len() / 4 });
    }
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        // Copy the run of plain printable bytes in one go.
        let run = rest.iter().position(|&b| !(b' '..=b'~').contains(&b) || b == b'\\').unwrap_or(rest.len());
        out.extend_from_slice(&rest[..run]);
        i += run;
        if i == s.len() {
            break;
        }
        let b = s[i];
        if b != b'\\' {
            return Err(DecodeError::RawByte { offset: i, byte: b });
        }
        match canonical_escape(&s[i..]) {
            Some((byte, len)) => {
                out.push(byte);
                i += len;
            }
            None if cut && partial_escape(&s[i..]) => break,
            None => {
                let len = s[i..].iter().take(4).count();
                return Err(DecodeError::BadEscape { offset: i, len });
            }
        }
    }
    if out.len() > VALUE_MAX {
        return Err(DecodeError::TooLong { len: out.len() });
    }
    Ok(())
}

/// Whether the whole of `s` decodes as a complete value.
pub(crate) fn decodes_completely(s: &[u8]) -> bool {
    let mut scratch = Vec::new();
    decode_dump_value(s, false, &mut scratch).is_ok()
}

/// An escape that `xenstore-write` decodes but that is not in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OddEscape {
    pub offset: usize,
    pub len: usize,
}

fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// glibc's `sscanf(s, "%2x%n", ...)`: whitespace skipped (not counted in the width), an
/// optional sign, an optional `0x` prefix, then hex digits, at most 2 characters after the
/// whitespace in all. Returns the value and how many bytes were consumed, or `None` when no
/// number was read (then `%n` is never reached and nothing counts as consumed).
fn scan_hex2(s: &[u8]) -> Option<(u32, usize)> {
    let mut i = 0;
    while i < s.len() && c_isspace(s[i]) {
        i += 1;
    }
    let mut width = 2;
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
        width -= 1;
    }
    let mut value: u32 = 0;
    let mut digits = 0;
    if width > 0 && i < s.len() && s[i] == b'0' {
        i += 1;
        width -= 1;
        digits += 1;
        if width > 0 && i < s.len() && (s[i] == b'x' || s[i] == b'X') {
            i += 1;
            width -= 1;
        }
    }
    while width > 0 && i < s.len() {
        let Some(d) = hex_digit(s[i]) else { break };
        value = value * 16 + u32::from(d);
        i += 1;
        width -= 1;
        digits += 1;
    }
    if digits == 0 {
        return None;
    }
    Some((if negative { 0u32.wrapping_sub(value) } else { value }, i))
}

/// Decodes a `xenstore-write` argument exactly as `unsanitise_value` of Xen 4.17 does,
/// including its `sscanf` quirks (`\x 41` is `A`, `\x-1` is 0xff, `\9` is `9`, a trailing `\`
/// is a NUL byte). Returns the escapes that are not canonical (not what
/// [`escape_value`] or a careful human would write), so a strict reader can reject them.
pub(crate) fn decode_write_arg(s: &[u8], out: &mut Vec<u8>, odd: &mut Vec<OddEscape>) {
    out.clear();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let start = i - 1;
        if i == s.len() {
            // `c = *ip++` reads the terminator, `--ip` steps back, the NUL is stored and the
            // loop then stops on the terminator.
            out.push(0);
            odd.push(OddEscape { offset: start, len: 1 });
            break;
        }
        let e = s[i];
        i += 1;
        match e {
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'\\' => out.push(b'\\'),
            b'x' => match scan_hex2(&s[i..]) {
                Some((v, used)) => {
                    let canonical = used == 2 && s[i..i + 2].iter().all(|&b| hex_digit(b).is_some());
                    if !canonical {
                        odd.push(OddEscape { offset: start, len: 2 + used });
                    }
                    out.push(v as u8);
                    i += used;
                }
                None => {
                    odd.push(OddEscape { offset: start, len: 2 });
                    out.push(b'x');
                }
            },
            b'0'..=b'7' => {
                i -= 1;
                let mut v: u32 = 0;
                let mut n = 0;
                while n < 3 && i < s.len() {
                    let Some(d) = octal_digit(s[i]) else { break };
                    v = v * 8 + u32::from(d);
                    i += 1;
                    n += 1;
                }
                if n != 3 || v > 0o377 {
                    odd.push(OddEscape { offset: start, len: 1 + n });
                }
                out.push(v as u8);
            }
            other => {
                odd.push(OddEscape { offset: start, len: 2 });
                out.push(other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let text = escape_value(&all);
        assert!(text.starts_with("\\000\\001\\002\\003\\004\\005\\006\\007\\x08\\t\\n\\x0b\\x0c\\r\\x0e"));
        assert!(text.contains(" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\\\]^_`abc"));
        assert!(text.ends_with("\\xfd\\xfe\\xff"));
        let mut back = Vec::new();
        decode_dump_value(text.as_bytes(), false, &mut back).unwrap();
        assert_eq!(back, all);
        let mut odd = Vec::new();
        decode_write_arg(text.as_bytes(), &mut back, &mut odd);
        assert_eq!(back, all);
        assert!(odd.is_empty());
        for b in 0..=255u8 {
            assert_eq!(escape_value(&[b]).len(), escaped_len(b));
        }
    }

    #[test]
    fn cut_values_drop_a_partial_escape() {
        let mut out = Vec::new();
        for (text, want) in
            [("ab\\", "ab"), ("ab\\x", "ab"), ("ab\\x1", "ab"), ("ab\\0", "ab"), ("ab\\00", "ab"), ("ab\\t", "ab\t")]
        {
            decode_dump_value(text.as_bytes(), true, &mut out).unwrap();
            assert_eq!(out, want.as_bytes(), "{text}");
        }
        assert!(decode_dump_value(b"ab\\", false, &mut out).is_err());
        assert_eq!(decode_dump_value(b"a\\9", true, &mut out), Err(DecodeError::BadEscape { offset: 1, len: 2 }));
        assert_eq!(decode_dump_value(b"a\\x4", false, &mut out), Err(DecodeError::BadEscape { offset: 1, len: 3 }));
        assert_eq!(decode_dump_value(b"a\tb", false, &mut out), Err(DecodeError::RawByte { offset: 1, byte: b'\t' }));
    }

    #[test]
    fn write_arg_quirks() {
        let cases: &[(&str, &[u8], usize)] = &[
            ("\\x 41", b"A", 1),
            ("\\x-1", b"\xff", 1),
            ("\\x+f", b"\x0f", 1),
            ("\\x0x41", b"\x0041", 1),
            ("\\xg", b"xg", 1),
            ("\\x", b"x", 1),
            ("a\\", b"a\0", 1),
            ("\\8", b"8", 1),
            ("\\777", b"\xff", 1),
            ("\\400", b"\0", 1),
            ("\\0", b"\0", 1),
            ("\\12a", b"\na", 1),
            ("\\x4g", b"\x04g", 1),
            ("\\\"", b"\"", 1),
            ("\\xAB", b"\xab", 0),
            ("\\x0X1", b"\x001", 1),
            ("\\x-", b"x-", 1),
            ("\\101\\t\\\\", b"A\t\\", 0),
        ];
        for (text, want, odd_count) in cases {
            let mut out = Vec::new();
            let mut odd = Vec::new();
            decode_write_arg(text.as_bytes(), &mut out, &mut odd);
            assert_eq!(&out[..], *want, "{text}");
            assert_eq!(odd.len(), *odd_count, "{text}");
        }
    }
}
