//! The tree format of plain `xenstore-ls` (and `-p`): one node per line, indented by one
//! space per level below the start node, named by its last component.
//!
//! `do_ls` of Xen 4.17 prints, for a node at depth `d` named `n` with value `v`:
//! - `d` spaces, then `n` cut to `W - 8 - d` bytes (`W` is the width: 80 when stdout is not a
//!   terminal, the terminal width minus 2 when it is; a negative precision prints all of `n`);
//!   `linewid` is what was printed so far;
//! - if `linewid + len(v) + 8 > W` (`len` of the raw value, not of its escaped form):
//!   ` = "`, the first `W - 8 - linewid` bytes of the escaped value (possibly ending inside an
//!   escape), `\..."` — a **truncated** value, whose line is `W + 1` bytes wide;
//! - otherwise ` = "<escaped v>"`, and with `-p` one space, then `. . .` padding to column
//!   `min(60, W)` (a `.` at odd columns, a space at even ones);
//! - with `-p`, `  (<perms>)`;
//! - for an unreadable value, `n:` and then, like `-f`, a blank line or `  (<perms>)`.

use super::build::{error_at, path_error, Builder};
use super::error::{DumpError, DumpErrorKind, RepairKind, WarningKind};
use super::escape::decodes_completely;
use super::flat::{after_unreadable, perms_line};
use super::lines::Line;
use super::Format;
use merge_core::xenstore::{Node, Path, PathError};

/// `strlen(" = \"...\"")`, the room `do_ls` keeps for the value's frame.
const TAG_LEN: usize = 8;
/// `desired_width`: where the `-p` padding stops.
const DESIRED_WIDTH: usize = 60;
/// `max_width` when stdout is a pipe or a file.
pub const DEFAULT_WIDTH: usize = 80;

pub(crate) struct TreeOptions<'p> {
    pub perms: bool,
    pub format: Format,
    pub decided_at: usize,
    pub base: Option<&'p Path>,
    pub width: usize,
}

pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@' | b'-')
}

/// The parts of a tree line with a value, located without judging them.
struct Shape<'t> {
    indent: usize,
    name: &'t [u8],
    /// Offset of the value's first byte.
    value_start: usize,
    /// Offset of the closing quote.
    quote: usize,
    /// Between the closing quote and the permissions (or the line end).
    padding: &'t [u8],
    /// Offset of the permission text (after `(`) and the text itself.
    perms: Option<(usize, &'t [u8])>,
}

impl Shape<'_> {
    fn linewid(&self) -> usize {
        self.indent + self.name.len()
    }

    fn content<'t>(&self, t: &'t [u8]) -> &'t [u8] {
        &t[self.value_start..self.quote]
    }
}

/// Where the pieces of `indent name = "value"<padding>[(perms)]` are. `Err` carries the offset
/// and kind of the first thing that does not fit.
fn shape(t: &[u8], with_perms: bool) -> Result<Shape<'_>, (usize, DumpErrorKind)> {
    let indent = t.iter().take_while(|&&b| b == b' ').count();
    let rest = &t[indent..];
    let name_len = rest.iter().take_while(|&&b| is_name_byte(b)).count();
    let name = &rest[..name_len];
    let after = &rest[name_len..];
    if !after.starts_with(b" = \"") {
        return Err(match after.first() {
            Some(&c) if c != b' ' && c != b':' && name_len > 0 => {
                (indent + name_len, DumpErrorKind::BadPath(PathError::BadChar { ch: char::from(c), offset: name_len }))
            }
            _ if name_len == 0 => (indent, DumpErrorKind::NotADumpLine),
            _ => (indent + name_len, DumpErrorKind::Expected { expected: "` = \"` after the name" }),
        });
    }
    let value_start = indent + name_len + 4;
    let n = t.len();
    let unterminated = (n, DumpErrorKind::UnterminatedValue);
    if !with_perms {
        if n > value_start && t[n - 1] == b'"' {
            return Ok(Shape { indent, name, value_start, quote: n - 1, padding: &[], perms: None });
        }
        return Err(unterminated);
    }
    let (region, perms) = if t[n - 1] == b')' {
        let open = memchr::memrchr(b'(', t).unwrap_or(0);
        (&t[..open], Some((open + 1, &t[open + 1..n - 1])))
    } else {
        (t, None)
    };
    let quote = match memchr::memrchr(b'"', region) {
        Some(q) if q >= value_start => q,
        _ => return Err(unterminated),
    };
    let padding = &region[quote + 1..];
    if !padding.iter().all(|&b| b == b' ' || b == b'.') {
        return Err((quote + 1, DumpErrorKind::Padding));
    }
    Ok(Shape { indent, name, value_start, quote, padding, perms })
}

