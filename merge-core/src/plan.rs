//! The repair plan: ordered steps that bring the two replicas back into agreement.
//!
//! A plan is data. merge-core builds it and can simulate it ([`apply`], used by the
//! convergence law); the adapter carries it out against real files and a real xenstored.
//!
//! Order comes from a petgraph dependency graph, topologically sorted with ties broken by the
//! device's identity key, then by the step's phase, never by hash or insertion order:
//! - xenstore removals come before the JSON edit that forgets the device, so a crash in
//!   between leaves JSON ⊇ xenstore, the invariant libxl relies on;
//! - a frontend is removed only after its backend is Closed and reaped;
//! - a backend node is restored before the device's record is rewritten (a copy of the
//!   backend);
//! - a usbdev is added after its usb controller and removed before it;
//! - destroying a half-created domain comes after every other step (no-loss plans it alone:
//!   a domain about to be destroyed needs no other repair).

use crate::config::{DeviceArray, DomainConfig};
use crate::decision::Subject;
use crate::rules::{json_identity, DeviceKind, IdentityKey};
use crate::xenstore::{Node, Path, Tree};
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::Direction;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt;

/// What one step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Add a device recovered from xenstore to the JSON.
    AddJsonEntry { array: DeviceArray, entry: Value },
    /// Replace the JSON entry of this identity (e.g. the medium of a removable disk).
    RewriteJsonEntry { array: DeviceArray, entry: Value },
    /// Remove every JSON entry of this identity, or, with `only`, the entries equal to it
    /// (default-placed usbdevs share one identity).
    DropJsonEntry { array: DeviceArray, only: Option<Value> },
    /// Keep the first JSON entry of this identity (or equal to `only`), remove later ones.
    DedupJsonEntries { array: DeviceArray, only: Option<Value> },
    /// Wait for a plugging backend to reach Connected (4).
    WaitForConnection { backend: String, frontend: Option<String> },
    /// Finish (or force) an unplug that stopped half way, then destroy the device's nodes as
    /// `libxl__device_destroy` does.
    FinishUnplug { backend: String, record: Option<String>, frontend: Option<String>, force: bool },
    /// Remove one function from a PCI backend (`libxl__device_pci_remove_xenstore`).
    RemovePciFunction { backend: String, index: i32 },
    /// Remove leftover nodes (a Closed backend, a record or a backend with no device), or a
    /// backend value libxl's reader rejects that nothing says how to restore (and its copy in
    /// the record).
    ReapNodes { paths: Vec<String> },
    /// Remove a frontend no backend serves.
    RemoveStaleFrontend { path: String },
    /// Rewrite libxl's private record from the live backend.
    RewriteRecord { record: String, backend: String, frontend: Option<String> },
    /// Write back a backend node that libxl's reader rejects (a vtpm's `uuid`, which libxl
    /// reads from the backend) with the value the JSON holds; its permissions stay.
    RestoreBackendNode { path: String, value: String },
    /// Destroy a domain whose creation never committed its configuration (no userdata file):
    /// what libxl's own failure path does (`libxl__domain_destroy` from `domcreate_complete`),
    /// since the template (kernel, cmdline, disk formats, …) is nowhere in xenstore and the
    /// configuration asked for cannot be rebuilt. The domain's xenstore nodes go
    /// ([`destroyed_paths`]: its home, `/vm/<uuid>`, `/libxl/<D>`, backends and error nodes
    /// for it in every domain, its PCI assignments) and no userdata file is left.
    DestroyHalfCreatedDomain { domid: u32 },
}

