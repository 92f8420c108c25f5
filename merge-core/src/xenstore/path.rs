//! Validated xenstore paths.
//!
//! The rules are xenstored's (`is_valid_nodename` in 4.17): the characters `[A-Za-z0-9_@/-]`,
//! no empty component (so no `//` and no trailing `/` except the root itself), and at most
//! [`ABS_PATH_MAX`] bytes for an absolute path or [`REL_PATH_MAX`] for a relative one.
//! Relative paths appear in dumps taken inside a guest (`device/vbd/51712/state`).

use std::fmt;
use std::sync::Arc;

/// `XENSTORE_ABS_PATH_MAX`.
pub const ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`.
pub const REL_PATH_MAX: usize = 2048;

/// Why a string is not a valid xenstore path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty path")]
    Empty,
    #[error("path is {len} bytes, longer than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("invalid character {ch:?} at byte {offset}")]
    BadChar { ch: char, offset: usize },
    #[error("empty path component at byte {offset} (`//` or a trailing `/`)")]
    EmptyComponent { offset: usize },
}

/// A validated xenstore path, absolute (`/local/domain/1`) or relative (`device/vbd`).
///
/// Cheap to clone. Ordered as plain bytes, which keeps every subtree contiguous: the
/// descendants of `/a/b` are exactly the keys in `["/a/b/", "/a/b0")`, because `0` is the byte
/// after `/`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path(Arc<str>);

impl Path {
    /// The root, `/`.
    pub fn root() -> Path {
        Path(Arc::from("/"))
    }

    /// Validates `s` by xenstored's rules.
    pub fn new(s: &str) -> Result<Path, PathError> {
        validate(s)?;
        Ok(Path(Arc::from(s)))
    }

