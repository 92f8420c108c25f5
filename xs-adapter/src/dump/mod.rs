//! Xenstore snapshots as text: every format `xenstore-ls` prints, and the `path=value`
//! scenario format of the oracle spike, read into a [`merge_core::xenstore::Tree`] and written
//! back.
//!
//! # Formats
//!
//! | [`Format`] | produced by | a line |
//! |---|---|---|
//! | [`Format::Flat`] | `xenstore-ls -f` | `/local/domain/1/name = "guest1"` |
//! | [`Format::FlatPerms`] | `xenstore-ls -fp` | `/local/domain/1/name = "guest1"   (n0,r1)` |
//! | [`Format::Tree`] | `xenstore-ls` | ` name = "guest1"` (one space of indent per level) |
//! | [`Format::TreePerms`] | `xenstore-ls -p` | ` name = "guest1" . . . . .  (n0,r1)` |
//! | [`Format::Scenario`] | `oracle-spike/*/xenstore.txt` | `/local/domain/1/name=guest1` |
//!
//! The exact shapes (escapes, the tree format's cut at 80 columns with its `\...` marker, the
//! `-p` dot padding, unreadable nodes) are those of Xen 4.17's `xenstore-ls`, checked against
//! the real tool; see `shared/spec/xenstore-ls-format.md` and the `flat` and `tree` modules.
//!
//! # Reading
//!
//! [`read`] takes the bytes of a dump and [`ReadOptions`]. The format is detected from the
//! first line that decides it, or given. Whether permissions are present is decided once per
//! dump, never per line, because a value can itself end in `"   (n0)`.
//!
//! **Strict** (the default) accepts exactly what the tools print. Anything else is a
//! [`DumpError`] naming the line, the column and the offending text.
//!
//! **Lenient** first undoes what mail and pastebins do to a dump, and reports each change as
//! a [`Repair`]: quote prefixes (`> `), pastebin line markers (`  12. `, `- `), a shell prompt
//! line at the top or bottom, `xenstore-ls` stderr lines mixed into the output, `format=flowed`
//! soft wraps, blank lines, squeezed spaces before the permissions or in the dot padding, and a
//! tree indented as a whole or by irregular steps. It never guesses a value: a bad escape, an
//! invalid path or a duplicate path is an error in both modes.
//!
//! Relative paths (a dump taken inside a guest, or a tree listing, whose names are relative to
//! the start node) stay relative unless [`ReadOptions::base`] gives the absolute path they are
//! relative to. In lenient mode, a prompt line such as `# xenstore-ls /local/domain/3` supplies
//! the base of a tree listing when none is given.
//!
//! A value that the tree format cut is kept as the printed prefix with
//! [`Node::truncated`](merge_core::xenstore::Node::truncated) set; it is never a real value. A
//! node whose value could not be read (`name:`) has `unreadable` set. Things worth knowing that
//! do not stop reading are [`Warning`]s.
//!
//! # Writing
//!
//! [`write_fp`] and [`write_f`] print a tree exactly as `xenstore-ls -fp` and `-f` print the
//! same store, except that siblings come sorted by name rather than in the daemon's creation
//! order. [`write_scenario`] prints a scenario that `xenstore-write` turns back into the same
//! values. [`escape_value`] is the escaping all of them use.

mod build;
mod error;
mod escape;
mod flat;
mod lines;
mod parallel;
mod perms;
mod scenario;
mod tree;
mod write;

pub use error::{DumpError, DumpErrorKind, Repair, RepairKind, Warning, WarningKind, WriteError};
pub use escape::{escape_value, VALUE_MAX};
pub use perms::format_perms;
pub use scenario::write_scenario;
pub use tree::DEFAULT_WIDTH;
pub use write::{write_f, write_fp};

use build::{error_at, Builder};
use lines::{Command, Line, OwnedLine};
use merge_core::xenstore::{Path, Tree};
use std::fmt;

/// A text format of a xenstore snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `xenstore-ls -f`: full paths, no permissions.
    Flat,
    /// `xenstore-ls -fp`: full paths and permissions.
    FlatPerms,
    /// Plain `xenstore-ls`: an indented tree of names, values cut at the width.
    Tree,
    /// `xenstore-ls -p`: the tree with dot padding and permissions.
    TreePerms,
    /// `path=value` lines, values escaped for `xenstore-write`.
    Scenario,
}

impl Format {
    /// Whether lines carry permission lists.
    pub fn has_perms(self) -> bool {
        matches!(self, Format::FlatPerms | Format::TreePerms)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Flat => "`xenstore-ls -f`",
            Format::FlatPerms => "`xenstore-ls -fp`",
            Format::Tree => "`xenstore-ls` tree",
            Format::TreePerms => "`xenstore-ls -p` tree",
            Format::Scenario => "path=value scenario",
        })
    }
}

