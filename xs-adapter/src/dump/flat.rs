//! `xenstore-ls -f` and `-fp`: one node per line, `<path> = "<value>"`, with `-p` followed by
//! three spaces and `(<perms>)`.
//!
//! Shapes, all checked against the real 4.17 tool:
//! - `<path> = "<value>"` and, with `-p`, `<path> = "<value>"   (<perms>)`;
//! - with `-p`, `<path> = "<value>" ` when the permissions could not be read;
//! - `<path>:` when the value could not be read, then a line with `  (<perms>)` (with `-p`, if
//!   they could be read) or a blank line.
//!
//! A path cannot contain a space, so the first space ends it. The value runs to the last `"`
//! before the permissions: values are not quote-escaped, so that is the only safe end.

use super::build::{error_at, Builder, Destination};
use super::error::{DumpError, DumpErrorKind, RepairKind, WarningKind};
use super::lines::Line;
use super::Format;
use merge_core::xenstore::{Node, Path, Perms};

pub(crate) struct FlatOptions<'p> {
    pub perms: bool,
    pub format: Format,
    pub decided_at: usize,
    pub base: Option<&'p Path>,
}

/// `  (<perms>)`: the line after an unreadable node whose permissions could be read.
pub(crate) fn perms_line(t: &[u8]) -> Option<&[u8]> {
    t.strip_prefix(b"  (")?.strip_suffix(b")")
}

/// Reads a flat dump in two interleaved passes: the first inserts every other node, the
/// second the rest.
///
/// Why: a dump comes almost sorted, and the tree's B+tree splits a full leaf in the middle, so
/// inserting in order leaves every leaf half empty (a third of the tree's memory). Inserting
/// the odd nodes first and the even ones between them fills each leaf before it splits. The
/// nodes, repairs and warnings are the same as in one pass (repairs and warnings are put back in
/// line order). On any error the dump is read again in one pass, so the error reported is the
/// first one in the input.
pub(crate) fn parse_flat<'a>(
    lines: impl Iterator<Item = Line<'a>> + Clone,
    opts: &FlatOptions<'_>,
    b: &mut Builder,
) -> Result<(), DumpError> {
    if b.is_finder() {
        return parse_flat_pass(lines, opts, b, None);
    }
    let (repairs, warnings) = (b.repairs.len(), b.warnings.len());
    let interleaved = parse_flat_pass(lines.clone(), opts, b, Some(0))
        .and_then(|()| parse_flat_pass(lines.clone(), opts, b, Some(1)));
    match interleaved {
        Ok(()) => {
            b.repairs[repairs..].sort_by_key(|r| r.line);
            b.warnings[warnings..].sort_by_key(|w| w.line);
            Ok(())
        }
        Err(_) => {
            b.tree = merge_core::xenstore::Tree::new();
            b.left_out.clear();
            b.repairs.truncate(repairs);
            b.warnings.truncate(warnings);
            parse_flat_pass(lines, opts, b, None)
        }
    }
}

/// `<path>:`, whose node also owns the line after it (see [`after_unreadable`]).
pub(crate) fn unreadable_head(t: &[u8]) -> bool {
    let t = t.trim_ascii_start();
    t.ends_with(b":") && memchr::memchr(b' ', t).is_none()
}

/// Whether the line after an unreadable node belongs to it.
fn owned_by_unreadable(next: &Line<'_>, with_perms: bool) -> bool {
    next.text.is_empty() || (with_perms && perms_line(next.text).is_some())
}

