//! What can go wrong reading or writing a dump, and what lenient mode changed on the way.

use super::Format;
use merge_core::xenstore::PathError;
use std::fmt;

/// A dump that cannot be read, with the place: 1-based line and byte column of the original
/// input (before any lenient repair), and an excerpt of the offending line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpError {
    /// 1-based line number in the input.
    pub line: usize,
    /// 1-based byte column in that line.
    pub column: usize,
    /// The offending line (lossy UTF-8), cut to a readable length around `column`.
    pub text: String,
    /// What is wrong.
    pub kind: DumpErrorKind,
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {} (in {:?})", self.line, self.column, self.kind, self.text)
    }
}

impl std::error::Error for DumpError {}

/// The reason a dump was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DumpErrorKind {
    #[error("empty dump: there is no line to detect the format from (pass an explicit format)")]
    Empty,
    #[error("not a line of any xenstore-ls format or of a path=value scenario")]
    NotADumpLine,
    #[error("invalid xenstore path: {0}")]
    BadPath(PathError),
    #[error("expected {expected} here")]
    Expected { expected: &'static str },
    #[error("the value has no closing '\"'")]
    UnterminatedValue,
    #[error("bad escape {escape:?} in a value ({allowed})")]
    BadEscape { escape: String, allowed: &'static str },
    #[error("raw byte 0x{byte:02x} in a value, which xenstore-ls would have escaped")]
    RawByte { byte: u8 },
    #[error("value is at least {len} bytes, more than xenstore's {max}-byte payload limit")]
    ValueTooLong { len: usize, max: usize },
    #[error("bad permission list {perms:?} (expected letters n/r/w/b each followed by a domid)")]
    BadPerms { perms: String },
    #[error("{found}, but this dump is in the {format} format ({})", decided_by(*.decided_at))]
    FormatMismatch { format: Format, found: &'static str, decided_at: usize },
    #[error("path {path} appears twice (first at line {first_line})")]
    DuplicatePath { path: String, first_line: usize },
    #[error("indentation of {indent} spaces does not fit the tree ({expected})")]
    BadIndent { indent: usize, expected: String },
    #[error("blank line, which xenstore-ls prints only after an unreadable node")]
    BlankLine,
    #[error("missing the line xenstore-ls prints after an unreadable node (a blank line or its permissions)")]
    MissingAfterUnreadable,
    #[error("permission line with no unreadable node before it")]
    StrayPerms,
    #[error("{spaces} spaces before the permissions where xenstore-ls prints {expected}")]
    PermsSpacing { spaces: usize, expected: usize },
    #[error("the `. . .` padding before the permissions is not the one xenstore-ls prints")]
    Padding,
    #[error("trailing whitespace")]
    TrailingSpace,
    #[error("carriage return (the dump has Windows line ends)")]
    CarriageReturn,
    #[error("node name is empty: xenstore-ls cut it to nothing at column {width}, so the path is lost")]
    EmptyName { width: usize },
}

fn decided_by(line: usize) -> String {
    if line == 0 {
        "as given".to_string()
    } else {
        format!("detected from line {line}")
    }
}

/// One change lenient mode made to the input before reading it. The line is the 1-based
/// line of the original input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    pub line: usize,
    pub kind: RepairKind,
}

/// What lenient mode repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairKind {
    /// A `\r` before the line end was dropped.
    CarriageReturn,
    /// A mail quote prefix (`> `, `> >> `) was stripped.
    QuotePrefix { prefix: String },
    /// A pastebin line marker (`- `, `  12. `) was stripped.
    LineNumber { prefix: String },
    /// A shell prompt or command line was dropped.
    PromptLine { text: String },
    /// A diagnostic that `xenstore-ls` wrote to stderr, mixed into the dump, was dropped.
    StderrLine { text: String },
    /// A `format=flowed` soft break (a trailing space, then a newline) was undone by joining
    /// this line with the next one.
    FlowedWrap,
    /// A blank line was skipped.
    BlankLine,
    /// Trailing whitespace was dropped.
    TrailingSpace,
    /// Leading whitespace of a flat line was dropped.
    LeadingSpace,
    /// The permissions were separated by `spaces` spaces instead of xenstore-ls's own.
    PermsSpacing { spaces: usize },
    /// The `. . .` padding of a tree `-p` line was not xenstore-ls's.
    Padding,
    /// Every line of the tree is indented by `indent` more spaces than xenstore-ls prints;
    /// depths are taken relative to it.
    BaseIndent { indent: usize },
    /// A line is indented by `indent` spaces where xenstore-ls would have printed `expected`;
    /// it was placed by comparing it with the lines above.
    IndentStep { indent: usize, expected: usize },
    /// The blank line xenstore-ls prints after an unreadable node was missing.
    MissingAfterUnreadable,
    /// A scenario value used an escape that `xenstore-write` accepts but does not print
    /// canonically (`\9`, `\x4`, a trailing `\`); it was decoded exactly as `xenstore-write`
    /// decodes it.
    WriteEscape { escape: String },
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.kind {
            RepairKind::CarriageReturn => write!(f, "dropped a carriage return"),
            RepairKind::QuotePrefix { prefix } => write!(f, "stripped the mail quote prefix {prefix:?}"),
            RepairKind::LineNumber { prefix } => write!(f, "stripped the pastebin line marker {prefix:?}"),
            RepairKind::PromptLine { text } => write!(f, "dropped the shell prompt line {text:?}"),
            RepairKind::StderrLine { text } => write!(f, "dropped the stderr line {text:?}"),
            RepairKind::FlowedWrap => write!(f, "joined a flowed (soft-wrapped) line with the next line"),
            RepairKind::BlankLine => write!(f, "skipped a blank line"),
            RepairKind::TrailingSpace => write!(f, "dropped trailing whitespace"),
            RepairKind::LeadingSpace => write!(f, "dropped leading whitespace"),
            RepairKind::PermsSpacing { spaces } => write!(f, "accepted {spaces} spaces before the permissions"),
            RepairKind::Padding => write!(f, "accepted irregular `. . .` padding"),
            RepairKind::BaseIndent { indent } => {
                write!(f, "took {indent} leading spaces as the tree's base indentation")
            }
            RepairKind::IndentStep { indent, expected } => {
                write!(f, "placed a line indented {indent} spaces where {expected} were expected")
            }
            RepairKind::MissingAfterUnreadable => write!(f, "accepted an unreadable node without the line after it"),
            RepairKind::WriteEscape { escape } => write!(f, "decoded {escape:?} as xenstore-write does"),
        }
    }
}

