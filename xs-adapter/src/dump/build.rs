//! The state every format's parser shares: the tree being built, interned permissions,
//! repairs and warnings, and how errors are made.

use super::error::{DumpError, DumpErrorKind, Repair, RepairKind, Warning, WarningKind};
use super::escape::{self, DecodeError, DUMP_ESCAPES, VALUE_MAX};
use super::lines::Line;
use super::perms::PermsInterner;
use merge_core::xenstore::{CheckedPath, Node, Path, Perms, Tree};

/// Longest excerpt of a line kept in an error.
const EXCERPT: usize = 120;

pub(crate) fn error_at(line: &Line<'_>, offset: usize, kind: DumpErrorKind) -> DumpError {
    let offset = offset.min(line.text.len());
    // Keep the excerpt short, around the column, even for a 100 MB line.
    let start = offset.saturating_sub(EXCERPT / 2);
    let start = if offset < EXCERPT { 0 } else { start };
    let end = (start + EXCERPT).min(line.text.len());
    let mut text = String::from_utf8_lossy(&line.text[start..end]).into_owned();
    if start > 0 {
        text.insert(0, '…');
    }
    if end < line.text.len() {
        text.push('…');
    }
    DumpError { line: line.no, column: line.column(offset), text, kind }
}

pub(crate) struct Builder {
    pub tree: Tree,
    /// Which nodes go into `tree` (see [`Builder::leaves_out`]); the others are only checked,
    /// and where they are goes to `left_out`.
    pub keep: Option<fn(&str) -> bool>,
    pub left_out: Vec<LeftNode>,
    /// When set, the nodes kept are collected here, in input order, instead of inserted (a
    /// part of a dump read on its own thread).
    pub collected: Option<Vec<(Path, Node)>>,
    pub lenient: bool,
    pub repairs: Vec<Repair>,
    pub warnings: Vec<Warning>,
    perms: PermsInterner,
    scratch: Vec<u8>,
    /// Set while looking for the first occurrence of a duplicated path: its line is recorded
    /// instead of inserting anything.
    find_first: Option<(Path, Option<usize>)>,
}

impl Builder {
    pub(crate) fn new(lenient: bool) -> Builder {
        Builder {
            tree: Tree::new(),
            keep: None,
            left_out: Vec::new(),
            collected: None,
            lenient,
            repairs: Vec::new(),
            warnings: Vec::new(),
            perms: PermsInterner::default(),
            scratch: Vec::new(),
            find_first: None,
        }
    }

    /// A builder that only looks for the first line that names `path`.
    pub(crate) fn finder(lenient: bool, path: Path) -> Builder {
        let mut b = Builder::new(lenient);
        b.find_first = Some((path, None));
        b
    }

    pub(crate) fn is_finder(&self) -> bool {
        self.find_first.is_some()
    }

    pub(crate) fn found_first(&self) -> Option<usize> {
        self.find_first.as_ref().and_then(|(_, line)| *line)
    }

    pub(crate) fn repair(&mut self, line: &Line<'_>, kind: RepairKind) {
        self.repairs.push(Repair { line: line.no, kind });
    }

    pub(crate) fn warn(&mut self, line: &Line<'_>, kind: WarningKind) {
        self.warnings.push(Warning { line: line.no, kind });
    }

    /// In strict mode a deviation is an error; in lenient mode it is accepted and recorded.
    pub(crate) fn deviation(
        &mut self,
        line: &Line<'_>,
        offset: usize,
        error: DumpErrorKind,
        repair: RepairKind,
    ) -> Result<(), DumpError> {
        if self.lenient {
            self.repair(line, repair);
            Ok(())
        } else {
            Err(error_at(line, offset, error))
        }
    }

    pub(crate) fn perms(&mut self, line: &Line<'_>, offset: usize, text: &[u8]) -> Result<Perms, DumpError> {
        self.perms.intern(text).ok_or_else(|| {
            error_at(line, offset, DumpErrorKind::BadPerms { perms: String::from_utf8_lossy(text).into_owned() })
        })
    }

    /// Decodes a value printed by xenstore-ls at `offset` of the line.
    pub(crate) fn dump_value(
        &mut self,
        line: &Line<'_>,
        offset: usize,
        text: &[u8],
        cut: bool,
    ) -> Result<Box<[u8]>, DumpError> {
        self.decode_value(line, offset, text, cut, |v| Box::from(v))
    }

    /// Checks a value as [`Builder::dump_value`] does, without keeping it.
    pub(crate) fn check_dump_value(&mut self, line: &Line<'_>, offset: usize, text: &[u8]) -> Result<(), DumpError> {
        self.decode_value(line, offset, text, false, |_| ())
    }

