//! The lossless round trip (law 9): printing a tree with our writers and reading it back gives
//! the same tree, and reading a dump then printing it gives the same bytes. Pure, so it runs
//! many cases; the differential test checks the same writers against the real tools.

use merge_core::xenstore::{Access, Node, Path, Perm, Perms, Tree};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use xs_adapter::dump::{read, write_f, write_fp, write_scenario, Format, ReadOptions};

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_@-]{1,8}"
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..40),
        // Values that look like the end of a line with permissions, or like a separator.
        prop::sample::select(vec![&b"x\"   (n0)"[..], b"\" = \"", b"a\"   (n0,r1)\"", b" ", b"\\...", b"(b5)"])
            .prop_map(<[u8]>::to_vec),
    ]
}

/// Domids that `xenstore-ls` prints whole (an entry of at most 11 characters).
fn perms() -> impl Strategy<Value = Option<Perms>> {
    let access = prop::sample::select(vec![Access::None, Access::Read, Access::Write, Access::Both]);
    let domid = prop_oneof![0u32..100, 0u32..(1 << 31), (u32::MAX - 999_999_998)..=u32::MAX];
    let list = prop::collection::vec((access, domid), 1..4)
        .prop_map(|v| Perms::new(v.into_iter().map(|(access, domid)| Perm { access, domid }).collect()));
    prop_oneof![1 => Just(None), 4 => list]
}

fn node() -> impl Strategy<Value = Node> {
    (value(), perms(), prop::bool::weighted(0.1)).prop_map(|(value, perms, unreadable)| {
        if unreadable {
            Node { value: Box::default(), perms, truncated: false, unreadable: true }
        } else {
            Node::new(value).with_perms(perms)
        }
    })
}

fn tree(absolute: bool) -> impl Strategy<Value = Tree> {
    prop::collection::btree_map(prop::collection::vec(name(), 1..5), node(), 0..30).prop_map(move |m| {
        m.into_iter()
            .map(|(components, node)| {
                let joined = components.join("/");
                let path = if absolute { format!("/{joined}") } else { format!("guest/{joined}") };
                (Path::new(&path).unwrap(), node)
            })
            .collect()
    })
}

fn strip_perms(tree: &Tree) -> Tree {
    tree.iter().map(|(p, n)| (p.clone(), n.clone().with_perms(None))).collect()
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proptest-regressions/xs-adapter/dump_roundtrip.txt"
        )))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fp_round_trips(t in prop_oneof![tree(true), tree(false)]) {
        let dump = write_fp(&t).unwrap();
        prop_assume!(!dump.is_empty());
        let snap = read(&dump, &ReadOptions::default()).map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&dump))))?;
        // Perms decide the format only where some node has them.
        prop_assert!(matches!(snap.format, Format::FlatPerms | Format::Flat));
        if snap.format == Format::FlatPerms {
            prop_assert_eq!(&snap.tree, &t);
        } else {
            prop_assert_eq!(&snap.tree, &strip_perms(&t));
        }
        prop_assert!(snap.repairs.is_empty());
        let fmt = Some(Format::FlatPerms);
        let again = read(&dump, &ReadOptions { format: fmt, ..Default::default() }).unwrap();
        prop_assert_eq!(&again.tree, &t);
        prop_assert_eq!(write_fp(&again.tree).unwrap(), dump.clone());
        // Lenient mode has nothing to repair in a clean dump.
        let lenient = read(&dump, &ReadOptions { lenient: true, format: fmt, ..Default::default() }).unwrap();
        prop_assert_eq!(&lenient.tree, &t);
        prop_assert!(lenient.repairs.is_empty());
    }

    #[test]
    fn f_and_scenario_round_trip(t in tree(true)) {
        let plain = strip_perms(&t);
        let dump = write_f(&t).unwrap();
        let snap = read(&dump, &ReadOptions { format: Some(Format::Flat), ..Default::default() }).unwrap();
        prop_assert_eq!(&snap.tree, &plain);
        prop_assert_eq!(write_f(&snap.tree).unwrap(), dump);
        let readable: Tree = plain.iter().filter(|(_, n)| !n.unreadable).map(|(p, n)| (p.clone(), n.clone())).collect();
        let scenario = write_scenario(&readable).unwrap();
        let back = read(&scenario, &ReadOptions { format: Some(Format::Scenario), ..Default::default() }).unwrap();
        prop_assert_eq!(&back.tree, &readable);
        prop_assert_eq!(write_scenario(&back.tree).unwrap(), scenario);
    }
}

#[test]
fn a_dump_of_only_unreadable_nodes_is_still_detected() {
    let mut t = Tree::new();
    let node = Node { value: Box::default(), perms: Perms::parse("n0,r1"), truncated: false, unreadable: true };
    t.insert(Path::new("/a").unwrap(), node);
    let dump = write_fp(&t).unwrap();
    assert_eq!(dump, b"/a:\n  (n0,r1)\n");
    let snap = read(&dump, &ReadOptions::default()).unwrap();
    assert_eq!(snap.format, Format::FlatPerms);
    assert_eq!(snap.tree, t);
    let snap = read(b"a:\n  (n0,r1)\n", &ReadOptions::default()).unwrap();
    assert_eq!(snap.format, Format::TreePerms);
    let snap = read(b"/a:\n\n", &ReadOptions::default()).unwrap();
    assert_eq!(snap.format, Format::Flat);
}
