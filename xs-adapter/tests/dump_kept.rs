//! Reading a dump with only some nodes in its tree (`dump::read_kept`), and the CLI's use of it
//! under `--policy libxl-4.17` (`read_dump_for`): the kept tree and the nodes left out are
//! together the whole dump, errors are `dump::read`'s, and every domain's outcome is the one
//! the whole store gives.

use merge_core::reconcile::{reconcile, Inputs, JsonReplica, Policy};
use merge_core::testkit::{host, HostProfile};
use merge_core::xenstore::{Node, Path, Tree};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use xs_adapter::cli::inputs::{read_dump, read_dump_for};
use xs_adapter::dump::{self, ReadOptions};
use xs_adapter::live::in_libxl417_scope;

fn cases() -> u32 {
    std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(100)
}

fn kept_or_panic(bytes: &[u8]) -> dump::Kept<'_> {
    dump::read_kept(bytes, &ReadOptions::default(), in_libxl417_scope).expect("the dump reads")
}

/// The kept tree and the nodes left out, as one tree.
fn union(kept: &dump::Kept<'_>) -> Tree {
    let mut all = kept.snapshot.tree.clone();
    for (p, n) in kept.left_out.to_tree().unwrap().iter() {
        assert!(all.insert(p.clone(), n.clone()).is_none(), "{p} is both kept and left out");
    }
    all
}

proptest! {
    #![proptest_config(Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proptest-regressions/xs-adapter/dump_kept.txt"
        )))),
        ..Config::default()
    })]

    /// On every generated host: the split is by the predicate and loses nothing, and the tree
    /// the CLI reconciles against gives each domain the whole store's outcome.
    #[test]
    fn a_kept_read_loses_nothing_and_changes_no_outcome(g in host(HostProfile::default())) {
        let s = &g.scenario;
        let bytes = dump::write_fp(&s.tree).unwrap();
        let whole = dump::read(&bytes, &ReadOptions::default()).unwrap().tree;
        let kept = kept_or_panic(&bytes);
        prop_assert!(kept.snapshot.tree.iter().all(|(p, _)| in_libxl417_scope(p.as_str())));
        prop_assert!(kept.left_out.paths().all(|p| !in_libxl417_scope(p)));
        let paths: Vec<&str> = kept.left_out.paths().collect();
        prop_assert!(paths.windows(2).all(|w| w[0] < w[1]), "left out nodes are sorted and unique");
        prop_assert_eq!(paths.len(), kept.left_out.len());
        prop_assert!(union(&kept) == whole, "kept and left out are the whole dump");

        let read = read_dump_for(&bytes, "host.fp", false, Policy::Libxl417).unwrap();
        for &domid in s.host.domains.keys() {
            let json = JsonReplica::from_userdata(s.userdata.get(&domid).map(Vec::as_slice));
            let want = reconcile(Inputs { domid, json: &json, tree: &whole, host: &s.host }, Policy::Libxl417);
            let got = reconcile(Inputs { domid, json: &json, tree: &read, host: &s.host }, Policy::Libxl417);
            prop_assert_eq!(&got.config, &want.config, "domain {}: the configuration differs", domid);
            prop_assert_eq!(got.stderr_lines(), want.stderr_lines(), "domain {}: the log lines differ", domid);
            prop_assert_eq!(&got.decisions, &want.decisions, "domain {}: the decisions differ", domid);
        }
    }
}

/// A small host: dom0 with a vbd backend, guest 3, and guest 3's `/libxl` record.
const HOST: &str = "\
/local = \"\"
/local/domain = \"\"
/local/domain/0 = \"\"
/local/domain/0/backend = \"\"
/local/domain/0/backend/vbd = \"\"
/local/domain/0/backend/vbd/3 = \"\"
/local/domain/0/backend/vbd/3/51712 = \"\"
/local/domain/0/backend/vbd/3/51712/state = \"4\"
/local/domain/0/name = \"Domain-0\"
/local/domain/3 = \"\"
/local/domain/3/name = \"guest\"
/local/domain/3/vm = \"/vm/5607ddcf-cb83-46ea-a6be-887da486ca20\"
/libxl = \"\"
/libxl/3 = \"\"
/libxl/3/type = \"pv\"
";

#[test]
fn a_duplicate_among_the_nodes_left_out_is_reads_error() {
    let bytes = format!("{HOST}/local/domain/0/backend/vbd/3/51712/state = \"5\"\n");
    let want = dump::read(bytes.as_bytes(), &ReadOptions::default()).unwrap_err();
    let got = dump::read_kept(bytes.as_bytes(), &ReadOptions::default(), in_libxl417_scope).unwrap_err();
    assert_eq!(got, want);
    assert!(matches!(want.kind, dump::DumpErrorKind::DuplicatePath { first_line: 8, .. }), "{want}");
}

