//! Permission lists as `xenstore-ls -p` prints them, read with interning.
//!
//! `xs_perm_to_string` prints a domid with `%i` although it is unsigned, so a domid of 2^31 or
//! more appears negative (`r-1` is domid 4294967295). Both directions follow that. It also
//! prints into a 12-byte buffer, which cuts the entry of a domid from 2^31 to 2^32 - 10^9
//! (`r-1629631290` shows as `r-162963129`): such a dump has lost the domid, and reading it gives
//! the domid that was printed.

use merge_core::xenstore::{Access, Perm, Perms};
use std::collections::HashMap;

/// The longest permission entry `xenstore-ls` prints.
const ENTRY_MAX: usize = 11;

/// Parses `n0,r3` (the text between the parentheses). `None` if it is not a permission list.
pub(crate) fn parse_perms(s: &[u8]) -> Option<Perms> {
    let mut entries = Vec::with_capacity(s.iter().filter(|&&b| b == b',').count() + 1);
    for part in s.split(|&b| b == b',') {
        let (&letter, number) = part.split_first()?;
        let access = Access::from_letter(char::from(letter))?;
        let (negative, digits) = match number.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, number),
        };
        if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let magnitude = digits.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        let domid = if negative {
            if magnitude > 1 << 31 {
                return None;
            }
            (magnitude as u32).wrapping_neg()
        } else {
            u32::try_from(magnitude).ok()?
        };
        entries.push(Perm { access, domid });
    }
    Perms::new(entries)
}

/// Appends the list as `xenstore-ls` prints it, without the parentheses.
pub(crate) fn format_perms_into(out: &mut Vec<u8>, perms: &Perms) {
    for (i, p) in perms.entries().iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // `xs_perm_to_string` prints `%c%i` (signed, though the domid is unsigned) into a
        // buffer of `MAX_STRLEN(unsigned int) + 1` = 12 bytes, so an entry is cut to 11
        // characters: `r-1629631290` prints as `r-162963129`.
        let mut entry = format!("{}{}", p.access.letter(), p.domid as i32);
        entry.truncate(ENTRY_MAX);
        out.extend_from_slice(entry.as_bytes());
    }
}

/// The list as `xenstore-ls` prints it: `n0,r3`; `r-1` for domid 4294967295; and an entry
/// cut to 11 characters, as the tool's buffer cuts it (`r-162963129` for domid 2665336006).
pub fn format_perms(perms: &Perms) -> String {
    let mut out = Vec::new();
    format_perms_into(&mut out, perms);
    String::from_utf8(out).unwrap_or_default()
}

/// How many recently used lists are compared before the hash map is consulted.
const RECENT: usize = 8;

/// Shares one `Perms` between every node that prints the same list: a dump repeats a handful
/// of lists over and over, and nearby lines mostly use the same few, which a short
/// most-recently-used list finds without hashing or allocating.
#[derive(Default)]
pub(crate) struct PermsInterner {
    recent: Vec<(Box<[u8]>, Perms)>,
    seen: HashMap<Box<[u8]>, Perms>,
}

impl PermsInterner {
    pub(crate) fn intern(&mut self, text: &[u8]) -> Option<Perms> {
        if let Some(i) = self.recent.iter().position(|(t, _)| &**t == text) {
            // Most lines repeat the list of the line before: nothing to move.
            if i > 0 {
                self.recent[..=i].rotate_right(1);
            }
            return Some(self.recent[0].1.clone());
        }
        let perms = match self.seen.get(text) {
            Some(p) => p.clone(),
            None => {
                let p = parse_perms(text)?;
                self.seen.insert(Box::from(text), p.clone());
                p
            }
        };
        if self.recent.len() == RECENT {
            self.recent.pop();
        }
        self.recent.insert(0, (Box::from(text), perms.clone()));
        Some(perms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_domids_follow_percent_i() {
        let p = parse_perms(b"n0,r-1,b2147483647,w-2147483648").unwrap();
        let ids: Vec<u32> = p.entries().iter().map(|e| e.domid).collect();
        assert_eq!(ids, vec![0, u32::MAX, 2147483647, 2147483648]);
        // The tool's 12-byte buffer cuts the last entry.
        assert_eq!(format_perms(&p), "n0,r-1,b2147483647,w-214748364");
        assert_eq!(parse_perms(b"r4294967295").unwrap().entries()[0].domid, u32::MAX);
        for bad in [&b""[..], b"n", b"x1", b"n1,", b",n1", b"n-", b"n4294967296", b"n-2147483649", b"n 1", b"n1 "] {
            assert!(parse_perms(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn interner_shares() {
        let mut i = PermsInterner::default();
        let a = i.intern(b"n0,r1").unwrap();
        let _ = i.intern(b"n1").unwrap();
        let b = i.intern(b"n0,r1").unwrap();
        assert_eq!(a, b);
        assert!(i.intern(b"q").is_none());
    }
}
