//! DESIGN.md's decision table, row by row, for every device kind that has a `/libxl` record
//! (disk, nic, vtpm, usbctrl, vdispl, vsnd): each case names its row, puts one device of a
//! consistent generated host into that row's state, and checks the no-loss class and action.
//! Rows that need a second device of the same kind, or a driver-domain backend, run wherever
//! the generator produced one.

use merge_core::config::{DeviceArray, DomainConfig};
use merge_core::decision::{Action, Class, Subject};
use merge_core::reconcile::{reconcile, Inputs, JsonReplica, Outcome, Policy};
use merge_core::rules::{json_identity, IdentityKey};
use merge_core::testkit::{
    device_json, device_paths, host, DevicePaths, DeviceSpec, Generated, GuestSpec, HostProfile, Kind,
};
use merge_core::xenstore::{Node, Path, Tree};
use proptest::strategy::{Strategy, ValueTree};
use std::collections::BTreeSet;

/// One row: its name, how it changes the replicas, and what no-loss must conclude.
struct Row {
    name: &'static str,
    change: fn(&mut Tree, &mut DomainConfig, &DevicePaths, &Entry),
    class: Class,
    action: Action,
}

struct Entry {
    array: DeviceArray,
    value: serde_json::Value,
}

fn set(tree: &mut Tree, path: &str, value: &str) {
    let p = Path::new(path).unwrap();
    let perms = tree.get(&p).and_then(|n| n.perms.clone());
    tree.insert(p, Node::new(value.as_bytes().to_vec()).with_perms(perms));
}

fn rm(tree: &mut Tree, path: &str) {
    tree.remove_subtree(&Path::new(path).unwrap());
}

fn drop_entry(cfg: &mut DomainConfig, e: &Entry) {
    let v: Vec<_> = cfg.devices(e.array).iter().filter(|x| **x != e.value).cloned().collect();
    cfg.set_devices(e.array, v);
}

fn backend(p: &DevicePaths) -> &str {
    p.backend.as_deref().expect("a device with a backend")
}

const ROWS: &[Row] = &[
    Row {
        name: "J yes | record and backend, Connected",
        change: |_, _, _, _| {},
        class: Class::Consistent,
        action: Action::Kept,
    },
    Row {
        name: "J yes | backend InitWait (plugging)",
        change: |t, _, p, _| set(t, &format!("{}/state", backend(p)), "2"),
        class: Class::Plugging,
        action: Action::Kept,
    },
    Row {
        name: "J yes | backend Closing (5)",
        change: |t, _, p, _| set(t, &format!("{}/state", backend(p)), "5"),
        class: Class::Unplugging,
        action: Action::Kept,
    },
    Row {
        name: "J yes | online = 0",
        change: |t, _, p, _| set(t, &format!("{}/online", backend(p)), "0"),
        class: Class::Unplugging,
        action: Action::Kept,
    },
    Row {
        name: "J yes | backend Closed (6), frontend gone",
        change: |t, _, p, _| {
            set(t, &format!("{}/state", backend(p)), "6");
            rm(t, &p.frontend);
        },
        class: Class::UnpluggedNotReaped,
        action: Action::Kept,
    },
    Row {
        name: "J yes | hotplug-status = error",
        change: |t, _, p, _| set(t, &format!("{}/hotplug-status", backend(p)), "error"),
        class: Class::Failed,
        action: Action::Kept,
    },
    Row {
        name: "J yes | no /libxl record, live backend",
        change: |t, _, p, _| rm(t, &p.record),
        class: Class::RecordMissing,
        action: Action::Kept,
    },
    Row {
        name: "J yes | no /libxl record, no live backend",
        change: |t, _, p, _| {
            rm(t, &p.record);
            rm(t, backend(p));
            rm(t, &p.frontend);
        },
        class: Class::JsonOnly,
        action: Action::Dropped,
    },
    Row {
        name: "J no | toolstack-owned backend and /libxl record",
        change: |_, c, _, e| drop_entry(c, e),
        class: Class::Recovered,
        action: Action::Recovered,
    },
    Row {
        name: "J no | only guest-writable frontend nodes",
        change: |t, c, p, e| {
            drop_entry(c, e);
            rm(t, &p.record);
            rm(t, backend(p));
        },
        class: Class::Untrusted,
        action: Action::Ignored,
    },
];

