//! The laws of DESIGN.md for the no-loss policy (1–6), as proptests over generated hosts that
//! include every half-baked class the generator can produce (testkit perturbations: JSON-only
//! and xenstore-only devices, closing and closed backends, missing and malformed records,
//! guest frontend writes, duplicates, ejected cdroms, usbdevs, driver-domain backends, missing
//! names, runtime overrides, no userdata…).
//!
//! Case counts are modest by default; `XLSYNC_PROPTEST_CASES` raises them for a dedicated run.

use merge_core::config::{DeviceArray, DomainConfig};
use merge_core::decision::Class;
use merge_core::plan;
use merge_core::reconcile::{reconcile, Inputs, JsonReplica, Outcome, Policy};
use merge_core::rules::disk_devid;
use merge_core::testkit::{host, Generated, HostProfile};
use merge_core::xenstore::{Access, Node, Path, Perm, Perms, Tree};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use std::collections::BTreeSet;

fn config(default_cases: u32, file: &'static str) -> Config {
    let cases = std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default_cases);
    Config { cases, failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))), ..Config::default() }
}

const REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../proptest-regressions/merge-core/laws.txt");

/// The userdata bytes as the JSON replica (the trailing NUL is libxl's).
fn replica(bytes: Option<&Vec<u8>>) -> JsonReplica {
    match bytes {
        None => JsonReplica::Missing,
        Some(b) => {
            let end = b.iter().rposition(|c| *c != 0).map_or(0, |i| i + 1);
            match serde_json::from_slice(&b[..end]) {
                Ok(obj) => JsonReplica::Present(DomainConfig::from_object(obj)),
                Err(e) => JsonReplica::Invalid(e.to_string()),
            }
        }
    }
}

fn run(g: &Generated, domid: u32, json: &JsonReplica, tree: &Tree) -> Outcome {
    reconcile(Inputs { domid, json, tree, host: &g.scenario.host }, Policy::NoLoss)
}

fn guests(g: &Generated) -> Vec<u32> {
    g.guests.iter().map(|s| s.domid).collect()
}

/// Devices of the output, as (array, identity text), for order-free comparison.
fn device_set(c: &DomainConfig) -> BTreeSet<(String, String)> {
    let mut s = BTreeSet::new();
    for a in DeviceArray::ALL {
        for e in c.devices(a) {
            s.insert((a.key().to_string(), e.to_string()));
        }
    }
    s
}

