//! Reading a snapshot the way a xenstore client (libxl) reads the live store.

use crate::libxl_log;
use crate::xenstore::{Path, Tree};

/// The outcome of one `xs_read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// The value as C code sees it: up to the first NUL byte, invalid UTF-8 replaced.
    Value(String),
    /// ENOENT.
    Absent,
    /// Any other failure, with its `strerror` text: EINVAL for an invalid path, EACCES for a
    /// node the snapshot could not read, and a value the snapshot only holds in part.
    Error(&'static str),
}

/// What a truncated dump value reads as: the snapshot does not know it.
pub const VALUE_TRUNCATED: &str = "value unknown (truncated in the snapshot)";

/// A read-only client view of a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct XsView<'a> {
    pub tree: &'a Tree,
}

impl<'a> XsView<'a> {
    pub fn new(tree: &'a Tree) -> XsView<'a> {
        XsView { tree }
    }

    pub fn read(&self, path: &str) -> Read {
        let Ok(p) = Path::new(path) else {
            return Read::Error(libxl_log::EINVAL);
        };
        match self.tree.get(&p) {
            Some(n) if n.unreadable => Read::Error(libxl_log::EACCES),
            Some(n) if n.truncated => Read::Error(VALUE_TRUNCATED),
            Some(n) => {
                let bytes = n.value.split(|b| *b == 0).next().unwrap_or(&[]);
                Read::Value(String::from_utf8_lossy(bytes).into_owned())
            }
            // A directory that a partial dump only implies still exists in the store.
            None if p.is_absolute() && self.tree.has_descendants(&p) => Read::Value(String::new()),
            None => Read::Absent,
        }
    }

    /// The value, if readable.
    pub fn value(&self, path: &str) -> Option<String> {
        match self.read(path) {
            Read::Value(v) => Some(v),
            _ => None,
        }
    }

    /// `xs_directory`: child names (sorted; the daemon would give creation order), empty when
    /// the path is absent or invalid.
    pub fn directory(&self, path: &str) -> Vec<String> {
        match Path::new(path) {
            Ok(p) => self.tree.children(&p),
            Err(_) => Vec::new(),
        }
    }
}
