//! The state of a domain while libxl's protocols run on it, and one step of those protocols.
//!
//! A [`World`] is the two replicas ([`Replicas`]: the userdata JSON and the xenstore tree) plus
//! the processes working on them ([`Proc`]), each running one [`Operation`]: an ordered list of
//! [`StepDef`]s, the observable writes of spec §4 in their order. A step has one normal
//! [`Action`] and may have failure [`Alternative`]s; any running process may also crash before
//! its next step. Moves are pure: [`World::apply`] returns the next world and the [`Effect`],
//! the exact xenstore operations and JSON write the move made, so that the same move can be
//! replayed against a real xenstored.
//!
//! Locks follow libxl 4.17: `json_lock` (the userdata lock, taken by every add path, by cdrom
//! insert and twice by retrieve) and the device-changes lock (taken only by cdrom insert and
//! retrieve). A lock held by a process that crashes or fails is released, as `flock` is when
//! the process dies or the AO's exit path runs.

use crate::config::{DeviceArray, DomainConfig};
use crate::reconcile::JsonReplica;
use crate::rules::{json_identity, RULES};
use crate::xenstore::{Node, Path, Perms, Tree};
use serde_json::Value;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The two replicas of one domain's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Replicas {
    pub json: JsonReplica,
    pub tree: Tree,
}

impl Replicas {
    /// A content hash, for de-duplicating states (equal replicas hash equally).
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        hash_json(&self.json, &mut h);
        for (p, n) in self.tree.iter() {
            p.hash(&mut h);
            n.hash(&mut h);
        }
        h.finish()
    }

    /// The JSON as a config, if there is one.
    pub fn config(&self) -> Option<&DomainConfig> {
        match &self.json {
            JsonReplica::Present(c) => Some(c),
            _ => None,
        }
    }
}

fn hash_json(json: &JsonReplica, h: &mut impl Hasher) {
    match json {
        JsonReplica::Present(c) => c.to_libxl_json().hash(h),
        other => format!("{other:?}").hash(h),
    }
}

/// One xenstore operation, with everything resolved: a write carries the permissions the node
/// ends up with, so replaying it on a daemon (write, then set-perms) gives the same node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum XsOp {
    Write {
        path: Path,
        value: Vec<u8>,
        perms: Option<Perms>,
    },
    /// Removes the node and everything below it (xenstore's `rm`).
    Rm {
        path: Path,
    },
}

impl XsOp {
    pub fn apply(&self, tree: &mut Tree) {
        match self {
            XsOp::Write { path, value, perms } => {
                tree.insert(path.clone(), Node::new(value.clone()).with_perms(perms.clone()));
            }
            XsOp::Rm { path } => {
                tree.remove_subtree(path);
            }
        }
    }
}

impl fmt::Display for XsOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XsOp::Write { path, value, .. } => write!(f, "write {path} = {:?}", String::from_utf8_lossy(value)),
            XsOp::Rm { path } => write!(f, "rm {path}"),
        }
    }
}

/// What one move changed: xenstore operations committed atomically (one transaction, or one
/// single write), and the JSON file if it was written.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Effect {
    pub xs: Vec<XsOp>,
    pub json: Option<JsonReplica>,
}

impl Effect {
    pub fn is_empty(&self) -> bool {
        self.xs.is_empty() && self.json.is_none()
    }
}

/// A write as a protocol describes it. `perms: None` keeps the node's permissions, or gives a
/// new node its parent's, as xenstored does for a dom0 writer.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    Write {
        path: Path,
        value: Vec<u8>,
        perms: Option<Perms>,
    },
    Rm {
        path: Path,
    },
    /// `libxl__xs_path_cleanup`: remove the node, then every ancestor left without children.
    Cleanup {
        path: Path,
    },
}

impl Edit {
    pub fn write(path: &Path, value: &str) -> Edit {
        Edit::Write { path: path.clone(), value: value.as_bytes().to_vec(), perms: None }
    }

    /// A node exactly as rendered.
    pub fn node(path: &Path, node: &Node) -> Edit {
        Edit::Write { path: path.clone(), value: node.value.to_vec(), perms: node.perms.clone() }
    }
}

