//! The five recorded oracle runs of ../shared/oracle-spike: under `Policy::Libxl417` the engine
//! must print what the real `xl list -l` printed, byte for byte, and log the same lines.

use merge_core::config::DomainConfig;
use merge_core::hypervisor::{HostInfo, Scheduler};
use merge_core::reconcile::{reconcile, xl_list_json, Inputs, JsonReplica, Policy};
use merge_core::xenstore::{Node, Path, Tree};
use std::path::PathBuf;

fn spike(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/oracle-spike/scenarios")).join(name)
}

/// The scenario format: `path=value` lines, plus what run.sh writes first.
fn scenario_tree(text: &str) -> Tree {
    let mut tree = Tree::new();
    let base = ["/local/domain/0/domid=0", "/local/domain/0/name=Domain-0", "/local/pool/0/name=Pool-0"];
    for line in base.iter().copied().chain(text.lines()) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (p, v) = line.split_once('=').expect("path=value");
        tree.insert_with_parents(Path::new(p).unwrap(), Node::new(v.as_bytes().to_vec()), None);
    }
    tree
}

fn run(name: &str) -> (String, Vec<String>) {
    let dir = spike(name);
    let tree = scenario_tree(&std::fs::read_to_string(dir.join("xenstore.txt")).unwrap());
    let sched = std::fs::read_to_string(dir.join("env.sh"))
        .ok()
        .and_then(|s| s.split("XLSHIM_SCHED=").nth(1).map(|v| v.trim().to_string()))
        .map(|s| Scheduler::parse(&s).unwrap())
        .unwrap_or(Scheduler::Credit2);
    let host = HostInfo::parse_domains_txt(&std::fs::read_to_string(dir.join("domains.txt")).unwrap(), sched).unwrap();
    let json = match std::fs::read(dir.join("1.libxl-json")) {
        Ok(bytes) => JsonReplica::Present(DomainConfig::from_object(serde_json::from_slice(&bytes).unwrap())),
        Err(_) => JsonReplica::Missing,
    };
    let outcome = reconcile(Inputs { domid: 1, json: &json, tree: &tree, host: &host }, Policy::Libxl417);
    (xl_list_json(std::slice::from_ref(&outcome)), outcome.stderr_lines())
}

fn expected(name: &str) -> (String, Vec<String>) {
    let out = spike(name).join("out");
    let stdout = std::fs::read_to_string(out.join("xl-list-l.json")).unwrap();
    let stderr = std::fs::read_to_string(out.join("xl-stderr.txt")).unwrap();
    (stdout, stderr.lines().map(str::to_string).collect())
}

#[test]
fn spike_scenarios_match_the_real_libxl() {
    for name in ["a-agree", "b-json-extra-disk", "c-xenstore-extra-nic", "d-runtime-overrides", "e-no-json"] {
        let (got_out, got_err) = run(name);
        let (want_out, want_err) = expected(name);
        assert_eq!(got_out, want_out, "stdout of scenario {name}");
        assert_eq!(got_err, want_err, "stderr of scenario {name}");
    }
}

/// The same five states under the default policy: what no-loss concludes differently.
#[test]
fn spike_scenarios_under_no_loss() {
    use merge_core::decision::{Action, Class};
    let outcome = |name: &str| {
        let dir = spike(name);
        let tree = scenario_tree(&std::fs::read_to_string(dir.join("xenstore.txt")).unwrap());
        let host =
            HostInfo::parse_domains_txt(&std::fs::read_to_string(dir.join("domains.txt")).unwrap(), Scheduler::Credit2)
                .unwrap();
        let json = match std::fs::read(dir.join("1.libxl-json")) {
            Ok(bytes) => JsonReplica::Present(DomainConfig::from_object(serde_json::from_slice(&bytes).unwrap())),
            Err(_) => JsonReplica::Missing,
        };
        reconcile(Inputs { domid: 1, json: &json, tree: &tree, host: &host }, Policy::NoLoss)
    };
    // a: nothing half-baked, nothing to repair.
    let a = outcome("a-agree");
    assert!(!a.is_half_baked(), "{:#?}", a.decisions);
    assert!(a.plan.is_empty(), "{:?}", a.plan);
    // b: the JSON-only disk is dropped, with a reason and a plan to prune the JSON.
    let b = outcome("b-json-extra-disk");
    let d = b.decisions.iter().find(|d| d.class == Class::JsonOnly).expect("a json-only decision");
    assert_eq!(d.action, Action::Dropped);
    assert!(d.subject.to_string().contains("xvdb"), "{}", d.subject);
    assert_eq!(b.plan.steps.len(), 1, "{:?}", b.plan);
    // c: the xenstore-only nic is recovered, not lost.
    let c = outcome("c-xenstore-extra-nic");
    let nics = c.config.as_ref().unwrap().devices(merge_core::config::DeviceArray::Nics).to_vec();
    assert_eq!(nics.len(), 2, "{nics:?}");
    assert_eq!(nics[1]["mac"], "00:16:3e:44:55:66");
    assert_eq!(nics[1]["bridge"], "xenbr1");
    assert!(c.decisions.iter().any(|d| d.class == Class::Recovered && d.action == Action::Recovered));
    // e: no JSON at all: rebuilt from xenstore rather than omitted.
    let e = outcome("e-no-json");
    let cfg = e.config.as_ref().unwrap();
    assert_eq!(cfg.name(), Some("guest1"));
    assert_eq!(cfg.devices(merge_core::config::DeviceArray::Disks).len(), 1);
}
