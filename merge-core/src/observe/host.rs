//! Host-wide facts that every domain's observation needs, derived once per snapshot.
//!
//! Finding a device's backend means looking in every domain that serves backends, and finding
//! a stub domain means reading every domain's `target`. Done per guest that is quadratic in
//! the number of domains; [`HostShape`] is computed once per [`Tree`] (and shared by its clones,
//! see [`Tree::host_shape`]) so a thousand-domain host costs one pass.

use crate::xenstore::Tree;

/// Which domains serve backends, and which stub domain serves which guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostShape {
    /// Numeric children of `/local/domain` that have a `backend` child, in listing order.
    pub backend_domains: Vec<u32>,
    /// `(stubdom, guest)` for every numeric `/local/domain/<S>` whose `target` reads as a
    /// domid, in listing order.
    pub targets: Vec<(u32, u32)>,
}

impl HostShape {
    pub fn of(tree: &Tree) -> HostShape {
        let mut shape = HostShape::default();
        let mut backend = String::new();
        for name in tree.children_of_str("/local/domain") {
            let Ok(domid) = name.parse::<u32>() else { continue };
            backend.clear();
            backend.push_str("/local/domain/");
            backend.push_str(&name);
            let home_len = backend.len();
            backend.push_str("/target");
            if let Some(target) = super::xs::XsView::new(tree).value(&backend).and_then(|v| v.parse::<u32>().ok()) {
                shape.targets.push((domid, target));
            }
            backend.truncate(home_len);
            backend.push_str("/backend");
            if tree.get_str(&backend).is_some() || !tree.children_of_str(&backend).is_empty() {
                shape.backend_domains.push(domid);
            }
        }
        shape
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xenstore::{Node, Path};

    #[test]
    fn finds_backend_domains_and_stub_targets_and_forgets_them_on_change() {
        let mut t = Tree::new();
        for (p, v) in [
            ("/local/domain/0/backend/vbd/3/51712/state", "4"),
            ("/local/domain/3/name", "guest"),
            ("/local/domain/4/target", "3"),
            ("/local/domain/12/backend/vif/3/0/state", "4"),
            ("/local/domain/x/backend/vif/3/0/state", "4"),
        ] {
            t.insert_with_parents(Path::new(p).unwrap(), Node::new(v.as_bytes().to_vec()), None);
        }
        let shape = t.host_shape().clone();
        // Listing order is byte order: 0, 12, 3, 4.
        assert_eq!(shape.backend_domains, vec![0, 12]);
        assert_eq!(shape.targets, vec![(4, 3)]);
        let clone = t.clone();
        t.insert_with_parents(
            Path::new("/local/domain/3/backend/vbd/9/1/state").unwrap(),
            Node::new(b"4".to_vec()),
            None,
        );
        assert_eq!(t.host_shape().backend_domains, vec![0, 12, 3]);
        assert_eq!(clone.host_shape(), &shape, "a clone keeps the facts of its own nodes");
    }
}