/// How a process changes the JSON it read.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonEdit {
    /// Read only.
    Keep,
    /// `device_add_domain_config`: the last entry with the same identity is replaced, else the
    /// entry is appended.
    AddOrReplace { array: DeviceArray, entry: Value },
}

impl JsonEdit {
    /// Applies the edit to a config.
    pub fn apply_to(&self, config: &mut DomainConfig) {
        let JsonEdit::AddOrReplace { array, entry } = self else { return };
        let rule = RULES.iter().find(|r| r.array == Some(*array)).expect("every array has a rule");
        let mut items = config.devices(*array).to_vec();
        let key = json_identity(rule, entry, items.len());
        match (0..items.len()).rev().find(|i| json_identity(rule, &items[*i], *i) == key) {
            Some(i) => items[i] = entry.clone(),
            None => items.push(entry.clone()),
        }
        config.set_devices(*array, items);
    }
}

/// What one step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Take json_lock (waits while another process holds it) and read the JSON into the
    /// process's copy, changed by the edit.
    LockReadJson(JsonEdit),
    /// Take json_lock without reading.
    LockJson,
    /// Write the process's JSON copy (write the `-n` file, rename it: atomic).
    WriteJson,
    /// Write this JSON (domain creation's first write).
    WriteJsonValue(Box<DomainConfig>),
    UnlockJson,
    /// Take the device-changes lock (waits while another process holds it).
    LockDev,
    UnlockDev,
    /// Xenstore writes committed at once: one transaction, or one write outside any.
    Xs(Vec<Edit>),
    /// Enabled only while `path` exists (a backend driver reacts to its own nodes).
    Requires(Path, Box<Action>),
    /// Read the PCI backend's `num_devs` (outside any lock and transaction) into the process.
    ReadPciCount {
        backend: Path,
    },
    /// Commit one PCI function at the index read by [`Action::ReadPciCount`].
    PciCommit(Arc<PciAdd>),
    /// `libxl__device_pci_remove_xenstore`'s first transaction: `state-i = 5`, `state = 7`.
    PciMarkClosing {
        backend: Path,
        bdf: String,
    },
    /// Its second transaction: remove the function's keys and shift the higher ones down.
    PciRemoveKeys {
        backend: Path,
        bdf: String,
    },
    /// If the backend has no function left, `libxl__device_destroy` of frontend and backend.
    PciDestroyIfEmpty {
        backend: Path,
        frontend: Path,
    },
    /// Something neither replica shows (QMP, sysfs, a hypercall).
    Invisible,
    /// Retrieve's first userdata-lock section: read the JSON.
    RetrieveReadJson,
    /// Retrieve's second userdata-lock section: read xenstore. The observation is the JSON
    /// read before and the tree now.
    RetrieveReadXenstore,
    /// Several actions as one step, in order (e.g. commit, then release the lock).
    Seq(Vec<Action>),
}

/// The nodes a PCI attach writes.
#[derive(Debug, Clone, PartialEq)]
pub struct PciAdd {
    /// Backend and frontend nodes written when the function is the first one.
    pub create: Vec<(Path, Node)>,
    /// The function's keys as they are for index 0 (`dev-0`, `key-0`, …).
    pub slot0: Vec<(Path, Node)>,
    pub backend: Path,
}

/// What happens after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Next,
    /// Continue at this step.
    Goto(usize),
    /// The operation ends with an error.
    Fail,
}

/// Who performs a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Libxl,
    /// The backend driver (blkback, netback, pciback, QEMU).
    Backend,
    /// The guest's frontend driver.
    Guest,
    /// A hotplug script run by libxl.
    Script,
    /// The retrieve (`xl list -l`).
    Retrieve,
}

/// A failure edge of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Alternative {
    pub label: String,
    pub action: Action,
    pub then: Then,
}

/// One observable step of a protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDef {
    pub label: String,
    pub actor: Actor,
    pub action: Action,
    pub then: Then,
    pub alternatives: Vec<Alternative>,
}

