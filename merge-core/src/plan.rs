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
//! - a usbdev is added after its usb controller and removed before it.

use crate::config::{DeviceArray, DomainConfig};
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
    /// Remove leftover nodes (a Closed backend, a record or a backend with no device).
    ReapNodes { paths: Vec<String> },
    /// Remove a frontend no backend serves.
    RemoveStaleFrontend { path: String },
    /// Rewrite libxl's private record from the live backend.
    RewriteRecord { record: String, backend: String, frontend: Option<String> },
}

impl Action {
    /// Order of steps of one device that have no explicit dependency.
    fn phase(&self) -> u8 {
        match self {
            Action::WaitForConnection { .. } => 0,
            Action::RewriteRecord { .. } => 1,
            Action::FinishUnplug { .. } => 2,
            Action::RemovePciFunction { .. } => 2,
            Action::ReapNodes { .. } => 3,
            Action::RemoveStaleFrontend { .. } => 4,
            Action::AddJsonEntry { .. } => 5,
            Action::RewriteJsonEntry { .. } => 5,
            Action::DedupJsonEntries { .. } => 6,
            Action::DropJsonEntry { .. } => 7,
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
        }
    }

    fn touches_json(&self) -> bool {
        self.phase() >= 5
    }
}

/// One step, about one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub kind: DeviceKind,
    pub key: IdentityKey,
    pub action: Action,
    /// Why this step is needed (the decision's rule id).
    pub because: &'static str,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.action.name(), self.kind, self.key)?;
        match &self.action {
            Action::WaitForConnection { backend, .. }
            | Action::FinishUnplug { backend, .. }
            | Action::RemovePciFunction { backend, .. } => write!(f, " ({backend})"),
            Action::ReapNodes { paths } => write!(f, " ({})", paths.join(", ")),
            Action::RemoveStaleFrontend { path } => write!(f, " ({path})"),
            Action::RewriteRecord { record, .. } => write!(f, " ({record})"),
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

fn sort_key(s: &Step) -> (DeviceKind, IdentityKey, u8) {
    (s.kind, s.key.clone(), s.action.phase())
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
    if a.kind == b.kind && a.key == b.key {
        // Same device: xenstore work in phase order, and before any JSON edit.
        return a.action.phase() < b.action.phase() && (!a.action.touches_json() || b.action.touches_json());
    }
    let ctrl_of = |s: &Step| match s.key {
        IdentityKey::CtrlPort { ctrl, .. } => Some(ctrl),
        _ => None,
    };
    match (a.kind, b.kind) {
        // A usbdev is added after its controller…
        (DeviceKind::Usbctrl, DeviceKind::Usbdev) => {
            matches!(a.action, Action::AddJsonEntry { .. })
                && matches!(b.action, Action::AddJsonEntry { .. })
                && Some(IdentityKey::Devid(ctrl_of(b).unwrap_or(i64::MIN))) == Some(a.key.clone())
        }
        // …and removed before it.
        (DeviceKind::Usbdev, DeviceKind::Usbctrl) => {
            !matches!(a.action, Action::AddJsonEntry { .. })
                && !matches!(b.action, Action::AddJsonEntry { .. })
                && Some(IdentityKey::Devid(ctrl_of(a).unwrap_or(i64::MIN))) == Some(b.key.clone())
        }
        _ => false,
    }
}

/// Kahn's algorithm with the ready set ordered by [`sort_key`]: deterministic whatever the
/// insertion order.
fn toposort_stable(g: &StableDiGraph<Step, ()>) -> Vec<Step> {
    let mut indegree: std::collections::BTreeMap<NodeIndex, usize> =
        g.node_indices().map(|i| (i, g.neighbors_directed(i, Direction::Incoming).count())).collect();
    let mut ready: BTreeSet<((DeviceKind, IdentityKey, u8), NodeIndex)> =
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

/// Simulates the plan on both replicas: what the adapter's repair would leave behind.
pub fn apply(plan: &Plan, json: &DomainConfig, tree: &Tree) -> (DomainConfig, Tree) {
    let mut cfg = json.clone();
    let mut tree = tree.clone();
    for step in &plan.steps {
        let rule = step.kind.rule();
        match &step.action {
            Action::AddJsonEntry { array, entry } => {
                let mut v = cfg.devices(*array).to_vec();
                v.push(entry.clone());
                cfg.set_devices(*array, v);
            }
            Action::RewriteJsonEntry { array, entry } => {
                let mut v = cfg.devices(*array).to_vec();
                if let Some(i) = (0..v.len()).find(|i| json_identity(rule, &v[*i], *i) == step.key) {
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
                        None => json_identity(rule, e, *i) != step.key,
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
                            None => json_identity(rule, e, *i) == step.key,
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
        }
    }
    (cfg, tree)
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
