//! The C library's number parsing, as libxl uses it on xenstore values.
//!
//! libxl reads xenstore numbers with `atoi`, `strtol`, `strtoul(l)` and `sscanf`, and their
//! quirks decide what it accepts: leading white space, a sign, a `0x` prefix in base 16,
//! wrap-around of negative values in the unsigned functions, and where parsing stops. Exact
//! parity with libxl needs the same behaviour, so it is reproduced here (glibc semantics).

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// The result of a `strto*` call: the value and how many bytes were consumed (0 when no
/// digits were found, like `endptr == nptr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<T> {
    pub value: T,
    pub consumed: usize,
    /// `errno == ERANGE`.
    pub overflow: bool,
}

/// Digits, sign and prefix handling shared by the `strto*` family. Returns the magnitude
/// (saturated at `u64::MAX` with `overflow`), the sign and the bytes consumed.
fn strto_core(s: &[u8], base: u32) -> (u64, bool, usize, bool) {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        negative = s[i] == b'-';
        i += 1;
    }
    let mut base = base;
    let has_0x = |i: usize| {
        i + 1 < s.len()
            && s[i] == b'0'
            && (s[i + 1] | 0x20) == b'x'
            && s.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit())
    };
    if (base == 16 || base == 0) && has_0x(i) {
        i += 2;
        base = 16;
    } else if base == 0 {
        base = if i < s.len() && s[i] == b'0' { 8 } else { 10 };
    }
    let start = i;
    let mut value: u64 = 0;
    let mut overflow = false;
    while i < s.len() {
        let d = match (s[i] as char).to_digit(36) {
            Some(d) if d < base => d as u64,
            _ => break,
        };
        match value.checked_mul(base as u64).and_then(|v| v.checked_add(d)) {
            Some(v) => value = v,
            None => {
                overflow = true;
                value = u64::MAX;
            }
        }
        i += 1;
    }
    if i == start {
        return (0, false, 0, false);
    }
    (value, negative, i, overflow)
}

/// `strtoull`: negative values wrap, overflow saturates at `u64::MAX`.
pub fn strtoull(s: &[u8], base: u32) -> Parsed<u64> {
    let (mag, neg, consumed, overflow) = strto_core(s, base);
    let value = if overflow {
        u64::MAX
    } else if neg {
        mag.wrapping_neg()
    } else {
        mag
    };
    Parsed { value, consumed, overflow }
}

/// `strtol` (64-bit `long`): saturates at `i64::MIN`/`i64::MAX`.
pub fn strtol(s: &[u8], base: u32) -> Parsed<i64> {
    let (mag, neg, consumed, overflow) = strto_core(s, base);
    let (value, overflow) = if neg {
        if overflow || mag > (i64::MAX as u64) + 1 {
            (i64::MIN, true)
        } else {
            ((mag as i64).wrapping_neg(), false)
        }
    } else if overflow || mag > i64::MAX as u64 {
        (i64::MAX, true)
    } else {
        (mag as i64, false)
    };
    Parsed { value, consumed, overflow }
}

/// `atoi`: `(int) strtol(s, NULL, 10)`, truncated to 32 bits as glibc does.
pub fn atoi(s: &[u8]) -> i32 {
    strtol(s, 10).value as i32
}

/// Whether `strtoull(s, &end, 10)` leaves `*end == '\0'`, as libxl's memory reads require.
/// Note an empty string passes (value 0), as it does in C.
pub fn strtoull_whole(s: &[u8]) -> Option<u64> {
    let p = strtoull(s, 10);
    if p.consumed == s.len() {
        Some(p.value)
    } else {
        None
    }
}

/// Whether `strtol(s, &end, 10)` consumes everything (libxl's nic `mtu` check).
pub fn strtol_whole(s: &[u8]) -> Option<i64> {
    let p = strtol(s, 10);
    if p.consumed == s.len() {
        Some(p.value)
    } else {
        None
    }
}

/// One `%Nx` conversion of `sscanf`: skips white space, reads at most `width` characters of a
/// hex number (sign and `0x` prefix count towards the width). `None` when nothing matched.
pub fn scan_hex(s: &[u8], width: usize) -> Option<(u64, usize)> {
    let mut i = 0;
    while i < s.len() && is_c_space(s[i]) {
        i += 1;
    }
    let limited = &s[i..s.len().min(i + width)];
    let p = strtoull(limited, 16);
    if p.consumed == 0 {
        return None;
    }
    Some((p.value, i + p.consumed))
}

/// `sscanf(s, "%04x:%02x:%02x.%01x", &domain, &bus, &dev, &func)`: fields not reached keep 0.
pub fn scan_pci_bdf(s: &[u8]) -> [u32; 4] {
    let mut out = [0u32; 4];
    let widths = [4usize, 2, 2, 1];
    let seps = [b':', b':', b'.'];
    let mut pos = 0;
    for (k, w) in widths.iter().enumerate() {
        let Some((v, used)) = scan_hex(&s[pos..], *w) else { break };
        out[k] = v as u32;
        pos += used;
        if k < 3 {
            if s.get(pos) != Some(&seps[k]) {
                break;
            }
            pos += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoull_like_glibc() {
        assert_eq!(strtoull(b"123", 10).value, 123);
        assert_eq!(strtoull(b"  -1", 10).value, u64::MAX);
        assert_eq!(strtoull(b"x", 10).consumed, 0);
        assert_eq!(strtoull_whole(b""), Some(0));
        assert_eq!(strtoull_whole(b"12k"), None);
        assert_eq!(strtoull_whole(b" 12"), Some(12));
        assert!(strtoull(b"99999999999999999999", 10).overflow);
        assert_eq!(strtoull(b"0x1f", 16).value, 31);
        assert_eq!(strtoull(b"0x", 16), Parsed { value: 0, consumed: 1, overflow: false });
    }

    #[test]
    fn atoi_like_glibc() {
        assert_eq!(atoi(b"51712"), 51712);
        assert_eq!(atoi(b"abc"), 0);
        assert_eq!(atoi(b"-5x"), -5);
        assert_eq!(atoi(b"4294967297"), 1);
    }

    #[test]
    fn pci_bdf_scan() {
        assert_eq!(scan_pci_bdf(b"0000:03:00.1"), [0, 3, 0, 1]);
        assert_eq!(scan_pci_bdf(b"0001:0a:1f.7"), [1, 10, 31, 7]);
        assert_eq!(scan_pci_bdf(b"03:00.0"), [3, 0, 0, 0]);
        assert_eq!(scan_pci_bdf(b"junk"), [0, 0, 0, 0]);
    }
}
