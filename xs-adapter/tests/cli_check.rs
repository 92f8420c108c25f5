//! `xlsync check` and `xlsync explain --format json` end to end: a real xenstored holding a
//! scenario, real userdata files in a libxl directory (read under libxl's lock), no hypervisor
//! input (so the uuid, type and scheduler are derived or defaulted, and said so).
//!
//! One scenario per half-baked class, each the spike's consistent guest (`a-agree`) with one
//! thing done to it: `check` exits 1 on each and 0 on the untouched one, and the explanation
//! names the class on the damaged device.
mod cli_common;
mod support;

use cli_common::{output, text, LiveHost, ScenarioDir, DEMO, SPIKE_SCENARIOS};
use merge_core::config::{DeviceArray, DomainConfig};
use merge_core::testkit::Scenario;
use merge_core::xenstore::{Node, Path, Tree};
use serde_json::Value;
use std::collections::BTreeSet;

/// The `a-agree` guest with `edit` applied to its xenstore.
fn agree_with(edit: impl FnOnce(&mut Tree)) -> Scenario {
    let mut scenario = ScenarioDir::spike("a-agree").scenario;
    edit(&mut scenario.tree);
    scenario
}

fn set(tree: &mut Tree, p: &str, v: &str) {
    tree.insert_with_parents(Path::new(p).unwrap(), Node::new(v.as_bytes().to_vec()), None);
}

fn remove(tree: &mut Tree, p: &str) {
    assert!(tree.remove_subtree(&Path::new(p).unwrap()) > 0, "{p} not in the scenario");
}

/// Copies a subtree to another place, rewriting `from` to `to` in paths and values.
fn copy(tree: &mut Tree, from: &str, to: &str, rewrites: &[(&str, &str)]) {
    let nodes: Vec<(String, String)> = tree
        .subtree(&Path::new(from).unwrap())
        .map(|(p, n)| (p.as_str().replacen(from, to, 1), String::from_utf8(n.value.to_vec()).unwrap()))
        .collect();
    for (p, mut v) in nodes {
        for (a, b) in rewrites {
            v = v.replace(a, b);
        }
        set(tree, &p, &v);
    }
}

const VBD_BACKEND: &str = "/local/domain/0/backend/vbd/1/51712";
const VIF_BACKEND: &str = "/local/domain/0/backend/vif/1/0";

/// `(class, device, scenario)`: the class the damaged device must get.
fn cases() -> Vec<(&'static str, &'static str, Scenario)> {
    vec![
        ("plugging", "disk vdev xvda", agree_with(|t| set(t, &format!("{VBD_BACKEND}/state"), "2"))),
        (
            "unplugging",
            "disk vdev xvda",
            agree_with(|t| {
                set(t, &format!("{VBD_BACKEND}/state"), "5");
                set(t, &format!("{VBD_BACKEND}/online"), "0");
            }),
        ),
        (
            "unplugged-not-reaped",
            "disk vdev xvda",
            agree_with(|t| {
                set(t, &format!("{VBD_BACKEND}/state"), "6");
                set(t, &format!("{VBD_BACKEND}/online"), "0");
                remove(t, "/local/domain/1/device/vbd/51712");
            }),
        ),
        ("failed", "nic devid 0", agree_with(|t| set(t, &format!("{VIF_BACKEND}/hotplug-status"), "error"))),
        (
            "json-only",
            "disk vdev xvda",
            agree_with(|t| {
                remove(t, "/local/domain/1/device/vbd/51712");
                remove(t, VBD_BACKEND);
                remove(t, "/libxl/1/device/vbd/51712");
            }),
        ),
        ("record-missing", "nic devid 0", agree_with(|t| remove(t, "/libxl/1/device/vif/0"))),
        ("recovered", "nic devid 1", ScenarioDir::spike("c-xenstore-extra-nic").scenario),
        (
            "untrusted",
            "nic devid 5",
            agree_with(|t| {
                for (k, v) in [
                    ("backend", "/local/domain/0/backend/vif/1/5"),
                    ("backend-id", "0"),
                    ("state", "4"),
                    ("handle", "5"),
                ] {
                    set(t, &format!("/local/domain/1/device/vif/5/{k}"), v);
                }
            }),
        ),
        (
            "orphan",
            "disk vdev xvdd",
            agree_with(|t| {
                copy(
                    t,
                    "/libxl/1/device/vbd/51712",
                    "/libxl/1/device/vbd/51760",
                    &[("51712", "51760"), ("xvda", "xvdd")],
                )
            }),
        ),
    ]
}