fn find_decision<'a>(
    out: &'a Outcome,
    key: &IdentityKey,
    kind_name: &str,
) -> Option<&'a merge_core::decision::Decision> {
    out.decisions
        .iter()
        .find(|d| matches!(&d.subject, Subject::Device { kind, key: k } if kind.name() == kind_name && k == key))
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Disk => "disk",
        Kind::Nic => "nic",
        Kind::Vtpm => "vtpm",
        Kind::Usbctrl => "usbctrl",
        Kind::Vdispl => "vdispl",
        Kind::Vsnd => "vsnd",
        _ => "",
    }
}

/// The first device of each kind with a dom0 backend, in deterministic consistent hosts.
fn samples() -> Vec<(Generated, GuestSpec, DeviceSpec)> {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strat = host(HostProfile::clean());
    let mut found: Vec<(Generated, GuestSpec, DeviceSpec)> = Vec::new();
    let mut kinds: BTreeSet<&str> = BTreeSet::new();
    for _ in 0..400 {
        let g = strat.new_tree(&mut runner).unwrap().current();
        for guest in &g.guests {
            for d in &guest.devices {
                let name = kind_name(d.kind());
                let usable = !name.is_empty()
                    && d.backend_domid == 0
                    && device_paths(guest, d).is_some_and(|p| p.backend.is_some())
                    && device_json(d).is_some();
                if usable && kinds.insert(name) {
                    found.push((g.clone(), guest.clone(), d.clone()));
                }
            }
        }
        if kinds.len() == 6 {
            break;
        }
    }
    found
}

/// The output's entries of `array` with this devid.
fn with_devid(out: &Outcome, array: DeviceArray, devid: i64) -> Vec<serde_json::Value> {
    let cfg = out.config.as_ref().expect("a configuration");
    cfg.devices(array)
        .iter()
        .filter(|e| e.get("devid").and_then(serde_json::Value::as_i64) == Some(devid))
        .cloned()
        .collect()
}

fn json_of(g: &Generated, domid: u32) -> DomainConfig {
    g.configs[&domid].clone().expect("a clean host has userdata")
}

#[test]
fn every_row_for_every_recorded_kind() {
    let samples = samples();
    let kinds: Vec<&str> = samples.iter().map(|(_, _, d)| kind_name(d.kind())).collect();
    assert_eq!(kinds.len(), 6, "the generator gave devices of only {kinds:?}");
    let mut failures = Vec::new();
    let mut checked = 0;
    for (g, guest, dev) in &samples {
        let kind = kind_name(dev.kind());
        let paths = device_paths(guest, dev).unwrap();
        let array = dev.kind().array().unwrap();
        let base = json_of(g, guest.domid);
        let value = device_json(dev).unwrap();
        let idx = base
            .devices(array)
            .iter()
            .position(|e| *e == value)
            .unwrap_or_else(|| panic!("{kind} entry not in the JSON: {value}"));
        let key = json_identity(merge_core::rules::RULES.iter().find(|r| r.kind.name() == kind).unwrap(), &value, idx);
        for row in ROWS {
            // A devicemodel usb controller has only its record: the backend rows do not apply.
            if paths.backend.is_none() {
                continue;
            }
            let mut tree = g.scenario.tree.clone();
            let mut cfg = base.clone();
            (row.change)(&mut tree, &mut cfg, &paths, &Entry { array, value: value.clone() });
            let json = JsonReplica::Present(cfg);
            let out = reconcile(
                Inputs { domid: guest.domid, json: &json, tree: &tree, host: &g.scenario.host },
                Policy::NoLoss,
            );
            checked += 1;
            // A disk only the guest's frontend speaks for has no trusted vdev: it is named by devid.
            let devid_key = match &key {
                IdentityKey::Vdev(Some(v)) => merge_core::rules::disk_devid(v).map(IdentityKey::Devid),
                _ => None,
            };
            let decision = find_decision(&out, &key, kind)
                .or_else(|| devid_key.as_ref().and_then(|k| find_decision(&out, k, kind)));
            match decision {
                Some(d)
                    if d.class == row.class
                        && (d.action == row.action || (row.action == Action::Kept && d.action == Action::Merged)) => {}
                Some(d) => failures.push(format!(
                    "[{kind}] {}: got {} / {} ({})",
                    row.name,
                    d.class.name(),
                    d.action.name(),
                    d.reason
                )),
                None => failures.push(format!("[{kind}] {}: no decision for {key}", row.name)),
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} cases failed:\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= 6 * ROWS.len() - ROWS.len(), "only {checked} cases ran");
}

/// Row "malformed record of another device of the same kind": only that device is affected.
#[test]
fn a_malformed_record_affects_only_its_device() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strat = host(HostProfile::clean());
    let mut covered = BTreeSet::new();
    for _ in 0..400 {
        let g = strat.new_tree(&mut runner).unwrap().current();
        for guest in &g.guests {
            for kind in [Kind::Disk, Kind::Nic] {
                let devs: Vec<&DeviceSpec> =
                    guest.devices.iter().filter(|d| d.kind() == kind && d.backend_domid == 0).collect();
                if devs.len() < 2 || covered.contains(kind_name(kind)) {
                    continue;
                }
                let (bad, good) = (devs[0], devs[1]);
                let mut tree = g.scenario.tree.clone();
                // libxl 4.17 drops every device of the kind when one record lacks `backend`.
                rm(&mut tree, &format!("{}/backend", device_paths(guest, bad).unwrap().record));
                let json = JsonReplica::Present(json_of(&g, guest.domid));
                let inputs = Inputs { domid: guest.domid, json: &json, tree: &tree, host: &g.scenario.host };
                let out = reconcile(inputs, Policy::NoLoss);
                let array = kind.array().unwrap();
                let value = device_json(good).unwrap();
                let cfg = out.config.as_ref().unwrap();
                assert!(cfg.devices(array).contains(&value), "no-loss lost the healthy {:?} {value}", kind);
                let bad_value = device_json(bad).unwrap();
                assert!(
                    cfg.devices(array).contains(&bad_value),
                    "no-loss lost the live device with the malformed record"
                );
                let libxl = reconcile(inputs, Policy::Libxl417);
                if let Ok(c) = &libxl.config {
                    assert!(c.devices(array).is_empty(), "libxl 4.17 drops the whole kind, the model says");
                }
                covered.insert(kind_name(kind));
            }
        }
    }
    assert_eq!(covered.len(), 2, "covered only {covered:?}");
}

