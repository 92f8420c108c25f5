//! The nodes libxl 4.17's retrieve reads (`reconcile::libxl417::reads`) are all it needs: on
//! every generated host (every perturbation kind, driver domains, stub domains), reconciling
//! each domain against only those nodes gives the same outcome as against the whole store:
//! configuration, log lines, decisions and plan. This is what lets the live client fetch a
//! fraction of a host's store under `--policy libxl-4.17`.

#![cfg(feature = "testkit")]

use merge_core::reconcile::{libxl417, reconcile, Inputs, JsonReplica, Policy};
use merge_core::testkit::{host, Generated, HostProfile};
use merge_core::xenstore::Tree;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, FileFailurePersistence};

fn cases() -> u32 {
    std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

fn json_replica(bytes: Option<&Vec<u8>>) -> JsonReplica {
    JsonReplica::from_userdata(bytes.map(Vec::as_slice))
}

/// What a client fetching only what libxl reads holds: the nodes `reads` names, then the
/// subtrees of the record pointers that lead outside them.
fn restricted(tree: &Tree) -> Tree {
    let mut small: Tree =
        tree.iter().filter(|(p, _)| libxl417::reads(p.as_str())).map(|(p, n)| (p.clone(), n.clone())).collect();
    for pointer in libxl417::pointers_outside(&small) {
        let Ok(root) = merge_core::xenstore::Path::new(&pointer) else { continue };
        for (p, n) in tree.subtree(&root) {
            small.insert(p.clone(), n.clone());
        }
    }
    small
}

fn check(g: &Generated) -> Result<(), TestCaseError> {
    let s = &g.scenario;
    let small = restricted(&s.tree);
    prop_assert!(small.len() < s.tree.len(), "the restriction leaves out nothing");
    for &domid in s.host.domains.keys() {
        let json = json_replica(s.userdata.get(&domid));
        let whole = reconcile(Inputs { domid, json: &json, tree: &s.tree, host: &s.host }, Policy::Libxl417);
        let part = reconcile(Inputs { domid, json: &json, tree: &small, host: &s.host }, Policy::Libxl417);
        prop_assert_eq!(&whole.config, &part.config, "domain {}: the configuration differs", domid);
        prop_assert_eq!(whole.stderr_lines(), part.stderr_lines(), "domain {}: the log lines differ", domid);
        prop_assert_eq!(&whole.decisions, &part.decisions, "domain {}: the decisions differ", domid);
        prop_assert_eq!(&whole.plan, &part.plan, "domain {}: the plans differ", domid);
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proptest-regressions/merge-core/libxl417_reads.txt"
        )))),
        ..Config::default()
    })]

    #[test]
    fn the_nodes_libxl_reads_are_enough(g in host(HostProfile::default())) {
        check(&g)?;
    }
}

/// Not vacuous: leaving out a node libxl does read changes the outcome.
#[test]
fn a_node_libxl_reads_is_missed_when_left_out() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let g = host(HostProfile::clean()).new_tree(&mut runner).unwrap().current();
    let s = &g.scenario;
    let domid = *s.host.domains.keys().find(|&&d| d != 0).unwrap();
    let name = merge_core::xenstore::Path::new(&format!("/local/domain/{domid}/name")).unwrap();
    let mut small = restricted(&s.tree);
    small.remove(&name);
    let json = json_replica(s.userdata.get(&domid));
    let whole = reconcile(Inputs { domid, json: &json, tree: &s.tree, host: &s.host }, Policy::Libxl417);
    let part = reconcile(Inputs { domid, json: &json, tree: &small, host: &s.host }, Policy::Libxl417);
    assert_ne!(whole.config, part.config);
    assert!(libxl417::reads(name.as_str()));
    assert!(!libxl417::reads(&format!("/local/domain/{domid}/device/vif/0/state")));
}
