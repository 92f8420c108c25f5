//! Reading a snapshot the way a xenstore client (libxl) reads the live store.

use crate::libxl_log;
use crate::xenstore::{concat, Decimal, Node, Path, Tree, Window};

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
    /// Where most reads of one domain land, searched in place of the whole tree
    /// ([`XsView::for_domain`]); the answers are the tree's either way.
    windows: [Option<Window<'a>>; 2],
}

impl<'a> XsView<'a> {
    pub fn new(tree: &'a Tree) -> XsView<'a> {
        XsView { tree, windows: [None, None] }
    }

    /// A view for reading one domain's configuration: reads below its home
    /// (`/local/domain/<domid>`) and its `/libxl/<domid>` directory search only those
    /// directories' nodes ([`Window`]).
    pub fn for_domain(tree: &'a Tree, domid: u32) -> XsView<'a> {
        let d = Decimal::of(domid);
        let home = tree.window(&concat(&["/local/domain/", d.as_str(), "/"]));
        let libxl = tree.window(&concat(&["/libxl/", d.as_str(), "/"]));
        XsView { tree, windows: [home, libxl] }
    }

    pub fn read(&self, path: &str) -> Read {
        // The common case, a valid path that is present, needs no validation or allocation.
        match self.tree.get_str_in(&self.windows, path) {
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

    /// `path` itself (if present) and every node below it, sorted.
    pub fn subtree(&self, path: &Path) -> impl Iterator<Item = (&'a Path, &'a Node)> + 'a {
        self.tree.subtree_in(&self.windows, path)
    }

    /// Whether the node exists, counting a directory that a partial dump only implies.
    pub fn exists(&self, path: &str) -> bool {
        match Path::new(path) {
            Ok(p) => self.tree.exists_in(&self.windows, &p),
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
        self.tree.children_of_str_in(&self.windows, path)
    }
}
