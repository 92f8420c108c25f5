//! Printing a tree as `xenstore-ls -f` and `-fp` print a live store.

use super::error::WriteError;
use super::escape::escape_value_into;
use super::perms::format_perms_into;
use merge_core::xenstore::{Node, Path, Tree};
use std::cmp::Ordering;

/// Compares paths component by component, as a depth-first walk visits them: a node comes
/// right before its own subtree (`/a/b`, `/a/b/x`, `/a/b-c`), which plain byte order does not
/// give because `-` sorts before `/`.
pub(crate) fn dfs_cmp(a: &str, b: &str) -> Ordering {
    let key = |c: u8| if c == b'/' { 0 } else { c };
    a.bytes().map(key).cmp(b.bytes().map(key))
}

/// Every node but the root `/`, in depth-first order with siblings sorted by name.
pub(crate) fn dfs_order(tree: &Tree) -> Vec<(&Path, &Node)> {
    let mut nodes: Vec<(&Path, &Node)> = tree.iter().filter(|(p, _)| !p.is_root()).collect();
    // Byte order is depth-first order except where a `-` meets a `/`; skip the sort when the
    // tree has no such pair of neighbours.
    if nodes.windows(2).any(|w| dfs_cmp(w[0].0.as_str(), w[1].0.as_str()) == Ordering::Greater) {
        nodes.sort_by(|a, b| dfs_cmp(a.0.as_str(), b.0.as_str()));
    }
    nodes
}

fn write_flat(tree: &Tree, with_perms: bool) -> Result<Vec<u8>, WriteError> {
    let mut out = Vec::new();
    for (path, node) in dfs_order(tree) {
        if node.truncated {
            return Err(WriteError::Truncated { path: path.to_string() });
        }
        out.extend_from_slice(path.as_str().as_bytes());
        if node.unreadable {
            // `do_ls` prints ":\n", then the permissions line or a bare newline.
            out.extend_from_slice(b":\n");
            match (&node.perms, with_perms) {
                (Some(perms), true) => {
                    out.extend_from_slice(b"  (");
                    format_perms_into(&mut out, perms);
                    out.extend_from_slice(b")\n");
                }
                _ => out.push(b'\n'),
            }
            continue;
        }
        out.extend_from_slice(b" = \"");
        escape_value_into(&mut out, &node.value);
        out.push(b'"');
        if with_perms {
            out.push(b' ');
            // Without permissions the line ends here, as when xenstore-ls cannot read them.
            if let Some(perms) = &node.perms {
                out.extend_from_slice(b"  (");
                format_perms_into(&mut out, perms);
                out.push(b')');
            }
        }
        out.push(b'\n');
    }
    Ok(out)
}

/// Prints `tree` exactly as `xenstore-ls -fp` prints the same nodes of a live store:
/// `<path> = "<escaped value>"   (<perms>)` per node, in depth-first order with siblings
/// sorted by name (the daemon lists them in creation order, which a tree does not keep). A node
/// without permissions ends in `" `, as when xenstore-ls cannot read them; an unreadable node
/// prints as `<path>:` and then its permissions line or a blank line. The root `/` is never
/// printed (xenstore-ls does not print its start node). A truncated node is an error: its
/// value is unknown.
pub fn write_fp(tree: &Tree) -> Result<Vec<u8>, WriteError> {
    write_flat(tree, true)
}

/// Prints `tree` exactly as `xenstore-ls -f` would: as [`write_fp`] without permissions.
pub fn write_f(tree: &Tree) -> Result<Vec<u8>, WriteError> {
    write_flat(tree, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_first_order() {
        let mut v = vec!["/a/b-c", "/a/b/x", "/a/b", "/a", "/a-", "/a/b/x-y", "/a/b/x/z"];
        v.sort_by(|a, b| dfs_cmp(a, b));
        assert_eq!(v, vec!["/a", "/a/b", "/a/b/x", "/a/b/x/z", "/a/b/x-y", "/a/b-c", "/a-"]);
    }
}