/// One pass over the lines. With `parity`, only every other node (a node line with the line it
/// owns, or any other line) is read, the others skipped.
pub(crate) fn parse_flat_pass<'a>(
    lines: impl Iterator<Item = Line<'a>>,
    opts: &FlatOptions<'_>,
    b: &mut Builder,
    parity: Option<usize>,
) -> Result<(), DumpError> {
    let mut lines = lines.peekable();
    let mut group = 0usize;
    while let Some(line) = lines.next() {
        let mine = parity.is_none_or(|p| group % 2 == p);
        group += 1;
        if !mine {
            if unreadable_head(line.text) && lines.peek().is_some_and(|next| owned_by_unreadable(next, opts.perms)) {
                lines.next();
            }
            continue;
        }
        let mut t = line.text;
        let mut skip = 0;
        if t.is_empty() {
            b.deviation(&line, 0, DumpErrorKind::BlankLine, RepairKind::BlankLine)?;
            continue;
        }
        if t.ends_with(b"\r") {
            return Err(error_at(&line, t.len() - 1, DumpErrorKind::CarriageReturn));
        }
        let body = t.trim_ascii();
        if body.starts_with(b"(") && body.ends_with(b")") {
            return Err(error_at(&line, t.len() - t.trim_ascii_start().len(), DumpErrorKind::StrayPerms));
        }
        if t[0] == b' ' || t[0] == b'\t' {
            let n = t.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
            b.deviation(
                &line,
                0,
                DumpErrorKind::Expected { expected: "a path at the start of the line" },
                RepairKind::LeadingSpace,
            )?;
            t = &t[n..];
            skip = n;
            if t.is_empty() {
                continue;
            }
        }
        let Some(space) = memchr::memchr(b' ', t) else {
            // `<path>:` — unreadable.
            let Some(path_text) = t.strip_suffix(b":") else {
                return Err(not_a_node(&line, skip, t));
            };
            let text = match b.destination(&line, path_text, opts.base) {
                Destination::LeftOut(_) => {
                    let owned = lines.peek().filter(|next| owned_by_unreadable(next, opts.perms));
                    let end = owned.and_then(|next| next.offset.map(|at| at + next.text.len()));
                    after_unreadable(&mut lines, opts.perms, b, &line)?;
                    b.leave_out(&line, skip, path_text.len(), end);
                    continue;
                }
                Destination::Tree(text) => text,
            };
            let path = b.path_of_text(&line, skip, path_text, text, opts.base)?;
            let perms = after_unreadable(&mut lines, opts.perms, b, &line)?;
            let node = Node { value: Box::default(), perms, truncated: false, unreadable: true };
            b.insert(&line, skip, path, node)?;
            continue;
        };
        if !t[space..].starts_with(b" = \"") {
            return Err(not_a_node(&line, skip, t));
        }
        let value_start = space + 4;
        let (value_end, perms) = if opts.perms {
            split_perms(&line, skip, t, value_start, opts, b)?
        } else {
            split_plain(&line, skip, t, value_start, opts, b)?
        };
        let path_text = &t[..space];
        let text = match b.destination(&line, path_text, opts.base) {
            Destination::LeftOut(path) => {
                b.check_dump_value(&line, skip + value_start, &t[value_start..value_end])?;
                if opts.perms && perms.is_none() {
                    b.warn(&line, WarningKind::PermsUnreadable { path: path.to_string() });
                }
                b.leave_out(&line, skip, path_text.len(), None);
                continue;
            }
            Destination::Tree(text) => text,
        };
        let path = b.path_of_text(&line, skip, path_text, text, opts.base)?;
        let value = b.dump_value(&line, skip + value_start, &t[value_start..value_end], false)?;
        if opts.perms && perms.is_none() {
            b.warn(&line, WarningKind::PermsUnreadable { path: path.to_string() });
        }
        b.insert(&line, skip, path, Node { value, perms, truncated: false, unreadable: false })?;
    }
    Ok(())
}

/// Why a line is not `<path> = "..."` nor `<path>:`.
fn not_a_node(line: &Line<'_>, skip: usize, t: &[u8]) -> DumpError {
    let trimmed = t.trim_ascii();
    if trimmed.starts_with(b"(") && trimmed.ends_with(b")") {
        return error_at(line, skip, DumpErrorKind::StrayPerms);
    }
    match memchr::memmem::find(t, b" = \"") {
        // A separator further on: the path itself has a space in it.
        Some(_) => {
            let space = memchr::memchr(b' ', t).unwrap_or(0);
            let bad = merge_core::xenstore::PathError::BadChar { ch: ' ', offset: space };
            error_at(line, skip + space, DumpErrorKind::BadPath(bad))
        }
        None => error_at(line, skip, DumpErrorKind::NotADumpLine),
    }
}