impl Action {
    /// Order of steps of one device that have no explicit dependency.
    fn phase(&self) -> u8 {
        match self {
            Action::WaitForConnection { .. } => 0,
            // A rewritten record copies the backend: a backend node is restored first.
            Action::RestoreBackendNode { .. } => 1,
            Action::RewriteRecord { .. } => 2,
            Action::FinishUnplug { .. } => 3,
            Action::RemovePciFunction { .. } => 3,
            Action::ReapNodes { .. } => 4,
            Action::RemoveStaleFrontend { .. } => 5,
            Action::AddJsonEntry { .. } => 6,
            Action::RewriteJsonEntry { .. } => 6,
            Action::DedupJsonEntries { .. } => 7,
            Action::DropJsonEntry { .. } => 8,
            Action::DestroyHalfCreatedDomain { .. } => 9,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::AddJsonEntry { .. } => "add-json-entry",
            Action::RewriteJsonEntry { .. } => "rewrite-json-entry",
            Action::DropJsonEntry { .. } => "drop-json-entry",
            Action::DedupJsonEntries { .. } => "dedup-json-entries",
            Action::WaitForConnection { .. } => "wait-for-connection",
            Action::FinishUnplug { force: false, .. } => "finish-unplug",
            Action::FinishUnplug { force: true, .. } => "force-unplug",
            Action::RemovePciFunction { .. } => "remove-pci-function",
            Action::ReapNodes { .. } => "reap-nodes",
            Action::RemoveStaleFrontend { .. } => "remove-stale-frontend",
            Action::RewriteRecord { .. } => "rewrite-record",
            Action::RestoreBackendNode { .. } => "restore-backend-node",
            Action::DestroyHalfCreatedDomain { .. } => "destroy-half-created-domain",
        }
    }

    fn touches_json(&self) -> bool {
        self.phase() >= 6
    }
}

/// One step, about one device (or, to destroy it, the domain).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What the step repairs: [`Subject::Device`], or [`Subject::Domain`] for a domain-wide
    /// step. Never [`Subject::Field`].
    pub subject: Subject,
    pub action: Action,
    /// Why this step is needed (the decision's rule id).
    pub because: &'static str,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action.name(), self.subject)?;
        match &self.action {
            Action::WaitForConnection { backend, .. }
            | Action::FinishUnplug { backend, .. }
            | Action::RemovePciFunction { backend, .. } => write!(f, " ({backend})"),
            Action::ReapNodes { paths } => write!(f, " ({})", paths.join(", ")),
            Action::RemoveStaleFrontend { path } => write!(f, " ({path})"),
            Action::RewriteRecord { record, .. } => write!(f, " ({record})"),
            Action::RestoreBackendNode { path, value } => write!(f, " ({path} = {value})"),
            Action::DestroyHalfCreatedDomain { domid } => {
                write!(f, " (domid {domid}: its creation never committed the configuration)")
            }
            _ => Ok(()),
        }
    }
}

/// An ordered repair plan. Empty means the replicas agree.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Orders `steps` by their dependencies (see the module docs).
    pub fn ordered(steps: Vec<Step>) -> Plan {
        let graph = dependency_graph(steps);
        Plan { steps: toposort_stable(&graph) }
    }

    /// The dependency graph as DOT, nodes labelled with their steps.
    pub fn to_dot(&self) -> String {
        let graph = dependency_graph(self.steps.clone());
        let mut out = String::from("digraph plan {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n");
        for i in graph.node_indices() {
            out.push_str(&format!("  n{} [label=\"{}\"];\n", i.index(), dot_escape(&graph[i].to_string())));
        }
        for e in graph.edge_indices() {
            let (a, b) = graph.edge_endpoints(e).expect("edge");
            out.push_str(&format!("  n{} -> n{};\n", a.index(), b.index()));
        }
        out.push_str("}\n");
        out
    }
}