/// How to read a dump.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// The format, or `None` to detect it from the dump.
    pub format: Option<Format>,
    /// Repair transport damage (see the module docs) instead of rejecting it.
    pub lenient: bool,
    /// The absolute path that relative paths are relative to: the start node of a tree
    /// listing, or the guest's home (`/local/domain/<domid>`) for a `-f` listing taken inside
    /// a guest. `None` keeps relative paths relative.
    pub base: Option<Path>,
    /// The tree format's width (`max_width` of `xenstore-ls`: 80 when its output was piped,
    /// the terminal width minus 2 on a terminal). `None` infers it from a value that must have
    /// been cut, or takes [`DEFAULT_WIDTH`].
    pub tree_width: Option<usize>,
}

/// A dump that was read.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The nodes. Relative paths stay relative unless a base was given or found.
    pub tree: Tree,
    /// The format the dump was read as.
    pub format: Format,
    /// The base that relative names were resolved against, if any.
    pub base: Option<Path>,
    /// What lenient mode changed, in input order (always empty in strict mode).
    pub repairs: Vec<Repair>,
    /// What the reader noticed without rejecting the dump.
    pub warnings: Vec<Warning>,
}

/// Reads a dump; see the module docs for the formats and the two modes.
///
/// Never panics, whatever the bytes. Every error names the line (1-based), the byte column and
/// the offending text of the original input.
pub fn read(input: &[u8], opts: &ReadOptions) -> Result<Snapshot, DumpError> {
    read_keeping(input, opts, None).map(|(snapshot, _)| snapshot)
}

/// A dump read with only some nodes in its tree: see [`read_kept`].
#[derive(Debug, Clone)]
pub struct Kept<'a> {
    /// The dump, its tree holding only the nodes kept.
    pub snapshot: Snapshot,
    /// Every other node of the dump.
    pub left_out: LeftOut<'a>,
}

/// The nodes of a dump left out of its tree, sorted by path, each path once. They were checked
/// as [`read`] checks every node, but not made: a node is read again from its lines in the input
/// when it is asked for.
#[derive(Debug, Clone)]
pub struct LeftOut<'a> {
    input: &'a [u8],
    format: Format,
    nodes: Vec<build::LeftNode>,
}

impl<'a> LeftOut<'a> {
    fn empty(input: &'a [u8], format: Format) -> LeftOut<'a> {
        LeftOut { input, format, nodes: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn path_of(&self, node: &build::LeftNode) -> &'a str {
        // Checked as UTF-8 when it was read.
        std::str::from_utf8(node.path(self.input)).unwrap_or_default()
    }

    /// Every path, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.nodes.iter().map(|n| self.path_of(n))
    }

    /// Every path as the bytes it was read from (UTF-8), sorted: for a caller that looks at
    /// a few bytes of each of many paths, which [`LeftOut::paths`] would check whole first.
    pub fn path_bytes(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.nodes.iter().map(|n| n.path(self.input))
    }

    /// `root` itself, if left out, and every node left out below it.
    pub fn subtree(&self, root: &Path) -> Result<Tree, DumpError> {
        let root = root.as_str();
        let below = |p: &str| {
            root == "/" && p.starts_with('/')
                || p == root
                || p.len() > root.len() && p.starts_with(root) && p.as_bytes()[root.len()] == b'/'
        };
        // Sorted as bytes, a path's descendants directly follow it and its siblings that sort
        // before `/` (such as `name-x` before `name/`): skip those rather than stop.
        let prefix = if root == "/" { "/" } else { root };
        let from = self.nodes.partition_point(|n| self.path_of(n) < prefix);
        let nodes: Vec<build::LeftNode> = self.nodes[from..]
            .iter()
            .take_while(|n| self.path_of(n).starts_with(prefix))
            .filter(|n| below(self.path_of(n)))
            .copied()
            .collect();
        self.read(&nodes)
    }

    /// Every node left out, as a tree.
    pub fn to_tree(&self) -> Result<Tree, DumpError> {
        self.read(&self.nodes)
    }

    /// Reads `nodes` again from their lines.
    fn read(&self, nodes: &[build::LeftNode]) -> Result<Tree, DumpError> {
        if nodes.is_empty() {
            return Ok(Tree::new());
        }
        let mut lines = Vec::new();
        for n in nodes {
            lines.extend_from_slice(&self.input[n.start..n.end]);
            lines.push(b'\n');
        }
        read(&lines, &ReadOptions { format: Some(self.format), ..ReadOptions::default() }).map(|s| s.tree)
    }
}

/// Reads a dump as [`read`] does, but puts into the tree only the nodes whose path `keep`
/// accepts; the others come back as [`Kept::left_out`]. For a caller that needs a known part of
/// a large store (libxl 4.17's retrieve reads 4 in 10 nodes of a host): making nodes and
/// inserting them into the tree is most of the cost of reading, and the caller can still reach
/// what it did not keep.
///
/// Every line is checked as [`read`] checks it, and on any error the dump is read again by
/// [`read`], so that the error is the one [`read`] reports (the first in the input). Only `-f`
/// and `-fp` lines read in strict mode are left out; any other dump is kept whole.
pub fn read_kept<'a>(input: &'a [u8], opts: &ReadOptions, keep: fn(&str) -> bool) -> Result<Kept<'a>, DumpError> {
    if let Ok((snapshot, nodes)) = read_keeping(input, opts, Some(keep)) {
        return Ok(Kept { left_out: LeftOut { input, format: snapshot.format, nodes }, snapshot });
    }
    read(input, opts).map(|snapshot| {
        let format = snapshot.format;
        Kept { snapshot, left_out: LeftOut::empty(input, format) }
    })
}

