//! The state every format's parser shares: the tree being built, interned permissions,
//! repairs and warnings, and how errors are made.

use super::error::{DumpError, DumpErrorKind, Repair, RepairKind, Warning, WarningKind};
use super::escape::{self, DecodeError, DUMP_ESCAPES, VALUE_MAX};
use super::lines::Line;
use super::perms::PermsInterner;
use merge_core::xenstore::{Node, Path, Perms, Tree};

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
    /// Which nodes go into `tree`; the others go to `left_out`, unchecked for duplicates.
    pub keep: Option<fn(&str) -> bool>,
    pub left_out: Vec<(Path, Node)>,
    /// Set when the nodes kept are collected into `collected`, in input order, instead of
    /// inserted (a part of a dump read on its own thread).
    pub collect: bool,
    pub collected: Vec<(Path, Node)>,
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
            collect: false,
            collected: Vec::new(),
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
        // Fast path: nothing to unescape.
        if text.iter().all(|&b| (b' '..=b'~').contains(&b) && b != b'\\') {
            if text.len() > VALUE_MAX {
                return Err(error_at(line, offset, DumpErrorKind::ValueTooLong { len: text.len(), max: VALUE_MAX }));
            }
            return Ok(Box::from(text));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = escape::decode_dump_value(text, cut, &mut scratch);
        let value = Box::from(&scratch[..]);
        self.scratch = scratch;
        match result {
            Ok(()) => Ok(value),
            Err(e) => Err(decode_error(line, offset, text, e, DUMP_ESCAPES)),
        }
    }

    /// Validates a path given as bytes at `offset` of the line.
    pub(crate) fn path(
        &self,
        line: &Line<'_>,
        offset: usize,
        bytes: &[u8],
        base: Option<&Path>,
    ) -> Result<Path, DumpError> {
        let s = std::str::from_utf8(bytes).map_err(|e| {
            let bad = e.valid_up_to();
            error_at(
                line,
                offset + bad,
                DumpErrorKind::BadPath(merge_core::xenstore::PathError::BadChar { ch: '\u{fffd}', offset: bad }),
            )
        })?;
        let path = Path::new(s).map_err(|e| path_error(line, offset, e))?;
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
        if self.keep.is_some_and(|keep| !keep(path.as_str())) {
            self.left_out.push((path, node));
            return Ok(());
        }
        if self.collect {
            self.collected.push((path, node));
            return Ok(());
        }
        let name = path.clone();
        if self.tree.insert(path, node).is_some() {
            return Err(error_at(line, offset, DumpErrorKind::DuplicatePath { path: name.to_string(), first_line: 0 }));
        }
        Ok(())
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