    fn decode_value<R>(
        &mut self,
        line: &Line<'_>,
        offset: usize,
        text: &[u8],
        cut: bool,
        keep: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, DumpError> {
        // Fast path: nothing to unescape. Every byte is looked at, with no branch per byte, so
        // that the loop is vector compares.
        if text.iter().fold(true, |plain, &b| plain & (b.wrapping_sub(b' ') <= b'~' - b' ') & (b != b'\\')) {
            if text.len() > VALUE_MAX {
                return Err(error_at(line, offset, DumpErrorKind::ValueTooLong { len: text.len(), max: VALUE_MAX }));
            }
            return Ok(keep(text));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = escape::decode_dump_value(text, cut, &mut scratch)
            .map(|()| keep(&scratch))
            .map_err(|e| decode_error(line, offset, text, e, DUMP_ESCAPES));
        self.scratch = scratch;
        result
    }

    /// Where a node goes, from its path: left out of the tree when `keep` is set and does not
    /// accept it. Only a line read as it is can be left out (its place in the input is how the
    /// node is found again), only a valid path, and only one needing no base to resolve against.
    /// The path is checked here, once; an invalid one goes to the tree's reader, which says why.
    pub(crate) fn destination<'t>(&self, line: &Line<'_>, path_text: &'t [u8], base: Option<&Path>) -> Destination<'t> {
        let checked = CheckedPath::of_bytes(path_text);
        let (Some(keep), Some(p)) = (self.keep, checked) else { return Destination::Tree(checked) };
        if line.offset.is_none() || self.find_first.is_some() {
            return Destination::Tree(checked);
        }
        if (base.is_none() || p.as_str().starts_with('/')) && !keep(p.as_str()) {
            Destination::LeftOut(p.as_str())
        } else {
            Destination::Tree(checked)
        }
    }

    /// Records a node left out: its line (and, if given, up to `end`, the line it owns) and its
    /// path, `path_len` bytes after `skip`.
    pub(crate) fn leave_out(&mut self, line: &Line<'_>, skip: usize, path_len: usize, end: Option<usize>) {
        let start = line.offset.unwrap_or_default() + skip;
        let end = end.unwrap_or(line.offset.unwrap_or_default() + line.text.len());
        self.left_out.push(LeftNode { start, end, path_len });
    }

    /// Validates a path given as bytes at `offset` of the line.
    pub(crate) fn path(
        &self,
        line: &Line<'_>,
        offset: usize,
        bytes: &[u8],
        base: Option<&Path>,
    ) -> Result<Path, DumpError> {
        self.path_of_text(line, offset, bytes, None, base)
    }

    /// [`Builder::path`], with the bytes already checked as a path if they are one.
    pub(crate) fn path_of_text(
        &self,
        line: &Line<'_>,
        offset: usize,
        bytes: &[u8],
        checked: Option<CheckedPath<'_>>,
        base: Option<&Path>,
    ) -> Result<Path, DumpError> {
        let path = match checked {
            Some(checked) => Path::from_checked(checked),
            None => {
                let s = std::str::from_utf8(bytes).map_err(|e| {
                    let bad = e.valid_up_to();
                    let bad_char = merge_core::xenstore::PathError::BadChar { ch: '\u{fffd}', offset: bad };
                    error_at(line, offset + bad, DumpErrorKind::BadPath(bad_char))
                })?;
                Path::new(s).map_err(|e| path_error(line, offset, e))?
            }
        };
        match base {
            Some(base) if !path.is_absolute() => path.resolve(base).map_err(|e| path_error(line, offset, e)),
            _ => Ok(path),
        }
    }

    /// Adds a node; a path seen before is an error (its first line is found afterwards).
    pub(crate) fn insert(&mut self, line: &Line<'_>, offset: usize, path: Path, node: Node) -> Result<(), DumpError> {
        if let Some((wanted, first)) = &mut self.find_first {
            if first.is_none() && *wanted == path {
                *first = Some(line.no);
            }
            return Ok(());
        }
        if let Some(collected) = &mut self.collected {
            collected.push((path, node));
            return Ok(());
        }
        let name = path.clone();
        if self.tree.insert(path, node).is_some() {
            return Err(error_at(line, offset, DumpErrorKind::DuplicatePath { path: name.to_string(), first_line: 0 }));
        }
        Ok(())
    }
}

/// Where [`Builder::destination`] sends a node.
pub(crate) enum Destination<'t> {
    /// Left out; its path, checked, as text.
    LeftOut(&'t str),
    /// Into the tree; its path, if it is a valid one.
    Tree(Option<CheckedPath<'t>>),
}

/// A node of the input left out of the tree: its lines are `start..end` of the input, its
/// path the first `path_len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeftNode {
    pub start: usize,
    pub end: usize,
    pub path_len: usize,
}

impl LeftNode {
    /// The node's path, as the bytes of `input` it was read from.
    pub(crate) fn path<'a>(&self, input: &'a [u8]) -> &'a [u8] {
        &input[self.start..self.start + self.path_len]
    }

    /// The order of nodes read from `input`: by path.
    pub(crate) fn by_path(input: &[u8]) -> impl Fn(&LeftNode, &LeftNode) -> std::cmp::Ordering + Copy + '_ {
        move |a, b| a.path(input).cmp(b.path(input))
    }
}

pub(crate) fn path_error(line: &Line<'_>, offset: usize, e: merge_core::xenstore::PathError) -> DumpError {
    use merge_core::xenstore::PathError;
    let at = match &e {
        PathError::BadChar { offset, .. } | PathError::EmptyComponent { offset } => *offset,
        PathError::Empty | PathError::TooLong { .. } => 0,
    };
    error_at(line, offset + at, DumpErrorKind::BadPath(e))
}

pub(crate) fn decode_error(
    line: &Line<'_>,
    offset: usize,
    text: &[u8],
    e: DecodeError,
    allowed: &'static str,
) -> DumpError {
    match e {
        DecodeError::BadEscape { offset: at, len } => error_at(
            line,
            offset + at,
            DumpErrorKind::BadEscape {
                escape: String::from_utf8_lossy(&text[at..(at + len).min(text.len())]).into_owned(),
                allowed,
            },
        ),
        DecodeError::RawByte { offset: at, byte } => error_at(line, offset + at, DumpErrorKind::RawByte { byte }),
        DecodeError::TooLong { len } => error_at(line, offset, DumpErrorKind::ValueTooLong { len, max: VALUE_MAX }),
    }
}