/// Row "J no | toolstack-owned backend" when libxl's reader rejects one of the backend's
/// values: a vtpm whose backend `uuid` is not a uuid, with no JSON entry. libxl 4.17 fails to
/// list every vtpm of the domain; no-loss still recovers the device, without that value, says
/// which node it left out, and plans its removal (from the backend and from the rewritten
/// record), after which the replicas agree.
#[test]
fn a_live_device_is_recovered_without_a_backend_value_libxl_rejects() {
    let samples = samples();
    let (g, guest, dev) = samples.iter().find(|(_, _, d)| d.kind() == Kind::Vtpm).expect("a generated vtpm");
    let paths = device_paths(guest, dev).unwrap();
    let uuid_node = format!("{}/uuid", backend(&paths));
    let value = device_json(dev).unwrap();
    let mut tree = g.scenario.tree.clone();
    set(&mut tree, &uuid_node, "not-a-uuid");
    let mut base = json_of(g, guest.domid);
    drop_entry(&mut base, &Entry { array: DeviceArray::Vtpms, value: value.clone() });
    let json = JsonReplica::Present(base.clone());
    let inputs = Inputs { domid: guest.domid, json: &json, tree: &tree, host: &g.scenario.host };
    let out = reconcile(inputs, Policy::NoLoss);

    let devid = value.get("devid").and_then(serde_json::Value::as_i64).unwrap();
    let decision = find_decision(&out, &IdentityKey::Devid(devid), "vtpm").expect("a decision for the vtpm");
    assert_eq!((decision.class, decision.action), (Class::Recovered, Action::Recovered), "{}", decision.reason);
    assert!(
        decision.reason.contains(&format!("{uuid_node} is left out and removed: libxl's reader rejects it")),
        "{}",
        decision.reason
    );
    let recovered = with_devid(&out, DeviceArray::Vtpms, devid);
    assert_eq!(recovered.len(), 1, "the vtpm is in the output once");
    assert!(recovered[0].get("uuid").is_none(), "no uuid is made up: {}", recovered[0]);
    let record_uuid = format!("{}/uuid", paths.record);
    let reaped = out.plan.steps.iter().any(|s| {
        matches!(&s.action, merge_core::plan::Action::ReapNodes { paths }
            if paths.contains(&uuid_node) && paths.contains(&record_uuid))
    });
    assert!(reaped, "the plan removes the rejected value and its record copy: {:#?}", out.plan.steps);

    let (json2, tree2) = merge_core::plan::apply(&out.plan, &base, &tree);
    let again = reconcile(
        Inputs { domid: guest.domid, json: &JsonReplica::Present(json2), tree: &tree2, host: &g.scenario.host },
        Policy::NoLoss,
    );
    assert!(!again.is_half_baked(), "{:#?}", again.decisions);
    assert!(again.plan.is_empty(), "{:#?}", again.plan.steps);
}