/// Sorts `items` by `order`, stably (a dump comes almost sorted, and merging its runs takes few
/// comparisons); whether no two are equal.
fn sort_unique<T>(items: &mut [T], order: impl Fn(&T, &T) -> std::cmp::Ordering) -> bool {
    items.sort_by(&order);
    items.windows(2).all(|w| order(&w[0], &w[1]).is_ne())
}

/// The nodes kept, in a tree, and those left out, sorted by path. A path left out twice makes
/// the whole dump read by [`read`], which reports the duplicate (or, if it finds none, keeps
/// every node).
fn read_keeping(
    input: &[u8],
    opts: &ReadOptions,
    keep: Option<fn(&str) -> bool>,
) -> Result<(Snapshot, Vec<build::LeftNode>), DumpError> {
    let (snapshot, mut left_out) = if opts.lenient {
        let mut repairs = Vec::new();
        let mut warnings = Vec::new();
        let (owned, command) = lines::repair_lines(input, &mut repairs, &mut warnings);
        read_lines(owned.iter().map(OwnedLine::as_line), opts, command, repairs, warnings, keep)?
    } else {
        // Read in parts only when nodes are left out: the parts hand their nodes over in a
        // list, which for a whole dump costs more memory than the tree itself (the 1M-node
        // bench: RSS 3.55x the dump against 2.65x) and saves no time, the inserts being most
        // of it. The parts sort what they leave out.
        if let (Some(keep), true) = (keep, input.len() >= parallel::MIN_INPUT) {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            if let Some(read) = parallel::read_flat(input, opts, keep, threads) {
                return Ok(read);
            }
        }
        read_keeping_on_one_thread(input, opts, keep)?
    };
    if sort_unique(&mut left_out, build::LeftNode::by_path(input)) {
        Ok((snapshot, left_out))
    } else {
        read(input, opts).map(|snapshot| (snapshot, Vec::new()))
    }
}

/// The strict reader on one thread.
fn read_keeping_on_one_thread(
    input: &[u8],
    opts: &ReadOptions,
    keep: Option<fn(&str) -> bool>,
) -> Result<(Snapshot, Vec<build::LeftNode>), DumpError> {
    read_lines(lines::raw_lines(input), opts, None, Vec::new(), Vec::new(), keep)
}