impl StepDef {
    pub fn new(label: impl Into<String>, actor: Actor, action: Action) -> StepDef {
        StepDef { label: label.into(), actor, action, then: Then::Next, alternatives: Vec::new() }
    }

    pub fn then(mut self, then: Then) -> StepDef {
        self.then = then;
        self
    }

    pub fn or(mut self, label: impl Into<String>, action: Action, then: Then) -> StepDef {
        self.alternatives.push(Alternative { label: label.into(), action, then });
        self
    }
}

/// One protocol run: a named list of steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Unique within a world, e.g. `nic 1 hot-add`.
    pub name: String,
    pub steps: Vec<StepDef>,
    /// Whether the process can crash (the retrieve only observes).
    pub crashable: bool,
}

/// Where a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// About to run this step.
    Running(usize),
    Done,
    /// Ended by a failure edge.
    Failed,
    /// Died (a crash point).
    Crashed,
}

impl Status {
    pub fn is_running(self) -> bool {
        matches!(self, Status::Running(_))
    }
}

/// One process running one operation.
#[derive(Debug, Clone)]
pub struct Proc {
    pub op: Arc<Operation>,
    pub status: Status,
    /// The JSON this process read (and changed in memory).
    pub json_copy: Option<JsonReplica>,
    /// `num_devs` as read by a PCI attach.
    pub pci_count: Option<u32>,
    /// What a retrieve saw: the JSON of its first lock section and the tree of its second.
    pub observed: Option<Replicas>,
}

impl PartialEq for Proc {
    fn eq(&self, other: &Proc) -> bool {
        self.op.name == other.op.name
            && self.status == other.status
            && self.json_copy == other.json_copy
            && self.pci_count == other.pci_count
            && self.observed == other.observed
    }
}

impl Proc {
    pub fn new(op: Operation) -> Proc {
        Proc { op: Arc::new(op), status: Status::Running(0), json_copy: None, pci_count: None, observed: None }
    }

    /// The step about to run.
    pub fn step(&self) -> Option<&StepDef> {
        match self.status {
            Status::Running(pc) => self.op.steps.get(pc),
            _ => None,
        }
    }
}

/// Which edge a move takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Choice {
    /// The step's normal action.
    Step,
    /// Failure alternative number `k`.
    Fail(usize),
    /// The process dies before its next step.
    Crash,
}

/// One possible move: process `proc` takes `choice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Move {
    pub proc: usize,
    pub choice: Choice,
}

/// The replicas and every process working on them.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    pub replicas: Replicas,
    pub procs: Vec<Proc>,
    /// The process holding json_lock.
    pub json_lock: Option<usize>,
    /// The process holding the device-changes lock.
    pub dev_lock: Option<usize>,
}

/// Why a move cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    #[error("process {0} does not exist")]
    NoSuchProcess(usize),
    #[error("process {0} is not running")]
    NotRunning(usize),
    #[error("process {proc} cannot take {choice:?} now (a lock is held, a node is missing, or no such edge)")]
    Disabled { proc: usize, choice: Choice },
}

impl World {
    pub fn new(replicas: Replicas) -> World {
        World { replicas, procs: Vec::new(), json_lock: None, dev_lock: None }
    }

    /// Starts a process; returns its index.
    pub fn start(&mut self, op: Operation) -> usize {
        self.procs.push(Proc::new(op));
        self.procs.len() - 1
    }