/// Row "duplicate identity" when the copies differ: whichever order the JSON holds them in,
/// the same copy is kept (the one with the most values), and the plan removes the other.
#[test]
fn of_two_differing_copies_of_a_device_the_same_one_is_kept_in_any_order() {
    let samples = samples();
    let (g, guest, dev) = samples.iter().find(|(_, _, d)| d.kind() == Kind::Nic).expect("a generated nic");
    let value = device_json(dev).unwrap();
    let mut richer = value.clone();
    richer.as_object_mut().unwrap().insert("rate_bytes_per_interval".into(), 1000.into());
    let base = json_of(g, guest.domid);
    let mut kept = Vec::new();
    for copies in [[value.clone(), richer.clone()], [richer.clone(), value.clone()]] {
        let mut cfg = base.clone();
        let mut nics: Vec<_> = cfg.devices(DeviceArray::Nics).iter().filter(|e| **e != value).cloned().collect();
        nics.extend(copies);
        cfg.set_devices(DeviceArray::Nics, nics);
        let json = JsonReplica::Present(cfg.clone());
        let inputs = Inputs { domid: guest.domid, json: &json, tree: &g.scenario.tree, host: &g.scenario.host };
        let out = reconcile(inputs, Policy::NoLoss);
        let devid = value.get("devid").and_then(serde_json::Value::as_i64).unwrap();
        let ours = with_devid(&out, DeviceArray::Nics, devid);
        assert_eq!(ours, [richer.clone()], "the copy with more values is kept");
        let (repaired, _) = merge_core::plan::apply(&out.plan, &cfg, &g.scenario.tree);
        let left = repaired.devices(DeviceArray::Nics).iter().filter(|e| **e == value || **e == richer).count();
        assert_eq!(left, 1, "the plan leaves one copy: {:#?}", out.plan.steps);
        kept.push(ours);
    }
    assert_eq!(kept[0], kept[1]);
}