#[test]
fn a_bad_line_among_the_nodes_left_out_is_reads_error() {
    let bytes = HOST
        .replace("/local/domain/0/backend/vbd/3/51712/state = \"4\"", "/local/domain/0/backend/vbd/3//state = \"4\"");
    let want = dump::read(bytes.as_bytes(), &ReadOptions::default()).unwrap_err();
    let got = dump::read_kept(bytes.as_bytes(), &ReadOptions::default(), in_libxl417_scope).unwrap_err();
    assert_eq!(got, want);
    assert_eq!(want.line, 8);
}

#[test]
fn the_subtree_a_damaged_record_points_to_is_brought_back() {
    // A vtpm record whose backend points under dom0's vbd backends, which libxl does not
    // otherwise read: libxl follows it, so the tree must hold that subtree.
    let bytes = format!(
        "{HOST}/libxl/3/device = \"\"
/libxl/3/device/vtpm = \"\"
/libxl/3/device/vtpm/0 = \"\"
/libxl/3/device/vtpm/0/backend = \"/local/domain/0/backend/vbd/3\"
"
    );
    let kept = kept_or_panic(bytes.as_bytes());
    let state = Path::new("/local/domain/0/backend/vbd/3/51712/state").unwrap();
    assert!(!kept.snapshot.tree.contains(&state), "the backend is left out of the kept tree");
    let read = read_dump_for(bytes.as_bytes(), "host.fp", false, Policy::Libxl417).unwrap();
    assert_eq!(read.get(&state), Some(&Node::new(b"4".to_vec())));
    assert!(read.contains(&Path::new("/local/domain/0/backend/vbd/3").unwrap()), "the pointed-to node itself");
    assert!(!read.contains(&Path::new("/local/domain/0/backend/vbd").unwrap()), "nothing above it");
}

#[test]
fn a_domain_known_only_by_nodes_left_out_keeps_the_whole_dump() {
    // Guest 7 has no home line and only a device node, which libxl does not read: were it left
    // out, `--all` would not find guest 7.
    let bytes = format!("{HOST}/local/domain/7/device/vbd/51712/state = \"4\"\n");
    let whole = read_dump(bytes.as_bytes(), "host.fp", false).unwrap();
    let read = read_dump_for(bytes.as_bytes(), "host.fp", false, Policy::Libxl417).unwrap();
    assert!(read == whole);
    assert_eq!(xs_adapter::cli::inputs::guest_domids(&read), vec![3, 7]);
    // So too for guest 30, whose nodes sort right after guest 3's, which are left out too.
    let bytes = format!(
        "{HOST}/local/domain/3/device/vbd/51712/state = \"4\"\n/local/domain/30/device/vbd/51712/state = \"4\"\n"
    );
    let read = read_dump_for(bytes.as_bytes(), "host.fp", false, Policy::Libxl417).unwrap();
    assert!(read == read_dump(bytes.as_bytes(), "host.fp", false).unwrap());
    assert_eq!(xs_adapter::cli::inputs::guest_domids(&read), vec![3, 30]);
    // Without it, the tree is the part libxl reads.
    let read = read_dump_for(HOST.as_bytes(), "host.fp", false, Policy::Libxl417).unwrap();
    assert!(read.len() < read_dump(HOST.as_bytes(), "host.fp", false).unwrap().len());
}

#[test]
fn no_loss_reads_the_whole_dump() {
    let whole = read_dump(HOST.as_bytes(), "host.fp", false).unwrap();
    assert!(read_dump_for(HOST.as_bytes(), "host.fp", false, Policy::NoLoss).unwrap() == whole);
}

#[test]
fn nodes_left_out_are_read_again_as_they_were() {
    // An unreadable node with its permissions line, one with a blank line, a value whose
    // permissions were unreadable, and an escaped value: all left out, all read back exactly.
    let bytes = format!(
        "{}/local/domain/0/backend/vbd/3/51712/hidden:\n  (n0)\n/local/domain/0/backend/vbd/3/51712/gone:\n\n\
         /local/domain/0/backend/vbd/3/51712/odd = \"a\\tb\\\\c\" \n",
        HOST.lines().map(|l| format!("{l}   (n0)\n")).collect::<String>()
    );
    let whole = dump::read(bytes.as_bytes(), &ReadOptions::default()).unwrap();
    let kept = kept_or_panic(bytes.as_bytes());
    assert_eq!(kept.snapshot.warnings, whole.warnings, "the warning of a node left out is kept");
    assert!(union(&kept) == whole.tree);
    let root = Path::new("/local/domain/0/backend/vbd/3/51712").unwrap();
    let sub = kept.left_out.subtree(&root).unwrap();
    assert_eq!(sub.len(), 5, "the device, its state and the three nodes above");
    assert!(sub.iter().all(|(p, n)| whole.tree.get(p) == Some(n)));
    assert_eq!(kept.left_out.subtree(&Path::root()).unwrap(), kept.left_out.to_tree().unwrap());
}