/// Something true of the dump that a reader should know, though the dump was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub kind: WarningKind,
}

/// What the warning is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarningKind {
    /// xenstore-ls could not read the node's permissions; the node has none.
    PermsUnreadable { path: String },
    /// xenstore-ls gave up here (`xs_directory` failed), so the rest of the listing is missing.
    ListingAborted { message: String },
    /// The name reaches the tree format's cut column, so xenstore-ls may have cut it; the path
    /// of this node and of everything below it may be wrong.
    NameMayBeCut { path: String },
    /// A value that ends in `\...` exactly at the cut column: it was taken as truncated, though
    /// a complete value ending in a literal `\...` prints the same line.
    AmbiguousTruncation { path: String },
    /// Relative tree names were resolved against the path on the command line of the prompt.
    BaseFromCommand { base: String },
    /// The command line pipes the listing through a filter, so the dump is partial.
    FilteredListing { command: String },
    /// A value is longer than the tree format's width allows uncut; the dump was made at
    /// another width than the one assumed.
    WiderThanWidth { path: String, width: usize },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.kind {
            WarningKind::PermsUnreadable { path } => write!(f, "permissions of {path} were unreadable"),
            WarningKind::ListingAborted { message } => write!(f, "the listing stopped early: {message}"),
            WarningKind::NameMayBeCut { path } => write!(f, "the name of {path} may have been cut by xenstore-ls"),
            WarningKind::AmbiguousTruncation { path } => {
                write!(f, "the value of {path} was taken as cut, though it may end in a literal \\...")
            }
            WarningKind::BaseFromCommand { base } => {
                write!(f, "tree names resolved against {base} from the command line")
            }
            WarningKind::FilteredListing { command } => {
                write!(f, "the listing was filtered ({command}), so it is partial")
            }
            WarningKind::WiderThanWidth { path, width } => {
                write!(f, "the value of {path} is wider than the assumed width {width}")
            }
        }
    }
}

/// Why a tree cannot be written in the asked format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("the value of {path} is truncated, so its real value is unknown and cannot be written")]
    Truncated { path: String },
    #[error("the value of {path} was unreadable, which the scenario format cannot express")]
    Unreadable { path: String },
}