proptest! {
    #![proptest_config(config(48, REGRESSIONS))]

    /// Law 1: the same inputs give byte-identical output, decisions and plan.
    #[test]
    fn deterministic(g in host(HostProfile::default())) {
        for d in guests(&g) {
            let json = replica(g.scenario.userdata.get(&d));
            let a = run(&g, d, &json, &g.scenario.tree);
            let b = run(&g, d, &json, &g.scenario.tree.clone());
            prop_assert_eq!(&a, &b);
            let pa = a.config.as_ref().map(DomainConfig::to_libxl_json).ok();
            let pb = b.config.as_ref().map(DomainConfig::to_libxl_json).ok();
            prop_assert_eq!(pa, pb);
        }
    }

    /// Law 2: permuting the JSON device arrays and the order xenstore is written in changes
    /// neither the set of devices nor any decision.
    #[test]
    fn order_independent(g in host(HostProfile::default()), rot in 1usize..5) {
        // Rebuild the tree by inserting in reverse order.
        let reversed: Tree = {
            let mut nodes: Vec<(Path, Node)> = g.scenario.tree.iter().map(|(p, n)| (p.clone(), n.clone())).collect();
            nodes.reverse();
            let mut t = Tree::new();
            for (p, n) in nodes { t.insert(p, n); }
            t
        };
        for d in guests(&g) {
            let json = replica(g.scenario.userdata.get(&d));
            let permuted = match &json {
                JsonReplica::Present(c) => {
                    let mut c = c.clone();
                    for a in DeviceArray::ALL {
                        let mut v = c.devices(a).to_vec();
                        if !v.is_empty() { let k = rot % v.len(); v.rotate_left(k); }
                        c.set_devices(a, v);
                    }
                    JsonReplica::Present(c)
                }
                other => other.clone(),
            };
            let a = run(&g, d, &json, &g.scenario.tree);
            let b = run(&g, d, &permuted, &reversed);
            let (ca, cb) = (a.config.as_ref().unwrap(), b.config.as_ref().unwrap());
            prop_assert_eq!(device_set(ca), device_set(cb), "{}", g.describe());
            let da: BTreeSet<String> = a.decisions.iter().map(|d| format!("{:?}", (&d.subject, d.rule, d.class, d.action))).collect();
            let db: BTreeSet<String> = b.decisions.iter().map(|d| format!("{:?}", (&d.subject, d.rule, d.class, d.action))).collect();
            prop_assert_eq!(da, db, "{}", g.describe());
        }
    }

    /// Law 3: reconciling the merged config again against the same xenstore changes nothing.
    #[test]
    fn idempotent(g in host(HostProfile::default())) {
        for d in guests(&g) {
            let json = replica(g.scenario.userdata.get(&d));
            let first = run(&g, d, &json, &g.scenario.tree);
            let merged = first.config.clone().unwrap();
            let second = run(&g, d, &JsonReplica::Present(merged.clone()), &g.scenario.tree);
            let (a, b) = (merged.to_libxl_json(), second.config.unwrap().to_libxl_json());
            prop_assert!(a == b, "not idempotent:\n{}\n{}", line_diff(&a, &b), g.describe());
        }
    }

    /// Law 4: after the repair plan is applied to both replicas, the next reconcile reports no
    /// half-baked state and plans nothing.
    #[test]
    fn convergent(g in host(HostProfile::default())) {
        for d in guests(&g) {
            let json = replica(g.scenario.userdata.get(&d));
            let first = run(&g, d, &json, &g.scenario.tree);
            let merged = first.config.clone().unwrap();
            // Without userdata the repair starts a new file from the domain-level part of the
            // merged config and adds every recovered device to it.
            let base = match &json {
                JsonReplica::Present(c) => c.clone(),
                _ => { let mut c = merged.clone(); for a in DeviceArray::ALL { c.set_devices(a, Vec::new()); } c }
            };
            let (json2, tree2) = plan::apply(&first.plan, &base, &g.scenario.tree);
            let second = run(&g, d, &JsonReplica::Present(json2), &tree2);
            let half: Vec<String> = second.decisions.iter().filter(|x| x.class.is_half_baked()).map(|x| format!("{} {}: {}", x.subject, x.class.name(), x.reason)).collect();
            prop_assert!(half.is_empty(), "still half-baked after the plan:\n{}\nplan: {:#?}\n{}", half.join("\n"), first.plan.steps, g.describe());
            prop_assert!(second.plan.is_empty(), "plan after repair: {:#?}\n{}", second.plan.steps, g.describe());
        }
    }

    /// Law 5: every device with toolstack-owned runtime evidence (a live backend the guest
    /// cannot write, in a domain that exists) appears in the output. Checked by an independent
    /// scan of the tree.
    #[test]
    fn no_loss(g in host(HostProfile::default())) {
        for d in guests(&g) {
            let json = replica(g.scenario.userdata.get(&d));
            let out = run(&g, d, &json, &g.scenario.tree);
            let cfg = out.config.unwrap();
            for (array, devid) in live_devices(&g.scenario.tree, d) {
                let present = cfg.devices(array).iter().any(|e| match array {
                    DeviceArray::Disks => e.get("vdev").and_then(|v| v.as_str()).and_then(disk_devid) == Some(devid),
                    _ => e.get("devid").and_then(|v| v.as_i64()) == Some(devid),
                });
                prop_assert!(present, "{} devid {} is live but missing from the output\n{}", array.key(), devid, g.describe());
            }
        }
    }

    /// Law 6: nothing a guest can change inside the xenstore it may write alters its retrieved
    /// configuration (devices and template fields).
    #[test]
    fn no_guest_injection(g in host(HostProfile::default()), edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::collection::vec(any::<u8>(), 0..24)), 1..12)) {
        for d in guests(&g) {
            let json = replica(g.scenario.userdata.get(&d));
            let before = run(&g, d, &json, &g.scenario.tree).config.unwrap().to_libxl_json();
            let writable: Vec<Path> = g.scenario.tree.iter()
                .filter(|(p, n)| p.as_str().starts_with(&format!("/local/domain/{d}/")) && n.perms.as_ref().is_some_and(|pm| pm.access_for(d).can_write()))
                .map(|(p, _)| p.clone()).collect();
            if writable.is_empty() { continue; }
            let mut tree = g.scenario.tree.clone();
            for (ix, op, bytes) in &edits {
                let target = ix.get(&writable).clone();
                match op {
                    0 => { let mut n = tree.get(&target).cloned().unwrap_or_else(|| Node::new(Vec::new())); n.value = bytes.clone().into(); tree.insert(target, n); }
                    1 => { tree.remove_subtree(&target); }
                    _ => {
                        let name = format!("x{}", bytes.len());
                        if let Ok(child) = target.join(&name) {
                            let owner = Perms::new(vec![Perm { access: Access::None, domid: d }]);
                            tree.insert(child, Node::new(bytes.clone()).with_perms(owner));
                        }
                    }
                }
            }
            let after = run(&g, d, &json, &tree).config.unwrap().to_libxl_json();
            prop_assert!(before == after, "guest edits changed the config:\n{}\nedits {:?}\n{}", line_diff(&before, &after), edits, g.describe());
        }
    }
}