    /// The path a checked text names, without checking it again.
    pub fn from_checked(checked: CheckedPath<'_>) -> Path {
        Path(Arc::from(checked.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_absolute(&self) -> bool {
        self.0.starts_with('/')
    }

    pub fn is_root(&self) -> bool {
        &*self.0 == "/"
    }

    /// `self/name`. `name` must be one valid component.
    pub fn join(&self, name: &str) -> Result<Path, PathError> {
        if name.is_empty() || name.contains('/') {
            return Err(PathError::EmptyComponent { offset: self.0.len() + 1 });
        }
        let s = if self.is_root() { format!("/{name}") } else { format!("{}/{name}", self.0) };
        Path::new(&s)
    }

    /// The parent, or `None` for the root and for a one-component relative path.
    pub fn parent(&self) -> Option<Path> {
        if self.is_root() {
            return None;
        }
        match self.0.rfind('/') {
            Some(0) => Some(Path::root()),
            Some(i) => Some(Path(Arc::from(&self.0[..i]))),
            None => None,
        }
    }

    /// The last component (`""` for the root).
    pub fn name(&self) -> &str {
        match self.0.rfind('/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// Whether `self` is `ancestor` or lies below it.
    pub fn starts_with(&self, ancestor: &Path) -> bool {
        if ancestor.is_root() {
            return self.is_absolute();
        }
        self.0 == ancestor.0
            || (self.0.len() > ancestor.0.len()
                && self.0.starts_with(&*ancestor.0)
                && self.0.as_bytes()[ancestor.0.len()] == b'/')
    }

    /// Resolves a relative path against an absolute base; an absolute path is returned as is.
    pub fn resolve(&self, base: &Path) -> Result<Path, PathError> {
        if self.is_absolute() {
            return Ok(self.clone());
        }
        let s = if base.is_root() { format!("/{}", self.0) } else { format!("{}/{}", base.0, self.0) };
        Path::new(&s)
    }

    /// The components, without the leading `/`.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The first key that can be a strict descendant of `self`.
    pub(crate) fn subtree_start(&self) -> String {
        if self.is_root() {
            return "/".to_string();
        }
        concat(&[&self.0, "/"])
    }
}

/// The text made of `parts`, one after another: for the node paths (and file names) built for
/// every domain, a few dozen per domain on a thousand-domain host, without the formatting
/// machinery (`format!` costs several times the copy). Nothing is checked.
pub fn concat(parts: &[&str]) -> String {
    let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        text.push_str(part);
    }
    text
}

/// A number as decimal text, on the stack: a domid or an index in a node path ([`concat`]).
#[derive(Clone, Copy)]
pub struct Decimal {
    /// Room for a sign and ten digits.
    digits: [u8; 11],
    start: u8,
}

impl Decimal {
    pub fn of(mut n: u32) -> Decimal {
        let mut digits = [b'0'; 11];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { digits, start: start as u8 }
    }

    /// A signed number, as `%d` prints it.
    pub fn of_i32(n: i32) -> Decimal {
        let mut d = Decimal::of(n.unsigned_abs());
        if n < 0 {
            d.start -= 1;
            d.digits[usize::from(d.start)] = b'-';
        }
        d
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and a sign are ever written.
        std::str::from_utf8(&self.digits[self.start as usize..]).unwrap_or("0")
    }
}

/// The first `N` components of a path string, `""` past its last one: what
/// `path.split('/').filter(|c| !c.is_empty())` yields, without an iterator step per component.
/// For matching path shapes with a slice pattern, on the hot paths that classify every node of
/// a host.
pub fn leading_components<const N: usize>(path: &str) -> [&str; N] {
    let mut out = [""; N];
    let bytes = path.as_bytes();
    let mut i = 0;
    for slot in out.iter_mut() {
        while i < bytes.len() && bytes[i] == b'/' {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'/' {
            i += 1;
        }
        // `/` is ASCII, so both ends are character boundaries.
        *slot = &path[start..i];
    }
    out
}

/// The bytes xenstored allows in a path: a component's `[A-Za-z0-9_@-]` and the separator.
const PATH_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(b as u8, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'@' | b'-' | b'/');
        b += 1;
    }
    table
};

/// Whether `name` is one valid path component: not empty, and only the bytes a path allows,
/// `/` aside. A `const fn`, so that a table of names can be checked when compiling.
pub(crate) const fn valid_component(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'/' || !PATH_BYTE[bytes[i] as usize] {
            return false;
        }
        i += 1;
    }
    !bytes.is_empty()
}

/// [`PATH_BYTE`] by arithmetic: `b | 0x20` folds `A-Z` onto `a-z` and sends no other allowed
/// byte there (`@` becomes `` ` ``, `_` stays below `a`).
fn is_path_byte(b: u8) -> bool {
    ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'_')
        | (b == b'@')
        | (b == b'-')
        | (b == b'/')
}

/// How many bytes [`path_bytes_ok`] looks at in one step.
const LANES: usize = 16;

/// Whether every byte is one a path allows and no two `/` follow each other, in steps of
/// [`LANES`] bytes with no branch inside a step, so that each step is a few vector compares
/// (a host's dump checks a hundred thousand paths of some sixty bytes). The last step reads a
/// padded copy: a byte loop for the remainder cost more than all the vector steps.
fn path_bytes_ok(bytes: &[u8]) -> bool {
    let mut ok = true;
    let mut at = 0;
    // Each step also looks at the next step's first byte, for a `//` across the two.
    while at + LANES < bytes.len() {
        let window: &[u8; LANES + 1] = bytes[at..=at + LANES].try_into().expect("LANES + 1 bytes");
        ok &= window_ok(window);
        at += LANES;
    }
    // The last step: the last LANES bytes (some looked at again), or all of a shorter path,
    // followed by a byte that pairs with nothing.
    let mut last = [b'a'; LANES + 1];
    match bytes.len().checked_sub(LANES) {
        Some(from) => last[..LANES].copy_from_slice(&bytes[from..]),
        None => last[..bytes.len()].copy_from_slice(bytes),
    }
    ok & window_ok(&last)
}

/// The first [`LANES`] bytes of `window` are path bytes, and none is a `/` followed by one.
fn window_ok(window: &[u8; LANES + 1]) -> bool {
    let (this, next) = (&window[..LANES], &window[1..]);
    let bad = this
        .iter()
        .zip(next)
        .fold(0u8, |bad, (&b, &after)| bad | u8::from(!is_path_byte(b)) | u8::from((b == b'/') & (after == b'/')));
    bad == 0
}

/// Whether `bytes` are a valid path, with no account of why not.
fn valid_fast(bytes: &[u8]) -> bool {
    let max = if bytes.first() == Some(&b'/') { ABS_PATH_MAX } else { REL_PATH_MAX };
    if bytes.is_empty() || bytes.len() > max {
        return false;
    }
    bytes == b"/" || (path_bytes_ok(bytes) && bytes.last() != Some(&b'/'))
}

fn validate(s: &str) -> Result<(), PathError> {
    let bytes = s.as_bytes();
    // The common case, a valid path, without a branch per byte; what follows finds where an
    // invalid one goes wrong.
    if valid_fast(bytes) {
        return Ok(());
    }
    if s.is_empty() {
        return Err(PathError::Empty);
    }
    let max = if s.starts_with('/') { ABS_PATH_MAX } else { REL_PATH_MAX };
    if s.len() > max {
        return Err(PathError::TooLong { len: s.len(), max });
    }
    let mut prev_slash = false;
    for (offset, &b) in bytes.iter().enumerate() {
        match b {
            b'/' => {
                if prev_slash {
                    return Err(PathError::EmptyComponent { offset });
                }
                prev_slash = true;
            }
            _ if PATH_BYTE[usize::from(b)] => prev_slash = false,
            _ => {
                let ch = s[offset..].chars().next().unwrap_or('\u{fffd}');
                return Err(PathError::BadChar { ch, offset });
            }
        }
    }
    if prev_slash {
        return Err(PathError::EmptyComponent { offset: s.len() - 1 });
    }
    Ok(())
}

/// Bytes found to be a valid path, as text: what a reader of raw input (a dump) gets from one
/// check where it would otherwise check the bytes as UTF-8 and then as a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedPath<'a>(&'a str);

impl<'a> CheckedPath<'a> {
    /// `bytes` as a path, if they are a valid one; `None` for anything else, and [`Path::new`]
    /// on their text (if they are UTF-8) says what is wrong.
    pub fn of_bytes(bytes: &'a [u8]) -> Option<CheckedPath<'a>> {
        if !valid_fast(bytes) {
            return None;
        }
        // SAFETY: a valid path is ASCII, so UTF-8: every byte passed `is_path_byte`, which
        // accepts only ASCII bytes (the test `the_arithmetic_test_is_the_table_for_every_byte`
        // holds it to the table of `[A-Za-z0-9_@/-]`). Checking UTF-8 again was a tenth of
        // reading a dump's line.
        Some(CheckedPath(unsafe { std::str::from_utf8_unchecked(bytes) }))
    }

    pub fn as_str(self) -> &'a str {
        self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl std::borrow::Borrow<str> for Path {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Path {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Path, PathError> {
        Path::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_concat_agree_with_format() {
        for n in [0, 1, 9, 10, 99, 100, 4095, 65535, 1_000_000, u32::MAX - 1, u32::MAX] {
            assert_eq!(Decimal::of(n).as_str(), n.to_string());
        }
        for n in [0, 1, -1, 42, -42, i32::MAX, i32::MIN, i32::MIN + 1] {
            assert_eq!(Decimal::of_i32(n).as_str(), n.to_string());
        }
        let d = Decimal::of(42);
        assert_eq!(concat(&["/local/domain/", d.as_str(), "/name"]), "/local/domain/42/name");
        assert_eq!(concat(&[]), "");
    }

    #[test]
    fn a_component_is_a_path_without_a_separator() {
        let long = "colo_filter_redirector1_queue_with_a_long_tail";
        let bad_late = "colo_filter_redirector1_queue_with_a_long_tai.";
        let slash_late = "colo_filter_redirector1_queue_with_a_long_tai/";
        for name in
            ["", "a", "vif", "51712", "x_y@z-1", "a/b", "/", "a.b", "a b", "é", "colo-sock", long, bad_late, slash_late]
        {
            let as_path = format!("/{name}");
            let expected = !name.is_empty() && !name.contains('/') && Path::new(&as_path).is_ok();
            assert_eq!(valid_component(name), expected, "{name:?}");
        }
    }

    #[test]
    fn leading_components_are_splits_non_empty_parts() {
        let cases = ["", "/", "//", "/a", "a", "/a/b/c", "a//b/", "///x///y", "/local/domain/3/device/vbd/51712/state"];
        for s in cases {
            let want: Vec<&str> = s.split('/').filter(|c| !c.is_empty()).collect();
            let got = leading_components::<4>(s);
            for (i, c) in got.iter().enumerate() {
                assert_eq!(*c, want.get(i).copied().unwrap_or(""), "{s:?} component {i}");
            }
        }
    }

    #[test]
    fn the_arithmetic_test_is_the_table_for_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(is_path_byte(b), PATH_BYTE[usize::from(b)], "byte {b:#04x}");
        }
    }

    #[test]
    fn the_fast_checks_agree_with_the_byte_loop() {
        // Every path of up to three bytes over a small alphabet, plus longer ones that cross
        // a vector's width, with the bad byte or the `//` at each position.
        let alphabet = [b'a', b'/', b'Z', b'9', b' ', 0xc3];
        let mut cases: Vec<Vec<u8>> = vec![];
        for len in 1..=3 {
            for n in 0..alphabet.len().pow(len) {
                let mut m = n;
                cases.push((0..len).map(|_| (alphabet[m % alphabet.len()], m /= alphabet.len()).0).collect());
            }
        }
        for len in [15, 16, 17, 31, 32, 33, 64, 65] {
            for at in 0..len - 1 {
                let mut clean = vec![b'a'; len];
                clean[0] = b'/';
                for (bad, width) in [(b'.', 1), (b'/', 2)] {
                    let mut path = clean.clone();
                    path[at..at + width].fill(bad);
                    cases.push(path);
                }
                cases.push(clean.clone());
            }
        }
        for bytes in cases {
            let slow_bad_byte = bytes.iter().any(|&b| !PATH_BYTE[usize::from(b)]);
            let slow_double = bytes.windows(2).any(|w| w == b"//");
            assert_eq!(path_bytes_ok(&bytes), !slow_bad_byte && !slow_double, "{bytes:?}");
            checked_as_path_new(&bytes);
        }
        for bytes in [&b""[..], b"/", b"a", b"/a/", &[b'a'; 2049], &[b'/'; 1], &b"/a".repeat(1536), &b"/a".repeat(1537)]
        {
            checked_as_path_new(bytes);
        }
    }

    /// `CheckedPath::of_bytes` accepts exactly what `Path::new` accepts, as the same text.
    fn checked_as_path_new(bytes: &[u8]) {
        let by_new = std::str::from_utf8(bytes).ok().and_then(|s| Path::new(s).ok());
        let checked = CheckedPath::of_bytes(bytes);
        assert_eq!(checked.map(Path::from_checked), by_new, "{bytes:?}");
        assert_eq!(checked.map(|c| c.as_str().as_bytes()), by_new.as_ref().map(|_| bytes));
    }

    #[test]
    fn accepts_xenstored_paths() {
        for p in ["/", "/local/domain/0", "device/vbd/51712", "@introduceDomain", "/a-b_c/9"] {
            Path::new(p).unwrap();
        }
    }

    #[test]
    fn rejects_bad_paths() {
        assert_eq!(Path::new(""), Err(PathError::Empty));
        assert!(matches!(Path::new("/a//b"), Err(PathError::EmptyComponent { offset: 3 })));
        assert!(matches!(Path::new("/a/"), Err(PathError::EmptyComponent { .. })));
        assert!(matches!(Path::new("/a b"), Err(PathError::BadChar { ch: ' ', offset: 2 })));
        assert!(matches!(Path::new(&format!("/{}", "a".repeat(3072))), Err(PathError::TooLong { .. })));
    }

    #[test]
    fn structure() {
        let p = Path::new("/local/domain/1").unwrap();
        assert_eq!(p.parent().unwrap().as_str(), "/local/domain");
        assert_eq!(Path::new("/local").unwrap().parent().unwrap(), Path::root());
        assert_eq!(p.name(), "1");
        assert!(p.starts_with(&Path::new("/local").unwrap()));
        assert!(!Path::new("/localx").unwrap().starts_with(&Path::new("/local").unwrap()));
        let rel = Path::new("device/vbd").unwrap();
        assert_eq!(rel.resolve(&p).unwrap().as_str(), "/local/domain/1/device/vbd");
        assert_eq!(p.join("name").unwrap().as_str(), "/local/domain/1/name");
        assert_eq!(Path::root().join("vm").unwrap().as_str(), "/vm");
    }
}