/// The padding `do_ls` prints after a closing quote at offset `quote`: nothing after a cut
/// value, else one space and `. . .` up to the padding column; then two spaces before the
/// permissions, if any.
fn expected_padding(quote: usize, cut_branch: bool, width: usize, with_perms_text: bool) -> Vec<u8> {
    let mut p = Vec::new();
    if !cut_branch {
        p.push(b' ');
        for col in quote + 2..DESIRED_WIDTH.min(width) {
            p.push(if col & 1 == 1 { b'.' } else { b' ' });
        }
    }
    if with_perms_text {
        p.extend_from_slice(b"  ");
    }
    p
}

/// The width a dump was printed at, from its first value that must have been cut (it ends in
/// `\...` and cannot be read as a complete value): such a line is exactly `width + 1` bytes;
/// or from a name cut to nothing, which sits at column `width - 8`.
pub(crate) fn infer_width<'a>(lines: impl Iterator<Item = Line<'a>>, with_perms: bool) -> Option<usize> {
    for line in lines {
        // A name printed with precision 0 sits exactly at the cut column. Deeper lines (whose
        // values all end in the marker) only come after such a line.
        let spaces = line.text.iter().take_while(|&&b| b == b' ').count();
        if spaces > 0 && line.text[spaces..].starts_with(b"= \"") {
            return Some(spaces - 1 + TAG_LEN);
        }
        let Ok(s) = shape(line.text, with_perms) else { continue };
        let content = s.content(line.text);
        if let Some(prefix) = content.strip_suffix(b"\\...") {
            if !decodes_completely(content) {
                return Some(s.linewid() + TAG_LEN + prefix.len());
            }
        }
    }
    None
}