/// The format, from the first line that decides it, and that line's number. A line decides
/// the format when it is `<path>=...` (a scenario) or `<path or name> = "..."` ending in `"`
/// (no permissions) or `)` (permissions). Lines that end otherwise (a `" ` of unreadable
/// permissions, a cut line) only decide it when nothing else does.
fn detect<'a>(lines: impl Iterator<Item = Line<'a>>) -> Option<(Format, usize)> {
    // A value line that ends ambiguously decides before an unreadable node does: `<path>:`
    // with a blank line after it is what both `-f` and `-fp` print when the permissions cannot
    // be read, while `= "<value>" ` (a trailing space) is `-fp`'s alone.
    let mut fallback = None;
    let mut unreadable_fallback = None;
    // `  (<perms>)` after an unreadable node exists only with `-p`.
    let mut perms_lines = false;
    for line in lines {
        let t = line.text.strip_suffix(b"\r").unwrap_or(line.text);
        let lead = t.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        let body = &t[lead..];
        if flat::perms_line(t).is_some() {
            perms_lines = true;
            continue;
        }
        if body.is_empty() || body[0] == b'#' {
            continue;
        }
        let token = &body[..memchr::memchr(b' ', body).unwrap_or(body.len())];
        if lead == 0 && memchr::memchr(b'=', token).is_some_and(|eq| eq > 0) {
            return Some((Format::Scenario, line.no));
        }
        let flat = token.contains(&b'/');
        let after = &body[token.len()..];
        let fallback_format = |perms| match (flat, perms) {
            (true, true) => Format::FlatPerms,
            (true, false) => Format::Flat,
            (false, true) => Format::TreePerms,
            (false, false) => Format::Tree,
        };
        if token.ends_with(b":") && after.is_empty() {
            unreadable_fallback = unreadable_fallback.or(Some((fallback_format(false), line.no)));
            continue;
        }
        if token.is_empty() || !after.starts_with(b" = \"") {
            continue;
        }
        match t.last() {
            Some(b')') => return Some((fallback_format(true), line.no)),
            Some(b'"') => return Some((fallback_format(false), line.no)),
            Some(b' ' | b'.') => fallback = fallback.or(Some((fallback_format(true), line.no))),
            _ => fallback = fallback.or(Some((fallback_format(false), line.no))),
        }
    }
    fallback.or(unreadable_fallback).map(|(format, line)| match (format, perms_lines) {
        (Format::Flat, true) => (Format::FlatPerms, line),
        (Format::Tree, true) => (Format::TreePerms, line),
        _ => (format, line),
    })
}

fn read_lines<'a, I>(
    lines: I,
    opts: &ReadOptions,
    command: Option<Command>,
    repairs: Vec<error::Repair>,
    warnings: Vec<error::Warning>,
    keep: Option<fn(&str) -> bool>,
) -> Result<(Snapshot, Vec<build::LeftNode>), DumpError>
where
    I: Iterator<Item = Line<'a>> + Clone,
{
    let (format, decided_at) = match opts.format {
        Some(f) => (f, 0),
        None => match detect(lines.clone()) {
            Some(found) => found,
            None => {
                let first = lines.clone().find(|l| !l.text.iter().all(|&b| b == b' '));
                return Err(match first {
                    Some(l) => error_at(&l, 0, DumpErrorKind::NotADumpLine),
                    None => DumpError { line: 1, column: 1, text: String::new(), kind: DumpErrorKind::Empty },
                });
            }
        },
    };
    let mut b = Builder::new(opts.lenient);
    b.keep = keep;
    b.repairs = repairs;
    b.warnings = warnings;
    let mut base = opts.base.clone();
    if let Some(cmd) = &command {
        if cmd.filtered {
            b.warnings.push(Warning { line: 1, kind: WarningKind::FilteredListing { command: cmd.text.clone() } });
        }
        let is_tree = matches!(format, Format::Tree | Format::TreePerms);
        if let (None, true, Some(start)) = (&base, is_tree, &cmd.start) {
            let found = if start.is_empty() { Some(Path::root()) } else { Path::new(start).ok() };
            if let Some(found) = found {
                let line =
                    b.repairs.iter().find(|r| matches!(r.kind, RepairKind::PromptLine { .. })).map_or(1, |r| r.line);
                b.warnings.push(Warning { line, kind: WarningKind::BaseFromCommand { base: found.to_string() } });
                base = Some(found);
            }
        }
    }
    let width = match (format, opts.tree_width) {
        (_, Some(w)) => w,
        (Format::Tree | Format::TreePerms, None) => {
            tree::infer_width(lines.clone(), format.has_perms()).unwrap_or(DEFAULT_WIDTH)
        }
        _ => DEFAULT_WIDTH,
    };
    let run = |lines: I, b: &mut Builder| -> Result<(), DumpError> {
        match format {
            Format::Flat | Format::FlatPerms => {
                let o = flat::FlatOptions { perms: format.has_perms(), format, decided_at, base: base.as_ref() };
                flat::parse_flat(lines, &o, b)
            }
            Format::Tree | Format::TreePerms => {
                let o = tree::TreeOptions { perms: format.has_perms(), format, decided_at, base: base.as_ref(), width };
                tree::parse_tree(lines, &o, b)
            }
            Format::Scenario => scenario::parse_scenario(lines, base.as_ref(), b),
        }
    };
    if let Err(mut e) = run(lines.clone(), &mut b) {
        if let DumpErrorKind::DuplicatePath { path, first_line } = &mut e.kind {
            // The tree keeps no line numbers; read again, watching for the path.
            if let Ok(p) = Path::new(path) {
                let mut finder = Builder::finder(opts.lenient, p);
                let _ = run(lines, &mut finder);
                *first_line = finder.found_first().unwrap_or(0);
            }
        }
        return Err(e);
    }
    Ok((Snapshot { tree: b.tree, format, base, repairs: b.repairs, warnings: b.warnings }, b.left_out))
}
