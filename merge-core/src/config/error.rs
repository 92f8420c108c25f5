//! Where a problem is (a JSON path), what it is ([`ConfigError`]), and what was tolerated on
//! the way ([`ParseWarning`]).

use std::borrow::Cow;
use std::fmt;

use serde_json::Value;

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSegment {
    /// A schema's field names are static: pushing one allocates nothing.
    Key(Cow<'static, str>),
    Index(usize),
}

/// A location inside a JSON document, printed the way a person would write it:
/// `disks[1].vdev`, `b_info.type.hvm.vnc.display`, `[0].config.c_info.name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JsonPath(pub Vec<PathSegment>);

impl JsonPath {
    pub fn root() -> JsonPath {
        JsonPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> JsonPath {
        let mut p = self.clone();
        p.0.push(PathSegment::Key(Cow::Owned(key.to_string())));
        p
    }

    pub fn index(&self, index: usize) -> JsonPath {
        let mut p = self.clone();
        p.0.push(PathSegment::Index(index));
        p
    }

    pub fn push_key(&mut self, key: impl Into<Cow<'static, str>>) {
        self.0.push(PathSegment::Key(key.into()));
    }

    pub fn push_index(&mut self, index: usize) {
        self.0.push(PathSegment::Index(index));
    }

    pub fn pop(&mut self) {
        self.0.pop();
    }

    /// Pops the last segment and gives back its key (`None` if it was an index).
    pub(crate) fn take_last_key(&mut self) -> Option<String> {
        match self.0.pop()? {
            PathSegment::Key(k) => Some(k.into_owned()),
            PathSegment::Index(_) => None,
        }
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

/// Keys made of these characters print bare; anything else is quoted (`["a b"]`).
fn is_plain_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document root)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSegment::Index(n) => write!(f, "[{n}]")?,
                PathSegment::Key(k) if is_plain_key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                PathSegment::Key(k) => write!(f, "[{}]", Value::String(k.to_string()))?,
            }
        }
        Ok(())
    }
}

/// How libxl 4.17 itself would end when given a document (see
/// [`crate::config::normalize_libxl_417`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LibxlFailure {
    /// `libxl_domain_config_from_json` returns an error (`ERROR_FAIL`): the caller
    /// (`xl list -l`, retrieve, restore) fails or skips the domain.
    Rejects,
    /// An `assert` in the generated parser fires: the process aborts.
    Aborts,
    /// The C code's behaviour is undefined for this input (reads or writes outside a buffer),
    /// so there is no single answer to reproduce.
    Undefined,
    /// libxl would print something a JSON object model cannot hold (a key twice, a string cut
    /// inside a UTF-8 character).
    Unrepresentable,
}

impl fmt::Display for LibxlFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LibxlFailure::Rejects => "rejects the document",
            LibxlFailure::Aborts => "aborts (assertion failure)",
            LibxlFailure::Undefined => "has undefined behaviour",
            LibxlFailure::Unrepresentable => "prints output this model cannot represent",
        })
    }
}

/// Why a libxl JSON document could not be read, always with its place.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Zero bytes, or only whitespace (libxl: "userdata file is empty").
    #[error("the document is empty")]
    Empty,
    #[error("invalid UTF-8 at line {line}, column {column} (byte offset {offset})")]
    InvalidUtf8 { line: usize, column: usize, offset: usize },
    #[error("JSON syntax error at line {line}, column {column}: {message}")]
    Syntax { line: usize, column: usize, message: String },
    /// A known field holds the wrong kind of JSON value.
    #[error("{path}: expected {expected}, found {found}")]
    Type { path: JsonPath, expected: String, found: String },
    /// An integer outside its C type.
    #[error("{path}: {value} is out of range for {ctype} ({min}..={max})")]
    Range { path: JsonPath, value: String, ctype: &'static str, min: i128, max: i128 },
    /// A value of the right JSON type that is still not valid (a bad UUID, two keyed-union
    /// members, a malformed `xl list -l` element).
    #[error("{path}: {message}")]
    Invalid { path: JsonPath, message: String },
    /// What libxl 4.17 would do instead of producing a configuration.
    #[error("{path}: libxl 4.17 {failure}: {reason}")]
    Libxl { path: JsonPath, failure: LibxlFailure, reason: String },
}

impl ConfigError {
    /// The JSON location, for errors found after the text was read.
    pub fn path(&self) -> Option<&JsonPath> {
        match self {
            ConfigError::Type { path, .. }
            | ConfigError::Range { path, .. }
            | ConfigError::Invalid { path, .. }
            | ConfigError::Libxl { path, .. } => Some(path),
            _ => None,
        }
    }

    pub(crate) fn type_error(path: &JsonPath, expected: &str, found: &Value) -> ConfigError {
        ConfigError::Type { path: path.clone(), expected: expected.to_string(), found: describe(found) }
    }

    pub(crate) fn invalid(path: &JsonPath, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { path: path.clone(), message: message.into() }
    }

    pub(crate) fn libxl(path: &JsonPath, failure: LibxlFailure, reason: impl Into<String>) -> ConfigError {
        ConfigError::Libxl { path: path.clone(), failure, reason: reason.into() }
    }
}

/// Something the reader tolerated, as libxl does, but that a careful caller should see.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ParseWarning {
    /// A key repeated in one object. The first occurrence is kept, as libxl's lookup
    /// (`libxl__json_map_get`) finds the first; later ones are dropped.
    DuplicateKey { path: JsonPath },
    /// An enum spelling libxl 4.17 does not know (kept for forward compatibility; libxl 4.17
    /// itself would reject the document).
    UnknownEnumValue { path: JsonPath, value: String },
    /// Bytes after the first NUL, which libxl never reads (it parses `strlen(data)` bytes).
    BytesAfterNul { count: usize },
}

impl fmt::Display for ParseWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseWarning::DuplicateKey { path } => write!(f, "{path}: duplicate key; the first occurrence is kept"),
            ParseWarning::UnknownEnumValue { path, value } => {
                write!(f, "{path}: {value:?} is not a libxl 4.17 spelling; kept as is")
            }
            ParseWarning::BytesAfterNul { count } => write!(f, "{count} bytes after the NUL terminator are ignored"),
        }
    }
}

/// A short description of a JSON value for messages: scalars as JSON text (long strings cut),
/// containers by kind.
pub fn describe(value: &Value) -> String {
    const MAX: usize = 40;
    match value {
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
        Value::String(s) if s.chars().count() > MAX => {
            let cut: String = s.chars().take(MAX).collect();
            format!("{}…", Value::String(cut))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_like_expressions() {
        let p = JsonPath::root().key("disks").index(1).key("vdev");
        assert_eq!(p.to_string(), "disks[1].vdev");
        let p = JsonPath::root().index(0).key("config").key("b_info").key("type.hvm").key("a b");
        assert_eq!(p.to_string(), "[0].config.b_info.type.hvm[\"a b\"]");
        assert_eq!(JsonPath::root().to_string(), "(document root)");
    }

    #[test]
    fn type_errors_name_place_and_value() {
        let e = ConfigError::type_error(&JsonPath::root().key("disks").index(1).key("vdev"), "a string", &7.into());
        assert_eq!(e.to_string(), "disks[1].vdev: expected a string, found 7");
        let long = Value::String("x".repeat(100));
        assert!(describe(&long).ends_with("…"));
    }
}