pub fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Devices by kind and identity key, then the domain (see [`Subject`]'s order).
fn sort_key(s: &Step) -> (Subject, u8) {
    (s.subject.clone(), s.action.phase())
}

fn dependency_graph(steps: Vec<Step>) -> StableDiGraph<Step, ()> {
    let mut g = StableDiGraph::new();
    let idx: Vec<NodeIndex> = steps.into_iter().map(|s| g.add_node(s)).collect();
    for &a in &idx {
        for &b in &idx {
            if a != b && must_precede(&g[a], &g[b]) {
                g.add_edge(a, b, ());
            }
        }
    }
    g
}

/// Whether step `a` must run before step `b`.
fn must_precede(a: &Step, b: &Step) -> bool {
    let destroys = |s: &Step| matches!(s.action, Action::DestroyHalfCreatedDomain { .. });
    if destroys(a) || destroys(b) {
        // Nothing is repaired on a destroyed domain.
        return !destroys(a);
    }
    if a.subject == b.subject {
        // Same device: xenstore work in phase order, and before any JSON edit.
        return a.action.phase() < b.action.phase() && (!a.action.touches_json() || b.action.touches_json());
    }
    let (Subject::Device { kind: a_kind, key: a_key }, Subject::Device { kind: b_kind, key: b_key }) =
        (&a.subject, &b.subject)
    else {
        return false;
    };
    let ctrl_of = |key: &IdentityKey| match key {
        IdentityKey::CtrlPort { ctrl, .. } => Some(*ctrl),
        _ => None,
    };
    match (a_kind, b_kind) {
        // A usbdev is added after its controller…
        (DeviceKind::Usbctrl, DeviceKind::Usbdev) => {
            matches!(a.action, Action::AddJsonEntry { .. })
                && matches!(b.action, Action::AddJsonEntry { .. })
                && Some(IdentityKey::Devid(ctrl_of(b_key).unwrap_or(i64::MIN))) == Some(a_key.clone())
        }
        // …and removed before it.
        (DeviceKind::Usbdev, DeviceKind::Usbctrl) => {
            !matches!(a.action, Action::AddJsonEntry { .. })
                && !matches!(b.action, Action::AddJsonEntry { .. })
                && Some(IdentityKey::Devid(ctrl_of(a_key).unwrap_or(i64::MIN))) == Some(b_key.clone())
        }
        _ => false,
    }
}

/// Kahn's algorithm with the ready set ordered by [`sort_key`]: deterministic whatever the
/// insertion order.
fn toposort_stable(g: &StableDiGraph<Step, ()>) -> Vec<Step> {
    let mut indegree: std::collections::BTreeMap<NodeIndex, usize> =
        g.node_indices().map(|i| (i, g.neighbors_directed(i, Direction::Incoming).count())).collect();
    let mut ready: BTreeSet<((Subject, u8), NodeIndex)> =
        indegree.iter().filter(|(_, d)| **d == 0).map(|(i, _)| (sort_key(&g[*i]), *i)).collect();
    let mut out = Vec::with_capacity(g.node_count());
    while let Some(first) = ready.iter().next().cloned() {
        ready.remove(&first);
        let i = first.1;
        out.push(g[i].clone());
        for n in g.neighbors_directed(i, Direction::Outgoing) {
            let d = indegree.get_mut(&n).expect("node");
            *d -= 1;
            if *d == 0 {
                ready.insert((sort_key(&g[n]), n));
            }
        }
    }
    // The relation is a strict order on phases and on controller ids, so there is no cycle;
    // should one appear, keep the remaining steps rather than lose them.
    if out.len() < g.node_count() {
        let mut rest: Vec<Step> = g.node_indices().map(|i| g[i].clone()).filter(|s| !out.contains(s)).collect();
        rest.sort_by_key(sort_key);
        out.extend(rest);
    }
    out
}

fn path(s: &str) -> Option<Path> {
    Path::new(s).ok()
}

/// Simulates the plan on both replicas: what the adapter's repair would leave behind, for a
/// plan that keeps the domain. A plan that destroys it leaves no JSON, which only
/// [`apply_replicas`] can say; here the JSON then comes back unchanged.
pub fn apply(plan: &Plan, json: &DomainConfig, tree: &Tree) -> (DomainConfig, Tree) {
    let (cfg, tree) = apply_replicas(plan, json, tree);
    (cfg.unwrap_or_else(|| json.clone()), tree)
}

impl Plan {
    /// Whether the plan destroys the domain (and so leaves no userdata file).
    pub fn destroys_domain(&self) -> bool {
        self.steps.iter().any(|s| matches!(s.action, Action::DestroyHalfCreatedDomain { .. }))
    }
}

/// Simulates the plan on both replicas, starting from `json` (for a domain without a
/// userdata file, the file the repair would start). The JSON is `None` where the plan
/// destroys the domain: its userdata file goes with it.
pub fn apply_replicas(plan: &Plan, json: &DomainConfig, tree: &Tree) -> (Option<DomainConfig>, Tree) {
    let mut cfg = Some(json.clone());
    let mut tree = tree.clone();
    for step in &plan.steps {
        // JSON edits find their entries by the device's identity.
        let device = match &step.subject {
            Subject::Device { kind, key } => Some((kind.rule(), key)),
            _ => None,
        };
        let same = |e: &Value, i: usize| device.is_some_and(|(rule, key)| json_identity(rule, e, i) == *key);
        if let Action::DestroyHalfCreatedDomain { domid } = &step.action {
            let plain_rm = [format!("/local/domain/{domid}"), format!("/libxl/{domid}")];
            for p in destroyed_paths(&tree, *domid) {
                tree.remove_subtree(&p);
                // The home, `/vm/<uuid>` and `/libxl/<D>` go by a plain rm; device and PCI
                // nodes by `libxl__xs_path_cleanup`, with the parents they leave empty.
                if !plain_rm.iter().any(|r| r == p.as_str()) && !p.as_str().starts_with("/vm/") {
                    prune_empty_parents(&mut tree, &p);
                }
            }
            cfg = None;
            continue;
        }
        let Some(cfg) = cfg.as_mut() else { continue };
        match &step.action {
            Action::AddJsonEntry { array, entry } => {
                let mut v = cfg.devices(*array).to_vec();
                v.push(entry.clone());
                cfg.set_devices(*array, v);
            }
            Action::RewriteJsonEntry { array, entry } => {
                let mut v = cfg.devices(*array).to_vec();
                if let Some(i) = (0..v.len()).find(|i| same(&v[*i], *i)) {
                    v[i] = entry.clone();
                }
                cfg.set_devices(*array, v);
            }
            Action::DropJsonEntry { array, only } => {
                let v: Vec<Value> = cfg
                    .devices(*array)
                    .iter()
                    .enumerate()
                    .filter(|(i, e)| match only {
                        Some(o) => *e != o,
                        None => !same(e, *i),
                    })
                    .map(|(_, e)| e.clone())
                    .collect();
                cfg.set_devices(*array, v);
            }
            Action::DedupJsonEntries { array, only } => {
                let mut seen = false;
                let v: Vec<Value> = cfg
                    .devices(*array)
                    .iter()
                    .enumerate()
                    .filter(|(i, e)| {
                        let same = match only {
                            Some(o) => *e == o,
                            None => same(e, *i),
                        };
                        if !same {
                            return true;
                        }
                        !std::mem::replace(&mut seen, true)
                    })
                    .map(|(_, e)| e.clone())
                    .collect();
                cfg.set_devices(*array, v);
            }
            Action::WaitForConnection { backend, frontend } => {
                for dir in std::iter::once(backend).chain(frontend.iter()) {
                    if let Some(p) = path(&format!("{dir}/state")) {
                        tree.insert(p, Node::new(b"4".to_vec()));
                    }
                }
                if let Some(p) = path(&format!("{backend}/hotplug-status")) {
                    if tree.contains(&p) {
                        tree.insert(p, Node::new(b"connected".to_vec()));
                    }
                }
            }
            Action::FinishUnplug { backend, record, frontend, .. } => {
                for dir in std::iter::once(backend).chain(record.iter()).chain(frontend.iter()) {
                    if let Some(p) = path(dir) {
                        tree.remove_subtree(&p);
                    }
                }
            }
            Action::RemovePciFunction { backend, index } => remove_pci_function(&mut tree, backend, *index),
            Action::ReapNodes { paths } => {
                for dir in paths {
                    if let Some(p) = path(dir) {
                        tree.remove_subtree(&p);
                    }
                }
            }
            Action::RemoveStaleFrontend { path: dir } => {
                if let Some(p) = path(dir) {
                    tree.remove_subtree(&p);
                }
            }
            Action::RewriteRecord { record, backend, frontend } => {
                let (Some(rp), Some(bp)) = (path(record), path(backend)) else { continue };
                tree.remove_subtree(&rp);
                let copies: Vec<(String, Node)> = tree
                    .subtree(&bp)
                    .filter(|(p, _)| p.parent().as_ref() == Some(&bp))
                    .map(|(p, n)| (p.name().to_string(), Node::new(n.value.clone())))
                    .collect();
                tree.insert(rp.clone(), Node::new(Vec::new()));
                for (name, n) in copies {
                    if let Ok(p) = rp.join(&name) {
                        tree.insert(p, n);
                    }
                }
                if let Ok(p) = rp.join("backend") {
                    tree.insert(p, Node::new(backend.as_bytes().to_vec()));
                }
                if let (Some(f), Ok(p)) = (frontend, rp.join("frontend")) {
                    tree.insert(p, Node::new(f.as_bytes().to_vec()));
                }
            }
            Action::RestoreBackendNode { path: node, value } => {
                if let Some(p) = path(node) {
                    let perms = tree.get(&p).and_then(|n| n.perms.clone());
                    tree.insert(p, Node::new(value.as_bytes().to_vec()).with_perms(perms));
                }
            }
            // Done above, before the JSON is needed.
            Action::DestroyHalfCreatedDomain { .. } => {}
        }
    }
    (cfg, tree)
}

/// The subtrees destroying domain `domid` removes, as libxl's destroy does: its home
/// `/local/domain/<D>`, the `/vm/<uuid>` its `vm` node names, `/libxl/<D>`, in every domain
/// its backends `backend/<kind>/<D>`, error nodes `error/backend/<kind>/<D>` and
/// `device-model/<D>`, and every `/libxl/pci/<bdf>` assigned to it.
pub fn destroyed_paths(tree: &Tree, domid: u32) -> Vec<Path> {
    let home = format!("/local/domain/{domid}");
    let mut out: Vec<Path> = [home.clone(), format!("/libxl/{domid}")].iter().filter_map(|p| path(p)).collect();
    if let Some(vm) = tree.text(&format!("{home}/vm")).filter(|v| v.starts_with("/vm/")).and_then(path) {
        out.push(vm);
    }
    for other in tree.children_of_str("/local/domain") {
        let base = format!("/local/domain/{other}");
        for area in ["backend", "error/backend"] {
            for kind in tree.children_of_str(&format!("{base}/{area}")) {
                out.extend(path(&format!("{base}/{area}/{kind}/{domid}")));
            }
        }
        out.extend(path(&format!("{base}/device-model/{domid}")));
    }
    for bdf in tree.children_of_str("/libxl/pci") {
        if tree.text(&format!("/libxl/pci/{bdf}/domid")) == Some(domid.to_string().as_str()) {
            out.extend(path(&format!("/libxl/pci/{bdf}")));
        }
    }
    out.retain(|p| tree.exists(p));
    out
}

/// Removes the ancestors of `removed` left without children, as `libxl__xs_path_cleanup`
/// does, but never a domain's home `/local/domain/<B>`.
fn prune_empty_parents(tree: &mut Tree, removed: &Path) {
    let mut at = removed.parent();
    while let Some(p) = at {
        let home = p.parent().is_some_and(|d| d.as_str() == "/local/domain");
        if p.is_root() || home || tree.has_descendants(&p) {
            return;
        }
        tree.remove(&p);
        at = p.parent();
    }
}

/// Removes function `index` from a pci backend and shifts the higher ones down, as libxl does;
/// the last one takes the backend (and the guest's pci frontend) with it.
fn remove_pci_function(tree: &mut Tree, backend: &str, index: i32) {
    let Some(bp) = path(backend) else { return };
    let num: i32 = tree.text(&format!("{backend}/num_devs")).and_then(|v| v.parse().ok()).unwrap_or(0);
    const KEYS: [&str; 7] = ["state", "key", "dev", "vdev", "opts", "vdevfn", "name"];
    for k in KEYS {
        if let Some(p) = path(&format!("{backend}/{k}-{index}")) {
            tree.remove(&p);
        }
    }
    for j in index + 1..num {
        for k in KEYS {
            let (Some(from), Some(to)) =
                (path(&format!("{backend}/{k}-{j}")), path(&format!("{backend}/{k}-{}", j - 1)))
            else {
                continue;
            };
            if let Some(n) = tree.remove(&from) {
                tree.insert(to, n);
            }
        }
    }
    let left = (num - 1).max(0);
    if left == 0 {
        let frontend = tree.text(&format!("{backend}/frontend")).map(str::to_string);
        tree.remove_subtree(&bp);
        if let Some(fp) = frontend.as_deref().and_then(path) {
            tree.remove_subtree(&fp);
        }
    } else if let Some(p) = path(&format!("{backend}/num_devs")) {
        tree.insert(p, Node::new(left.to_string().into_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destroy(domid: u32) -> Step {
        Step {
            subject: Subject::Domain,
            action: Action::DestroyHalfCreatedDomain { domid },
            because: "noloss.domain.creation-unfinished",
        }
    }

    fn nic_step(devid: i64, action: Action) -> Step {
        Step {
            subject: Subject::Device { kind: DeviceKind::Nic, key: IdentityKey::Devid(devid) },
            action,
            because: "test",
        }
    }

    fn tree_of(nodes: &[(&str, &str)]) -> Tree {
        let mut tree = Tree::new();
        for (p, v) in nodes {
            tree.insert_with_parents(Path::new(p).unwrap(), Node::new(v.as_bytes().to_vec()), None);
        }
        tree
    }

    #[test]
    fn destroying_comes_after_every_other_step_and_prints_stably() {
        let reap = nic_step(0, Action::ReapNodes { paths: vec!["/libxl/5/device/vif/0".into()] });
        let drop = nic_step(1, Action::DropJsonEntry { array: DeviceArray::Nics, only: None });
        let plan = Plan::ordered(vec![destroy(5), drop.clone(), reap.clone()]);
        assert_eq!(plan.steps, vec![reap, drop, destroy(5)]);
        let text = "destroy-half-created-domain domain (domid 5: its creation never committed the configuration)";
        assert_eq!(plan.steps[2].to_string(), text);
        let dot = plan.to_dot();
        assert!(dot.contains(&format!("label=\"{text}\"")), "{dot}");
        // Both other steps point at the destroy.
        assert_eq!(dot.matches(" -> n2;").count(), 2, "{dot}");
    }

    #[test]
    fn destroying_removes_the_domains_nodes_everywhere_and_its_json() {
        let others = [
            ("/local/domain/0/name", "Domain-0"),
            ("/local/domain/0/backend/vif/7/0/state", "4"),
            ("/local/domain/2/name", "driver"),
            ("/local/domain/7/vm", "/vm/u7"),
            ("/vm/u7/name", "other"),
            ("/libxl/7/type", "pv"),
            ("/libxl/pci/0000-04-00-0/domid", "7"),
        ];
        let doomed = [
            ("/local/domain/5/vm", "/vm/u5"),
            ("/local/domain/5/device/vif/0/state", "4"),
            ("/local/domain/0/backend/vif/5/0/state", "4"),
            ("/local/domain/2/backend/vbd/5/51712/state", "4"),
            ("/local/domain/0/error/backend/vif/5/0/error", "hotplug failed"),
            ("/local/domain/0/device-model/5/state", "running"),
            ("/vm/u5/name", "guest"),
            ("/libxl/5/type", "pv"),
            ("/libxl/pci/0000-03-00-0/domid", "5"),
        ];
        let all: Vec<(&str, &str)> = others.iter().chain(doomed.iter()).copied().collect();
        let plan = Plan::ordered(vec![destroy(5)]);
        assert!(plan.destroys_domain());
        let (json, tree) = apply_replicas(&plan, &DomainConfig::default(), &tree_of(&all));
        assert_eq!(json, None);
        // Emptied backend, error, device-model and PCI directories go with the domain.
        assert_eq!(tree.diff(&tree_of(&others)), vec![]);
    }
}