fn explain_json(host: &LiveHost, domid: &str) -> Value {
    let out = output(&mut host.xlsync(&["explain", "--format", "json", domid]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("explain --format json is not JSON ({e}):\n{}", text(&out.stdout)))
}

#[test]
fn check_exits_1_on_each_half_baked_class_and_0_when_consistent() {
    let consistent = ScenarioDir::spike("a-agree").scenario;
    let host = LiveHost::start(&consistent, merge_core::hypervisor::Scheduler::Credit2);
    let out = output(&mut host.xlsync(&["check", "1"]));
    assert_eq!(out.status.code(), Some(0), "consistent: {}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("no repair needed"), "{}", text(&out.stdout));

    for (class, device, scenario) in cases() {
        let host = LiveHost::start(&scenario, merge_core::hypervisor::Scheduler::Credit2);
        let out = output(&mut host.xlsync(&["check", "1"]));
        assert_eq!(out.status.code(), Some(1), "{class}: {}{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stdout).contains(&format!("{class} {device}")), "{class}: plan text:\n{}", text(&out.stdout));
        let doc = explain_json(&host, "1");
        let devices = doc["domains"][0]["devices"].as_array().unwrap();
        let got = devices
            .iter()
            .find(|d| format!("{} {}", d["kind"].as_str().unwrap(), d["key"].as_str().unwrap()) == device);
        let got = got.unwrap_or_else(|| panic!("{class}: {device} not explained: {doc:#}"));
        assert_eq!(got["class"], class, "{class}: {got:#}");
        assert_eq!(doc["domains"][0]["half_baked"], true);
        // No hypervisor input was given: the defaults are named as such.
        let inputs = doc["domains"][0]["inputs"].as_array().unwrap();
        for input in ["scheduler", "sched_params"] {
            assert!(
                inputs.iter().any(|n| n["input"] == input && n["defaulted"] == true),
                "{class}: {input}: {inputs:?}"
            );
        }
        assert!(
            inputs.iter().any(|n| n["input"] == "uuid" && n["source"] == "xenstore /local/domain/1/vm"),
            "{inputs:?}"
        );
    }
}

/// Every device a replica mentions, as `kind key`: JSON disks and nics, libxl's records, and
/// the guest's nic frontends.
fn devices_in(scenario: &Scenario, domid: u32) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if let Some(bytes) = scenario.userdata.get(&domid) {
        let c = DomainConfig::parse(bytes).unwrap();
        for d in c.devices(DeviceArray::Disks) {
            names.insert(format!("disk vdev {}", d["vdev"].as_str().unwrap()));
        }
        for n in c.devices(DeviceArray::Nics) {
            names.insert(format!("nic devid {}", n["devid"]));
        }
    }
    let t = &scenario.tree;
    let children = |p: &str| t.children(&Path::new(p).unwrap());
    for devid in children(&format!("/libxl/{domid}/device/vbd")) {
        if let Some(dev) = t.text(&format!("/libxl/{domid}/device/vbd/{devid}/dev")) {
            names.insert(format!("disk vdev {dev}"));
        }
    }
    for devid in children(&format!("/libxl/{domid}/device/vif"))
        .into_iter()
        .chain(children(&format!("/local/domain/{domid}/device/vif")))
    {
        names.insert(format!("nic devid {devid}"));
    }
    names
}

#[test]
fn explain_json_parses_and_names_every_device() {
    let mut scenarios: Vec<(String, Scenario)> =
        SPIKE_SCENARIOS.iter().map(|n| (n.to_string(), ScenarioDir::spike(n).scenario)).collect();
    scenarios.extend(cases().into_iter().map(|(class, _, s)| (class.to_string(), s)));
    scenarios.push(("demo".into(), ScenarioDir::load(std::path::Path::new(DEMO)).scenario));
    for (name, scenario) in scenarios {
        let host = LiveHost::start(&scenario, merge_core::hypervisor::Scheduler::Credit2);
        let doc = explain_json(&host, "--all");
        assert_eq!(doc["policy"], "no-loss");
        let domains = doc["domains"].as_array().unwrap();
        assert!(!domains.is_empty(), "{name}: no domains");
        for d in domains {
            let domid = d["domid"].as_u64().unwrap() as u32;
            let named: BTreeSet<String> = d["devices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|dev| format!("{} {}", dev["kind"].as_str().unwrap(), dev["key"].as_str().unwrap()))
                .collect();
            let missing: Vec<_> = devices_in(&scenario, domid).difference(&named).cloned().collect();
            assert!(
                missing.is_empty(),
                "{name}: domain {domid}: devices not explained: {missing:?} (named: {named:?})"
            );
            for dev in d["devices"].as_array().unwrap() {
                for key in ["class", "action", "rule", "reason"] {
                    assert!(dev[key].is_string(), "{name}: {key} of {dev}");
                }
                assert!(dev["evidence"].is_array());
            }
            for f in d["fields"].as_array().unwrap() {
                assert!(!f["provenance"].as_array().unwrap().is_empty(), "{name}: a field without provenance: {f}");
            }
        }
    }
}

/// `plan --dot` is a graph Graphviz accepts.
#[test]
fn plan_dot_is_valid_graphviz() {
    let dir = ScenarioDir::load(std::path::Path::new(DEMO));
    let host = LiveHost::start(&dir.scenario, dir.scheduler);
    let out = output(&mut host.xlsync(&["plan", "--all", "--dot"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dot = text(&out.stdout);
    assert!(dot.starts_with("digraph xlsync {"), "{dot}");
    for needle in ["cluster_d2", "force-unplug disk vdev xvdb", "before", "plans"] {
        assert!(dot.contains(needle), "{needle} missing from:\n{dot}");
    }
    let mut child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("graphviz `dot` is installed (.ci/run installs graphviz)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(dot.as_bytes()).unwrap();
    let svg = child.wait_with_output().unwrap();
    assert!(svg.status.success(), "dot rejected the graph: {}", text(&svg.stderr));
    assert!(text(&svg.stdout).contains("<svg"), "no SVG");
}