/// The line after `<path>:` is a blank line or, with `-p`, `  (<perms>)`.
pub(crate) fn after_unreadable<'a>(
    lines: &mut std::iter::Peekable<impl Iterator<Item = Line<'a>>>,
    with_perms: bool,
    b: &mut Builder,
    line: &Line<'_>,
) -> Result<Option<Perms>, DumpError> {
    match lines.peek() {
        Some(next) if next.text.is_empty() => {
            lines.next();
            Ok(None)
        }
        Some(next) if owned_by_unreadable(next, with_perms) => {
            let next = *next;
            lines.next();
            let text = perms_line(next.text).unwrap_or_default();
            Ok(Some(b.perms(&next, 3, text)?))
        }
        Some(next) => {
            let next = *next;
            b.deviation(&next, 0, DumpErrorKind::MissingAfterUnreadable, RepairKind::MissingAfterUnreadable)?;
            Ok(None)
        }
        None => {
            b.deviation(
                line,
                line.text.len(),
                DumpErrorKind::MissingAfterUnreadable,
                RepairKind::MissingAfterUnreadable,
            )?;
            Ok(None)
        }
    }
}

/// `-fp`: `"<value>"   (<perms>)` or `"<value>" `. Returns where the value ends.
fn split_perms(
    line: &Line<'_>,
    skip: usize,
    t: &[u8],
    value_start: usize,
    opts: &FlatOptions<'_>,
    b: &mut Builder,
) -> Result<(usize, Option<Perms>), DumpError> {
    let n = t.len();
    if t[n - 1] == b')' {
        let open = memchr::memrchr(b'(', t).unwrap_or(0);
        let mut quote = open;
        while quote > 0 && t[quote - 1] == b' ' {
            quote -= 1;
        }
        let spaces = open - quote;
        if quote == 0 || t[quote - 1] != b'"' || spaces == 0 || quote - 1 < value_start {
            return Err(error_at(
                line,
                skip + open,
                DumpErrorKind::Expected { expected: "`\"   (` before the permissions" },
            ));
        }
        if spaces != 3 {
            b.deviation(
                line,
                skip + quote,
                DumpErrorKind::PermsSpacing { spaces, expected: 3 },
                RepairKind::PermsSpacing { spaces },
            )?;
        }
        let perms = b.perms(line, skip + open + 1, &t[open + 1..n - 1])?;
        return Ok((quote - 1, Some(perms)));
    }
    if n >= 2 && t.ends_with(b"\" ") && n - 2 >= value_start {
        return Ok((n - 2, None));
    }
    if t[n - 1] == b'"' && n > value_start {
        return Err(error_at(
            line,
            skip + n,
            DumpErrorKind::FormatMismatch {
                format: opts.format,
                found: "a line without permissions",
                decided_at: opts.decided_at,
            },
        ));
    }
    Err(error_at(line, skip + n, DumpErrorKind::UnterminatedValue))
}

/// `-f`: the line ends with the value's closing `"`.
fn split_plain(
    line: &Line<'_>,
    skip: usize,
    t: &[u8],
    value_start: usize,
    opts: &FlatOptions<'_>,
    b: &mut Builder,
) -> Result<(usize, Option<Perms>), DumpError> {
    let mut n = t.len();
    if t[n - 1] == b' ' || t[n - 1] == b'\t' {
        let trimmed = t.iter().rposition(|&c| c != b' ' && c != b'\t').map_or(0, |i| i + 1);
        b.deviation(line, skip + trimmed, DumpErrorKind::TrailingSpace, RepairKind::TrailingSpace)?;
        n = trimmed;
    }
    if n > value_start && t[n - 1] == b'"' {
        return Ok((n - 1, None));
    }
    if n > 0 && t[n - 1] == b')' {
        if let Some(open) = memchr::memrchr(b'(', &t[..n]) {
            if open >= 4 && t[..open].ends_with(b"\"   ") && super::perms::parse_perms(&t[open + 1..n - 1]).is_some() {
                return Err(error_at(
                    line,
                    skip + open,
                    DumpErrorKind::FormatMismatch {
                        format: opts.format,
                        found: "a line with permissions",
                        decided_at: opts.decided_at,
                    },
                ));
            }
        }
    }
    Err(error_at(line, skip + n, DumpErrorKind::UnterminatedValue))
}