    /// A content hash of the whole world (replicas, processes, locks).
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.replicas.fingerprint().hash(&mut h);
        for p in &self.procs {
            p.op.name.hash(&mut h);
            p.status.hash(&mut h);
            if let Some(j) = &p.json_copy {
                hash_json(j, &mut h);
            }
            p.pci_count.hash(&mut h);
            p.observed.as_ref().map(Replicas::fingerprint).hash(&mut h);
        }
        self.json_lock.hash(&mut h);
        self.dev_lock.hash(&mut h);
        h.finish()
    }

    /// Every move possible now, in a stable order (by process, then step, failures, crash).
    pub fn moves(&self) -> Vec<Move> {
        let mut out = Vec::new();
        for (i, p) in self.procs.iter().enumerate() {
            let Some(step) = p.step() else { continue };
            if self.enabled(i, &step.action) {
                out.push(Move { proc: i, choice: Choice::Step });
            }
            for (k, alt) in step.alternatives.iter().enumerate() {
                if self.enabled(i, &alt.action) {
                    out.push(Move { proc: i, choice: Choice::Fail(k) });
                }
            }
            if p.op.crashable {
                out.push(Move { proc: i, choice: Choice::Crash });
            }
        }
        out
    }

    /// Whether `proc` could run `action` now.
    fn enabled(&self, proc: usize, action: &Action) -> bool {
        let free = |lock: Option<usize>| lock.is_none_or(|holder| holder == proc);
        match action {
            Action::LockReadJson(_) | Action::LockJson | Action::RetrieveReadJson | Action::RetrieveReadXenstore => {
                free(self.json_lock)
            }
            Action::LockDev => free(self.dev_lock),
            Action::Requires(path, inner) => self.replicas.tree.exists(path) && self.enabled(proc, inner),
            Action::Seq(actions) => actions.iter().all(|a| self.enabled(proc, a)),
            _ => true,
        }
    }

    /// Applies a move: the next world and what the move changed.
    pub fn apply(&self, mv: Move) -> Result<(World, Effect), MoveError> {
        let proc = self.procs.get(mv.proc).ok_or(MoveError::NoSuchProcess(mv.proc))?;
        let step = proc.step().ok_or(MoveError::NotRunning(mv.proc))?.clone();
        let Status::Running(pc) = proc.status else { return Err(MoveError::NotRunning(mv.proc)) };
        let disabled = MoveError::Disabled { proc: mv.proc, choice: mv.choice };
        let mut next = self.clone();
        let mut effect = Effect::default();
        let then = match mv.choice {
            Choice::Crash => {
                if !proc.op.crashable {
                    return Err(disabled);
                }
                next.end(mv.proc, Status::Crashed);
                return Ok((next, effect));
            }
            Choice::Step => {
                if !self.enabled(mv.proc, &step.action) {
                    return Err(disabled);
                }
                next.run(mv.proc, &step.action, &mut effect);
                step.then
            }
            Choice::Fail(k) => {
                let alt = step.alternatives.get(k).ok_or(disabled.clone())?;
                if !self.enabled(mv.proc, &alt.action) {
                    return Err(disabled);
                }
                next.run(mv.proc, &alt.action, &mut effect);
                alt.then
            }
        };
        let target = match then {
            Then::Next => pc + 1,
            Then::Goto(t) => t,
            Then::Fail => {
                next.end(mv.proc, Status::Failed);
                return Ok((next, effect));
            }
        };
        if target >= proc.op.steps.len() {
            next.end(mv.proc, Status::Done);
        } else {
            next.procs[mv.proc].status = Status::Running(target);
        }
        Ok((next, effect))
    }

    /// Ends a process: its locks are released and its registers dropped (only the
    /// observation of a retrieve is kept).
    fn end(&mut self, proc: usize, status: Status) {
        let p = &mut self.procs[proc];
        p.status = status;
        p.json_copy = None;
        p.pci_count = None;
        if self.json_lock == Some(proc) {
            self.json_lock = None;
        }
        if self.dev_lock == Some(proc) {
            self.dev_lock = None;
        }
    }

    fn run(&mut self, proc: usize, action: &Action, effect: &mut Effect) {
        match action {
            Action::LockReadJson(edit) => {
                self.json_lock = Some(proc);
                let mut json = self.replicas.json.clone();
                if let JsonReplica::Present(c) = &mut json {
                    edit.apply_to(c);
                }
                self.procs[proc].json_copy = Some(json);
            }
            Action::LockJson => self.json_lock = Some(proc),
            Action::WriteJson => {
                if let Some(json) = self.procs[proc].json_copy.clone() {
                    self.write_json(json, effect);
                }
            }
            Action::WriteJsonValue(config) => self.write_json(JsonReplica::Present((**config).clone()), effect),
            Action::UnlockJson => {
                if self.json_lock == Some(proc) {
                    self.json_lock = None;
                }
            }
            Action::LockDev => self.dev_lock = Some(proc),
            Action::UnlockDev => {
                if self.dev_lock == Some(proc) {
                    self.dev_lock = None;
                }
            }
            Action::Xs(edits) => {
                let ops = resolve(&self.replicas.tree, edits);
                self.commit(ops, effect);
            }
            Action::Requires(_, inner) => self.run(proc, inner, effect),
            Action::ReadPciCount { backend } => {
                let n =
                    self.replicas.tree.text(&format!("{backend}/num_devs")).and_then(|v| v.parse().ok()).unwrap_or(0);
                self.procs[proc].pci_count = Some(n);
            }
            Action::PciCommit(add) => {
                let n = self.procs[proc].pci_count.unwrap_or(0);
                let edits = pci_commit_edits(add, n);
                let ops = resolve(&self.replicas.tree, &edits);
                self.commit(ops, effect);
            }
            Action::PciMarkClosing { backend, bdf } => {
                if let Some(i) = pci_index(&self.replicas.tree, backend, bdf) {
                    let edits = vec![
                        Edit::write(&join(backend, &format!("state-{i}")), "5"),
                        Edit::write(&join(backend, "state"), "7"),
                    ];
                    let ops = resolve(&self.replicas.tree, &edits);
                    self.commit(ops, effect);
                }
            }
            Action::PciRemoveKeys { backend, bdf } => {
                if let Some(i) = pci_index(&self.replicas.tree, backend, bdf) {
                    let ops = pci_remove_ops(&self.replicas.tree, backend, i);
                    self.commit(ops, effect);
                }
            }
            Action::PciDestroyIfEmpty { backend, frontend } => {
                let left = self.replicas.tree.text(&format!("{backend}/num_devs")).and_then(|v| v.parse::<u32>().ok());
                if left == Some(0) {
                    let edits = vec![Edit::Cleanup { path: frontend.clone() }, Edit::Cleanup { path: backend.clone() }];
                    let ops = resolve(&self.replicas.tree, &edits);
                    self.commit(ops, effect);
                }
            }
            Action::Invisible => {}
            Action::RetrieveReadJson => self.procs[proc].json_copy = Some(self.replicas.json.clone()),
            Action::RetrieveReadXenstore => {
                let json = self.procs[proc].json_copy.clone().unwrap_or(JsonReplica::Missing);
                self.procs[proc].observed = Some(Replicas { json, tree: self.replicas.tree.clone() });
            }
            Action::Seq(actions) => {
                for a in actions {
                    self.run(proc, a, effect);
                }
            }
        }
    }

    fn write_json(&mut self, json: JsonReplica, effect: &mut Effect) {
        self.replicas.json = json.clone();
        effect.json = Some(json);
    }

    fn commit(&mut self, ops: Vec<XsOp>, effect: &mut Effect) {
        for op in &ops {
            op.apply(&mut self.replicas.tree);
        }
        effect.xs.extend(ops);
    }
}