pub(crate) fn parse_tree<'a>(
    lines: impl Iterator<Item = Line<'a>>,
    opts: &TreeOptions<'_>,
    b: &mut Builder,
) -> Result<(), DumpError> {
    let mut stack: Vec<(usize, Path)> = Vec::new();
    let mut base_indent: Option<usize> = None;
    let cut_col = opts.width.saturating_sub(TAG_LEN);
    let mut lines = lines.peekable();
    while let Some(line) = lines.next() {
        let t = line.text;
        if t.iter().all(|&c| c == b' ') {
            b.deviation(&line, 0, DumpErrorKind::BlankLine, RepairKind::BlankLine)?;
            continue;
        }
        if t.ends_with(b"\r") {
            return Err(error_at(&line, t.len() - 1, DumpErrorKind::CarriageReturn));
        }
        if perms_line(t).is_some() {
            return Err(error_at(&line, 2, DumpErrorKind::StrayPerms));
        }
        let indent = t.iter().take_while(|&&c| c == b' ').count();
        let rest = &t[indent..];
        let name_len = rest.iter().take_while(|&&c| is_name_byte(c)).count();
        if name_len == 0 {
            // A name printed with precision 0 leaves `<indent> = "...`: the separator's own
            // space follows the indent.
            let empty_name = rest.starts_with(b"= \"") && indent > 0 && indent - 1 == cut_col;
            return Err(if empty_name {
                error_at(&line, indent - 1, DumpErrorKind::EmptyName { width: opts.width })
            } else {
                error_at(&line, indent, DumpErrorKind::NotADumpLine)
            });
        }
        let unreadable = &rest[name_len..] == b":";
        let shaped = if unreadable {
            None
        } else {
            Some(shape(t, opts.perms).map_err(|(at, kind)| {
                if !opts.perms && t.ends_with(b")") && memchr::memmem::find(t, b"\"  (").is_some() {
                    let found = "a line with permissions";
                    error_at(
                        &line,
                        t.len(),
                        DumpErrorKind::FormatMismatch { format: opts.format, found, decided_at: opts.decided_at },
                    )
                } else {
                    error_at(&line, at, kind)
                }
            })?)
        };

        // Place the line under the nearest shallower line above it.
        let base_i = match base_indent {
            Some(i) => i,
            None => {
                if indent > 0 {
                    b.deviation(
                        &line,
                        0,
                        DumpErrorKind::BadIndent { indent, expected: "xenstore-ls starts at 0".into() },
                        RepairKind::BaseIndent { indent },
                    )?;
                }
                base_indent = Some(indent);
                indent
            }
        };
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let expected = stack.last().map_or(base_i, |(i, _)| i + 1);
        if indent != expected {
            b.deviation(
                &line,
                0,
                DumpErrorKind::BadIndent { indent, expected: format!("{expected} expected from the lines above") },
                RepairKind::IndentStep { indent, expected },
            )?;
        }
        let name = std::str::from_utf8(&rest[..name_len]).unwrap_or_default();
        let path = match (stack.last(), opts.base) {
            (Some((_, parent)), _) => parent.join(name),
            (None, Some(base)) => base.join(name),
            (None, None) => Path::new(name),
        }
        .map_err(|e| path_error(&line, indent, e))?;

        let Some(s) = shaped else {
            let perms = after_unreadable(&mut lines, opts.perms, b, &line)?;
            let node = Node { value: Box::default(), perms, truncated: false, unreadable: true };
            b.insert(&line, indent, path.clone(), node)?;
            stack.push((indent, path));
            continue;
        };

        let linewid = s.linewid();
        if linewid == cut_col {
            b.warn(&line, WarningKind::NameMayBeCut { path: path.to_string() });
        }
        let content = s.content(t);
        // Which branch of do_ls printed the value, and whether it is cut.
        let (text, cut_branch, truncated) = match content.strip_suffix(b"\\...") {
            // Deeper than the cut column: the precision is negative, so the whole value is
            // printed, then the marker.
            Some(prefix) if linewid > cut_col => (prefix, true, false),
            Some(prefix) if prefix.len() == cut_col - linewid => {
                if decodes_completely(content) {
                    b.warn(&line, WarningKind::AmbiguousTruncation { path: path.to_string() });
                }
                (prefix, true, true)
            }
            _ => (content, false, false),
        };
        let value = b.dump_value(&line, s.value_start, text, truncated)?;
        if !cut_branch && (linewid > cut_col || value.len() > cut_col - linewid) {
            b.warn(&line, WarningKind::WiderThanWidth { path: path.to_string(), width: opts.width });
        }
        if opts.perms && s.perms.is_none() && s.padding.is_empty() && !cut_branch {
            let found = "a line without permissions";
            return Err(error_at(
                &line,
                t.len(),
                DumpErrorKind::FormatMismatch { format: opts.format, found, decided_at: opts.decided_at },
            ));
        }
        if opts.perms {
            let want = expected_padding(s.quote, cut_branch, opts.width, s.perms.is_some());
            if s.padding != want.as_slice() {
                b.deviation(&line, s.quote + 1, DumpErrorKind::Padding, RepairKind::Padding)?;
            }
        }
        let perms = match s.perms {
            Some((at, text)) => Some(b.perms(&line, at, text)?),
            None => {
                if opts.perms {
                    b.warn(&line, WarningKind::PermsUnreadable { path: path.to_string() });
                }
                None
            }
        };
        b.insert(&line, indent, path.clone(), Node { value, perms, truncated, unreadable: false })?;
        stack.push((indent, path));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_matches_the_tool() {
        // `one = "one"  . . . . . . . . . . . . . . . . . . . . . . . .  (n0,r2)`
        let line = b"one = \"one\"  . . . . . . . . . . . . . . . . . . . . . . . .  (n0,r2)";
        let s = shape(line, true).unwrap();
        assert_eq!(s.padding, &expected_padding(s.quote, false, 80, true)[..]);
        // ` kid = "2" . . .` with unreadable permissions.
        let line = b" kid = \"2\" . . . . . . . . . . . . . . . . . . . . . . . . .";
        let s = shape(line, true).unwrap();
        assert_eq!(s.padding, &expected_padding(s.quote, false, 80, false)[..]);
        assert!(s.perms.is_none());
    }
}
