//! Reading a snapshot the way a xenstore client (libxl) reads the live store.

use crate::libxl_log;
use crate::xenstore::{Node, Path, Tree};

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
        // The common case, a valid path that is present, needs no validation or allocation.
        match self.tree.get_str(path) {
            Some(n) => Self::read_node(n),
            None if Path::new(path).is_err() => Read::Error(libxl_log::EINVAL),
            None => Read::Absent,
        }
    }

    /// What reading a node that is present gives.
    pub fn read_node(node: &Node) -> Read {
        if node.unreadable {
            Read::Error(libxl_log::EACCES)
        } else if node.truncated {
            Read::Error(VALUE_TRUNCATED)
        } else {
            let bytes = node.value.split(|b| *b == 0).next().unwrap_or(&[]);
            Read::Value(String::from_utf8_lossy(bytes).into_owned())
        }
    }

    /// Whether the node exists, counting a directory that a partial dump only implies.
    pub fn exists(&self, path: &str) -> bool {
        match Path::new(path) {
            Ok(p) => self.tree.exists(&p),
            Err(_) => false,
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
        self.tree.children_of_str(path)
    }
}