/// `base/name` for a name known to be valid.
pub fn join(base: &Path, name: &str) -> Path {
    base.join(name).unwrap_or_else(|e| panic!("invalid path {base}/{name}: {e}"))
}

/// Resolves edits against the tree they apply to: permissions made explicit, missing parents
/// written explicitly (with the permissions of the nearest existing ancestor), cleanups
/// expanded into the removals they make. Edits see the effect of the earlier ones.
pub fn resolve(tree: &Tree, edits: &[Edit]) -> Vec<XsOp> {
    let mut scratch = tree.clone();
    let mut ops = Vec::new();
    let push = |op: XsOp, scratch: &mut Tree, ops: &mut Vec<XsOp>| {
        op.apply(scratch);
        ops.push(op);
    };
    for edit in edits {
        match edit {
            Edit::Write { path, value, perms } => {
                let inherited = |t: &Tree| {
                    let mut p = path.parent();
                    while let Some(a) = p {
                        if let Some(n) = t.get(&a) {
                            return n.perms.clone();
                        }
                        p = a.parent();
                    }
                    None
                };
                let perms = match perms {
                    Some(p) => Some(p.clone()),
                    None => scratch.get(path).map(|n| n.perms.clone()).unwrap_or_else(|| inherited(&scratch)),
                };
                // Missing ancestors, top down.
                let mut missing = Vec::new();
                let mut p = path.parent();
                while let Some(a) = p {
                    if a.is_root() || scratch.contains(&a) {
                        break;
                    }
                    p = a.parent();
                    missing.push(a);
                }
                for a in missing.into_iter().rev() {
                    push(XsOp::Write { path: a, value: Vec::new(), perms: perms.clone() }, &mut scratch, &mut ops);
                }
                push(XsOp::Write { path: path.clone(), value: value.clone(), perms }, &mut scratch, &mut ops);
            }
            Edit::Rm { path } => {
                if scratch.exists(path) {
                    push(XsOp::Rm { path: path.clone() }, &mut scratch, &mut ops);
                }
            }
            Edit::Cleanup { path } => {
                if scratch.exists(path) {
                    push(XsOp::Rm { path: path.clone() }, &mut scratch, &mut ops);
                }
                let mut p = path.parent();
                while let Some(a) = p {
                    if a.is_root() || scratch.has_descendants(&a) {
                        break;
                    }
                    p = a.parent();
                    if scratch.contains(&a) {
                        push(XsOp::Rm { path: a }, &mut scratch, &mut ops);
                    }
                }
            }
        }
    }
    ops
}

