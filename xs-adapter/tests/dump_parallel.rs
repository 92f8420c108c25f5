//! A strict `-f`/`-fp` dump of a few megabytes read keeping only some nodes (`dump::read_kept`)
//! is read in parts on several threads (`dump::parallel`). Reading it so must give exactly what
//! one thread gives: the same nodes, the same warnings with their line numbers, and the same
//! first error.

use merge_core::xenstore::{Node, Path, Perms, Tree};
use xs_adapter::dump::{self, DumpError, DumpErrorKind, ReadOptions, Snapshot, WarningKind};

/// Every node but the `k3` values, and all the rest of each domain.
fn keep(path: &str) -> bool {
    !path.ends_with("/k3")
}

/// The dump read keeping only some nodes, as one tree again.
fn read_in_parts(bytes: &[u8]) -> Result<Snapshot, DumpError> {
    let kept = dump::read_kept(bytes, &ReadOptions::default(), keep)?;
    assert!(!kept.left_out.is_empty(), "nothing was left out");
    let mut snapshot = kept.snapshot;
    for (p, n) in kept.left_out.to_tree().unwrap().iter() {
        assert!(snapshot.tree.insert(p.clone(), n.clone()).is_none(), "{p} is both kept and left out");
    }
    Ok(snapshot)
}

/// A host of 2,000 domains of 20 values each (over 2 MiB as `-fp`), with an unreadable node
/// and a node whose permissions could not be read in the middle, where the dump is cut.
fn large_tree() -> Tree {
    let perms = Perms::parse("n0,r1");
    let mut tree = Tree::new();
    for d in 0..2000 {
        for k in 0..20 {
            let path = Path::new(&format!("/local/domain/{d}/data/k{k}")).unwrap();
            let node = Node::new(format!("value\t{d}-{k}\\").into_bytes()).with_perms(perms.clone());
            tree.insert_with_parents(path, node, perms.clone());
        }
    }
    let hidden = Node { value: Box::default(), perms: perms.clone(), truncated: false, unreadable: true };
    tree.insert(Path::new("/local/domain/1000/data/hidden").unwrap(), hidden);
    tree.insert(Path::new("/local/domain/1000/data/no-perms").unwrap(), Node::new(b"x".to_vec()));
    tree
}

/// The 1-based number of the line that starts with `prefix`.
fn line_of(bytes: &[u8], prefix: &str) -> usize {
    let text = std::str::from_utf8(bytes).unwrap();
    text.lines().position(|l| l.starts_with(prefix)).unwrap() + 1
}

#[test]
fn a_large_dump_read_in_parts_is_the_dump() {
    let tree = large_tree();
    let bytes = dump::write_fp(&tree).unwrap();
    assert!(bytes.len() > 2 << 20, "{} bytes is too small to be cut", bytes.len());
    let read = read_in_parts(&bytes).unwrap();
    assert!(read.tree == tree);
    let no_perms = line_of(&bytes, "/local/domain/1000/data/no-perms ");
    let warnings: Vec<_> = read.warnings.iter().map(|w| (w.line, w.kind.clone())).collect();
    assert_eq!(
        warnings,
        vec![(no_perms, WarningKind::PermsUnreadable { path: "/local/domain/1000/data/no-perms".into() })]
    );
    // Read as a -f dump too.
    let bytes = dump::write_f(&tree).unwrap();
    let read = read_in_parts(&bytes).unwrap();
    let without_perms: Tree = tree.iter().map(|(p, n)| (p.clone(), n.clone().with_perms(None))).collect();
    assert!(read.tree == without_perms);
}

#[test]
fn the_first_error_of_a_large_dump_is_reported_with_its_line() {
    let bytes = dump::write_fp(&large_tree()).unwrap();
    // A bad path late in the dump, then one a little earlier: the earlier is reported.
    let late = line_of(&bytes, "/local/domain/1990/data/k3 ");
    let early = line_of(&bytes, "/local/domain/1500/data/k3 ");
    let text = String::from_utf8(bytes).unwrap();
    let broken: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| if i + 1 == late || i + 1 == early { l.replacen("/data/", "/da ta/", 1) } else { l.to_string() })
        .collect();
    let broken = broken.join("\n") + "\n";
    let e = read_in_parts(broken.as_bytes()).unwrap_err();
    assert_eq!(e, dump::read(broken.as_bytes(), &ReadOptions::default()).unwrap_err());
    assert_eq!(e.line, early, "{e}");
    assert!(matches!(e.kind, DumpErrorKind::BadPath(_)), "{e}");

    // A duplicate of a node of the first part at the very end names both lines, whether it is
    // kept or left out.
    for node in ["/local/domain/10/data/k3 ", "/local/domain/10/data/k1 "] {
        let first = line_of(text.as_bytes(), node);
        let copy = text.lines().nth(first - 1).unwrap().to_string();
        let duplicated = format!("{text}{copy}\n");
        let e = read_in_parts(duplicated.as_bytes()).unwrap_err();
        assert_eq!(e.line, text.lines().count() + 1, "{e}");
        assert!(matches!(e.kind, DumpErrorKind::DuplicatePath { first_line, .. } if first_line == first), "{e}");
    }
}