/// The lines that differ, for failure messages.
fn line_diff(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let start = la.iter().zip(&lb).take_while(|(x, y)| x == y).count();
    let end = la.iter().rev().zip(lb.iter().rev()).take_while(|(x, y)| x == y).count();
    let cut = |v: &[&str]| v[start..v.len().saturating_sub(end).max(start)].join("\n");
    format!("--- before (from line {})\n{}\n+++ after\n{}", start + 1, cut(&la), cut(&lb))
}

/// Live, toolstack-owned backends of the table kinds serving `guest`: (array, devid).
fn live_devices(tree: &Tree, guest: u32) -> Vec<(DeviceArray, i64)> {
    let kinds = [
        ("vbd", DeviceArray::Disks),
        ("qdisk", DeviceArray::Disks),
        ("vif", DeviceArray::Nics),
        ("vtpm", DeviceArray::Vtpms),
        ("vusb", DeviceArray::Usbctrls),
        ("qusb", DeviceArray::Usbctrls),
        ("vdispl", DeviceArray::Vdispls),
        ("vsnd", DeviceArray::Vsnds),
    ];
    let mut out = Vec::new();
    let domains = tree.children(&Path::new("/local/domain").unwrap());
    for b in &domains {
        let Ok(bd) = b.parse::<u32>() else { continue };
        if bd == guest {
            continue;
        }
        for (kind, array) in kinds {
            let Ok(dir) = Path::new(&format!("/local/domain/{b}/backend/{kind}/{guest}")) else { continue };
            for devid in tree.children(&dir) {
                let Ok(id) = devid.parse::<i64>() else { continue };
                let base = format!("{dir}/{devid}");
                let state = tree.text(&format!("{base}/state"));
                let owner_ok =
                    tree.get_str(&base).and_then(|n| n.perms.as_ref()).is_none_or(|p| !p.access_for(guest).can_write());
                // Live: a state node that is not Closed, and (for a disk) a dev node to name it.
                let named =
                    array != DeviceArray::Disks || tree.text(&format!("{base}/dev")).and_then(disk_devid) == Some(id);
                if owner_ok && named && state.is_some() && state != Some("6") {
                    out.push((array, id));
                }
            }
        }
    }
    out
}

#[test]
fn half_baked_classes_are_generated() {
    // The laws above are only as good as the states they see: make sure the generator reaches
    // the half-baked classes.
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strat = host(HostProfile::default());
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        let g = strat.new_tree(&mut runner).unwrap().current();
        for d in guests(&g) {
            let json = replica(g.scenario.userdata.get(&d));
            for x in run(&g, d, &json, &g.scenario.tree).decisions {
                seen.insert(x.class);
            }
        }
    }
    for want in [
        Class::Consistent,
        Class::JsonOnly,
        Class::Recovered,
        Class::Unplugging,
        Class::UnpluggedNotReaped,
        Class::RecordMissing,
    ] {
        assert!(seen.contains(&want), "the generator never produced {:?}; saw {:?}", want, seen);
    }
}