/// The index of the function `bdf` in a PCI backend (`dev-N = bdf`).
fn pci_index(tree: &Tree, backend: &Path, bdf: &str) -> Option<u32> {
    let num: u32 = tree.text(&format!("{backend}/num_devs")).and_then(|v| v.parse().ok()).unwrap_or(0);
    (0..num).find(|i| tree.text(&format!("{backend}/dev-{i}")) == Some(bdf))
}

/// The keys a PCI function has in its backend, `<key>-<N>`.
const PCI_SLOT_KEYS: [&str; 7] = ["state", "key", "dev", "vdev", "opts", "vdevfn", "name"];

fn renumber(path: &Path, from: u32, to: u32) -> Option<Path> {
    let name = path.name();
    let (key, n) = name.rsplit_once('-')?;
    if n != from.to_string() || !PCI_SLOT_KEYS.contains(&key) {
        return None;
    }
    path.parent()?.join(&format!("{key}-{to}")).ok()
}

/// `libxl__device_pci_add_xenstore`'s transaction for the function at index `n`.
fn pci_commit_edits(add: &PciAdd, n: u32) -> Vec<Edit> {
    let mut edits = Vec::new();
    if n == 0 {
        edits.extend(add.create.iter().map(|(p, node)| Edit::node(p, node)));
    }
    for (p, node) in &add.slot0 {
        let path = if n == 0 { p.clone() } else { renumber(p, 0, n).unwrap_or_else(|| p.clone()) };
        edits.push(Edit::node(&path, node));
    }
    edits.push(Edit::write(&join(&add.backend, "num_devs"), &(n + 1).to_string()));
    if n > 0 {
        // Adding to a running backend asks pciback to reconfigure.
        edits.push(Edit::write(&join(&add.backend, "state"), "7"));
    }
    edits
}

/// Removes function `i` and shifts every higher one down (spec §3.2, removal step 4).
fn pci_remove_ops(tree: &Tree, backend: &Path, i: u32) -> Vec<XsOp> {
    let num: u32 = tree.text(&format!("{backend}/num_devs")).and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut edits = Vec::new();
    for k in PCI_SLOT_KEYS {
        edits.push(Edit::Rm { path: join(backend, &format!("{k}-{i}")) });
    }
    for j in i + 1..num {
        for k in PCI_SLOT_KEYS {
            let from = join(backend, &format!("{k}-{j}"));
            if let Some(node) = tree.get(&from) {
                edits.push(Edit::node(&join(backend, &format!("{k}-{}", j - 1)), node));
                edits.push(Edit::Rm { path: from });
            }
        }
    }
    edits.push(Edit::write(&join(backend, "num_devs"), &num.saturating_sub(1).to_string()));
    resolve(tree, &edits)
}