/// Disks whose `dev` does not name their directory, as damaged nodes do: one names another
/// live disk's vdev, or two name no disk at all (the same empty name), in the records only or
/// in the backends too. no-loss keeps every disk once, each under a vdev naming its own
/// directory (its own, or the directory's number when no node names it), plans the records'
/// rewrite, and a second pass gives the same configuration. Before, two disks came out under
/// one vdev and the next pass dropped one as a duplicate (found by the `reconcile` fuzz target).
#[test]
fn a_disk_whose_dev_does_not_name_its_directory_keeps_its_own_identity() {
    type Disk<'a> = (&'a DeviceSpec, serde_json::Value);
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(serde_json::Value::as_str).unwrap().to_string();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strat = host(HostProfile::clean());
    let mut checked = 0;
    for _ in 0..400 {
        let g = strat.new_tree(&mut runner).unwrap().current();
        for guest in &g.guests {
            let disks: Vec<Disk> = guest
                .devices
                .iter()
                .filter(|d| d.kind() == Kind::Disk && d.backend_domid == 0)
                .filter_map(|d| Some((d, device_json(d)?)))
                .filter(|(_, v)| v.get("pdev_path").and_then(serde_json::Value::as_str).is_some_and(|p| !p.is_empty()))
                .collect();
            let [a, b, ..] = disks.as_slice() else { continue };
            let a_vdev = text(&a.1, "vdev");
            // (which disks are damaged, the name their `dev` gets)
            let damages: [(Vec<&Disk>, &str); 2] = [(vec![b], &a_vdev), (vec![a, b], "")];
            for (damaged, name) in damages {
                for backend_too in [false, true] {
                    let mut tree = g.scenario.tree.clone();
                    for (d, _) in &damaged {
                        let paths = device_paths(guest, d).unwrap();
                        set(&mut tree, &format!("{}/dev", paths.record), name);
                        if backend_too {
                            set(&mut tree, &format!("{}/dev", backend(&paths)), name);
                        }
                    }
                    let full = json_of(&g, guest.domid);
                    let mut without_b = full.clone();
                    drop_entry(&mut without_b, &Entry { array: DeviceArray::Disks, value: b.1.clone() });
                    for (json, b_in_json) in [
                        (JsonReplica::Present(full), true),
                        (JsonReplica::Present(without_b), false),
                        (JsonReplica::Missing, false),
                    ] {
                        let case = format!(
                            "{} disk(s) named {name:?}, backend too: {backend_too}, b in the JSON: {b_in_json}, userdata: {}",
                            damaged.len(),
                            if matches!(json, JsonReplica::Present(_)) { "present" } else { "missing" }
                        );
                        let inputs = Inputs { domid: guest.domid, json: &json, tree: &tree, host: &g.scenario.host };
                        let out = reconcile(inputs, Policy::NoLoss);
                        let cfg = out.config.as_ref().expect("a configuration");
                        let disks_out = cfg.devices(DeviceArray::Disks);
                        for (d, value) in [a, b] {
                            let paths = device_paths(guest, d).unwrap();
                            let ours: Vec<_> =
                                disks_out.iter().filter(|e| text(e, "pdev_path") == text(value, "pdev_path")).collect();
                            assert_eq!(ours.len(), 1, "{case}: each disk is kept once: {disks_out:#?}");
                            // A JSON entry keeps its vdev; a recovered disk whose nodes all
                            // name another directory goes by its own directory's number.
                            let in_json =
                                matches!(&json, JsonReplica::Present(_)) && (b_in_json || !std::ptr::eq(*d, b.0));
                            let named_wrong = backend_too && damaged.iter().any(|x| std::ptr::eq(x.0, *d));
                            let directory = paths.record.rsplit('/').next().unwrap().to_string();
                            let expected =
                                if named_wrong && !in_json { directory.clone() } else { text(value, "vdev") };
                            assert_eq!(text(ours[0], "vdev"), expected, "{case}");
                            if named_wrong && !in_json {
                                let key = IdentityKey::Vdev(Some(directory.clone()));
                                let d = find_decision(&out, &key, "disk").expect("a decision for the disk");
                                let says = format!(
                                    "its backend's dev {name:?} does not name its directory: it goes by the directory's number, {directory}"
                                );
                                assert!(d.reason.contains(&says), "{case}: {}", d.reason);
                            }
                            if damaged.iter().any(|x| std::ptr::eq(x.0, *d)) {
                                use merge_core::plan::Action as Step;
                                let steps = &out.plan.steps;
                                let rewrite = steps.iter().position(
                                    |s| matches!(&s.action, Step::RewriteRecord { record, .. } if *record == paths.record),
                                );
                                assert!(rewrite.is_some(), "{case}: the record is rewritten: {steps:#?}");
                                // The record copies the backend: a backend `dev` that does not
                                // name the directory is written back first, with the vdev kept.
                                let dev_node = format!("{}/dev", backend(&paths));
                                let restore = steps.iter().position(
                                    |s| matches!(&s.action, Step::RestoreBackendNode { path, value } if *path == dev_node && *value == expected),
                                );
                                if backend_too {
                                    assert!(restore < rewrite && restore.is_some(), "{case}: {steps:#?}");
                                } else {
                                    assert_eq!(restore, None, "{case}: the backend's dev is right: {steps:#?}");
                                }
                            }
                        }
                        let again = reconcile(
                            Inputs {
                                domid: guest.domid,
                                json: &JsonReplica::Present(cfg.clone()),
                                tree: &tree,
                                host: &g.scenario.host,
                            },
                            Policy::NoLoss,
                        );
                        assert_eq!(
                            again.config.as_ref().unwrap().to_libxl_json(),
                            cfg.to_libxl_json(),
                            "{case}: a second pass is the identity"
                        );
                        // Law 4: the plan applied, the replicas agree. Without userdata the
                        // repair starts a file from the merged domain with no devices.
                        let base = match &json {
                            JsonReplica::Present(c) => c.clone(),
                            _ => {
                                let mut c = cfg.clone();
                                for a in DeviceArray::ALL {
                                    c.set_devices(a, Vec::new());
                                }
                                c
                            }
                        };
                        let (json2, tree2) = merge_core::plan::apply(&out.plan, &base, &tree);
                        let repaired = reconcile(
                            Inputs {
                                domid: guest.domid,
                                json: &JsonReplica::Present(json2),
                                tree: &tree2,
                                host: &g.scenario.host,
                            },
                            Policy::NoLoss,
                        );
                        assert!(!repaired.is_half_baked(), "{case}: {:#?}", repaired.decisions);
                        assert!(repaired.plan.is_empty(), "{case}: {:#?}", repaired.plan.steps);
                        checked += 1;
                    }
                }
            }
        }
        if checked >= 24 {
            break;
        }
    }
    assert!(checked >= 24, "too few guests with two disks: {checked} cases");
}
