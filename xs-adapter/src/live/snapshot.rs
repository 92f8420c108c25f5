//! Snapshots of a live xenstore, consistent per domain without a whole-store transaction.
//!
//! # Why not one transaction
//!
//! The C xenstored of Xen 4.17 makes a read inside a transaction about 20 times dearer than a
//! plain read, and the cost grows with the transaction's size: a transaction over the whole
//! store of a 1,000-domain host takes minutes. Reconciliation needs consistency only per domain,
//! so that is what a snapshot guarantees.
//!
//! # The watch-and-barrier argument ([`Consistency::Watch`], the default)
//!
//! 1. Before reading, the snapshot sets watches on roots that cover everything it reads. A
//!    watch fires once when set; a barrier (any request, answered after the watch replies)
//!    tells when those initial events are in, and they are dropped. Any change made after the
//!    watches are set produces an event.
//! 2. It walks the tree, pipelined and spread over several connections, outside any
//!    transaction (pass 0); once every reply is in, it sends a barrier on the watching
//!    connection. The daemon queues a watch event on the watcher's connection when the change
//!    happens, in the same queue as that connection's replies, which it sends in order. So
//!    when the barrier's reply arrives, every event for a change made before the daemon
//!    handled the barrier has arrived before it; and every read of the pass was handled
//!    before the barrier was even sent.
//! 3. Each event path is mapped to its *unit*, the domain it is evidence about
//!    ([`Unit::of`]), and to the part to read again: the changed node's subtree, plus those
//!    of its ancestors in scope that the snapshot lacks (a write creates missing parents but
//!    fires only for the written path; the removal of a node or a change of its permissions
//!    fires for that node itself). Every change to a node in scope is seen this way: the
//!    watches cover the scope, and permission changes and removals fire too.
//! 4. Pass k+1 re-reads every part touched during pass k, for units not yet sealed, and ends
//!    with a barrier. A unit that received no event during a pass in which it was read is
//!    *sealed*: its later events are ignored.
//!
//! Why a sealed unit is consistent. Let pass k seal unit U. No event for U arrived between
//! the start of pass k and barrier k, so (by 2) nothing in U changed between pass k's start
//! and the daemon handling barrier k. Every part of U was last read in some pass j ≤ k, and
//! no event for that part arrived after pass j started (else it would have been re-read
//! later), so that part, too, did not change between its last read and barrier k. Hence every
//! node of U holds the value it had at the moment of barrier k: U is exactly the store's
//! content at one instant. Different units may be taken at different instants.
//!
//! Passes are bounded by [`SnapshotOptions::max_passes`]. For units still changing then, the
//! parts that changed are read inside one small transaction per unit, which the daemon commits
//! only if they did not change meanwhile, and a barrier checks that the unit's other parts
//! stayed still (see `Builder::settle_in_transactions`). The counts are in [`SnapshotStats`]. A
//! writer that keeps changing the same unit faster than a transaction can read it makes the
//! snapshot fail with [`Error::TooManyRetries`] rather than return a torn unit.
//!
//! The argument relies on the daemon answering one connection in order and queueing events
//! with replies; it needs no order between connections, since the barrier goes out only after
//! every read's reply has come back. xenstore.txt allows replies in any order, but both the C
//! xenstored and oxenstored answer in order; the tests check the outcome against a concurrent
//! writer.
//!
//! # Per-domain transactions ([`Consistency::Transaction`])
//!
//! The alternative: a plain pass finds each unit's nodes, then each unit is read again inside
//! its own transaction, committed with `T` and retried on `EAGAIN`. Parts of a unit that appear
//! after the first pass (a new backend kind) are not seen. It is the slow mode on the C
//! xenstored: on a 1,000-domain host (172,017 nodes) it took 87 s where the watch mode took
//! 4.1 s (`benches/live_snapshot.rs`, one run on a quiet 2-core machine). On oxenstored, whose
//! transactions are cheap snapshots, it is a reasonable choice.
//!
//! # Cost
//!
//! A snapshot sends three requests per node (`READ`, `GET_PERMS`, `DIRECTORY`), as
//! `xenstore-ls -fp` does, but pipelined and spread over [`super::DEFAULT_CONNECTIONS`]
//! connections. The daemon's time per request then dominates, and spreading lowers it (the
//! daemon serves one request per connection in each turn of its loop). In the run above the
//! whole-store snapshot took 4.1 s against 16.4 s for `xenstore-ls -fp` (4.0x; daemon CPU
//! 3.8 s against 11.2 s, 2.9x), 6.5 s over a single connection (2.5x), and 5.2 s for a flood
//! of as many plain reads spread the same way.

use super::conn::{Conn, Op, Reply, Work};
use super::{expect_ok, Client, Error};
use crate::wire::{self, Errno, MsgType, Request};
use merge_core::xenstore::{Node, Path, Perms, Tree};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The children of `/local/domain/<D>` that reconciliation reads for domain D (besides the
/// node itself). `backend` holds the backends D serves: each belongs to the unit of the domain
/// served. Everything else (`data`, `attr`, `console`, guest agents' nodes) is left out.
pub const DOMAIN_HOME_PARTS: &[&str] =
    &["name", "domid", "vm", "memory", "cpu", "device", "control", "error", "target", "backend"];

/// What a snapshot reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// What reconciliation needs for every domain: `/local/domain/<D>` and its
    /// [`DOMAIN_HOME_PARTS`], all of `/libxl` and `/vm`.
    Host,
    /// What reconciliation needs for one domain: `/local/domain/<D>` and its home parts except
    /// `backend`, `/libxl/<D>`, `/vm/<uuid>` (the uuid from `/local/domain/<D>/vm`), and every
    /// `/local/domain/<B>/backend/<kind>/<D>`.
    Domain(u32),
    /// Everything at and below a path (`/` for the whole store).
    Subtree(Path),
    /// What libxl 4.17's retrieve reads for every domain
    /// ([`merge_core::reconcile::libxl417::reads`]: `/libxl`, each home's name, memory and
    /// vcpus, dom0's pci backends, vtpm and vusb backends, vsnd frontends), plus each home's `vm`
    /// (the uuid, when no hypervisor input gives it). A fraction of [`Scope::Host`]. Record
    /// pointers leading elsewhere (`libxl417::pointers_outside`) are the caller's to fetch.
    Libxl417,
}

/// Whether [`Scope::Libxl417`] holds the node at `path`: what libxl 4.17's retrieve reads
/// ([`merge_core::reconcile::libxl417::reads`]) and each home's `vm`.
pub fn in_libxl417_scope(path: &str) -> bool {
    // Besides what libxl reads, a domain's `vm` node: it names the domain's uuid where no
    // --hypervisor does. Most paths do not end so, and are not split for it.
    let vm_node = || {
        matches!(merge_core::xenstore::leading_components(path), ["local", "domain", d, "vm", "", _]
            if d.parse::<u32>().is_ok())
    };
    let bytes = path.as_bytes();
    let end = bytes.iter().rposition(|&b| b != b'/').map_or(0, |last| last + 1);
    merge_core::reconcile::libxl417::reads(path) || (bytes[..end].ends_with(b"/vm") && vm_node())
}

/// How a snapshot is made consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Watches, a pipelined walk, barriers and re-read passes (see the module docs).
    #[default]
    Watch,
    /// One transaction per unit, after a plain pass that finds the units.
    Transaction,
    /// One plain pipelined walk: what `xenstore-ls` gives, but faster. May be torn.
    None,
}

/// Snapshot settings.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    pub scope: Scope,
    pub consistency: Consistency,
    /// Read each node's permissions (one `GET_PERMS` per node).
    pub with_perms: bool,
    /// Re-read passes after the first walk before the units still changing are read in a
    /// transaction each.
    pub max_passes: u32,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions { scope: Scope::Host, consistency: Consistency::Watch, with_perms: true, max_passes: 8 }
    }
}

/// Counts that show what a snapshot cost and how much the store moved under it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Requests sent, barriers and watch bookkeeping included.
    pub requests: u64,
    /// Walks made: the first one plus every re-read pass.
    pub passes: u32,
    /// Distinct domains that had parts re-read.
    pub reread_domains: usize,
    /// Parts (subtrees or single nodes) re-read, over all passes.
    pub reread_parts: usize,
    /// Units re-read by each pass after the first: how fast the snapshot converged.
    pub units_per_pass: Vec<usize>,
    /// Watch events received after the watches were set.
    pub events: u64,
    /// Units read inside a transaction (all of them in [`Consistency::Transaction`], the
    /// still-changing ones after `max_passes` in [`Consistency::Watch`]).
    pub transaction_units: usize,
    /// Transaction commits that gave `EAGAIN` and were retried.
    pub transaction_retries: u64,
    /// The most connections one walk used (see [`super::ClientOptions::connections`]).
    pub connections: usize,
}

/// A request the daemon refused with `EACCES` (flagged, not fatal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub path: Path,
    pub request: MsgType,
}

/// The result of a snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Every node read. A node whose value was denied has `unreadable = true` and no value; a
    /// node whose permissions were denied (or not asked for) has `perms = None`.
    pub tree: Tree,
    /// Requests refused with `EACCES`.
    pub denied: Vec<Denied>,
    pub stats: SnapshotStats,
}

/// The consistency unit a path is evidence about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    /// Everything about one domain: its home, its `/libxl` and `/vm` records, and the backends
    /// that serve it wherever they live.
    Domain(u32),
    /// Any other area, named by its first components (`/tool`, `/vm/<uuid>` of no domain).
    Other(String),
}

impl Unit {
    /// The unit of `path`. `vm_owner` maps a `/vm/<uuid>` name to the domain whose `vm` node
    /// points at it.
    pub fn of(path: &str, vm_owner: &HashMap<String, u32>) -> Unit {
        let c: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let domid = |s: &str| s.parse::<u32>().ok();
        match c.as_slice() {
            ["local", "domain", _, "backend", _, served, ..] if domid(served).is_some() => {
                Unit::Domain(domid(served).unwrap_or_default())
            }
            ["local", "domain", d, ..] if domid(d).is_some() => Unit::Domain(domid(d).unwrap_or_default()),
            ["libxl", d, ..] if domid(d).is_some() => Unit::Domain(domid(d).unwrap_or_default()),
            ["vm", uuid, ..] => match vm_owner.get(*uuid) {
                Some(d) => Unit::Domain(*d),
                None => Unit::Other(format!("/vm/{uuid}")),
            },
            [] => Unit::Other("/".into()),
            [first, ..] => Unit::Other(format!("/{first}")),
        }
    }
}

/// The scope as two predicates over paths.
#[derive(Debug, Clone)]
struct Rules {
    scope: Scope,
    /// `/vm/<uuid>` of the domain, for [`Scope::Domain`].
    vm_uuid: Option<String>,
}

impl Rules {
    /// Whether the node at `path` is part of the snapshot.
    fn in_scope(&self, path: &str) -> bool {
        // Split only where a scope matches on components (a walk asks this of every node).
        let components = || path.split('/').filter(|s| !s.is_empty()).collect::<Vec<&str>>();
        let is_domid = |s: &str| s.parse::<u32>().is_ok();
        match &self.scope {
            Scope::Subtree(root) => Path::new(path).is_ok_and(|p| p.starts_with(root)),
            Scope::Host => match components().as_slice() {
                ["local", "domain", d] => is_domid(d),
                ["local", "domain", d, part, ..] => is_domid(d) && DOMAIN_HOME_PARTS.contains(part),
                ["libxl", ..] | ["vm", ..] => true,
                _ => false,
            },
            Scope::Libxl417 => in_libxl417_scope(path),
            Scope::Domain(domid) => {
                let me = domid.to_string();
                match components().as_slice() {
                    ["local", "domain", d] => *d == me,
                    ["local", "domain", _, "backend", _, served, ..] => *served == me,
                    ["local", "domain", d, part, ..] => {
                        *d == me && *part != "backend" && DOMAIN_HOME_PARTS.contains(part)
                    }
                    ["libxl", d, ..] => *d == me,
                    ["vm", uuid, ..] => self.vm_uuid.as_deref() == Some(*uuid),
                    _ => false,
                }
            }
        }
    }

    /// Whether nodes in scope may lie below `path` (so the walk lists its children).
    fn may_contain(&self, path: &str) -> bool {
        if self.in_scope(path) {
            return true;
        }
        let c: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match &self.scope {
            Scope::Subtree(root) => Path::new(path).is_ok_and(|p| root.starts_with(&p)),
            Scope::Host => matches!(c.as_slice(), [] | ["local"] | ["local", "domain"]),
            Scope::Libxl417 => matches!(
                c.as_slice(),
                [] | ["local"] | ["local", "domain"] | ["local", "domain", _, "backend" | "device"]
            ),
            Scope::Domain(_) => matches!(
                c.as_slice(),
                [] | ["local"]
                    | ["local", "domain"]
                    | ["local", "domain", _]
                    | ["local", "domain", _, "backend"]
                    | ["local", "domain", _, "backend", _]
                    | ["libxl"]
                    | ["vm"]
            ),
        }
    }

    /// Where the first walk starts.
    fn start_paths(&self) -> Vec<String> {
        match &self.scope {
            Scope::Subtree(root) => vec![root.to_string()],
            Scope::Host => vec!["/local/domain".into(), "/libxl".into(), "/vm".into()],
            Scope::Libxl417 => vec!["/local/domain".into(), "/libxl".into()],
            Scope::Domain(d) => {
                let mut v = vec!["/local/domain".into(), format!("/libxl/{d}")];
                if let Some(uuid) = &self.vm_uuid {
                    v.push(format!("/vm/{uuid}"));
                }
                v
            }
        }
    }

    /// The watches that cover the scope. Few and coarse: the daemon matches every change
    /// against every watch, so a thousand per-domain watches would tax the whole host.
    fn watch_paths(&self) -> Vec<String> {
        match &self.scope {
            Scope::Subtree(root) => vec![root.to_string()],
            Scope::Host | Scope::Domain(_) => vec!["/local/domain".into(), "/libxl".into(), "/vm".into()],
            Scope::Libxl417 => vec!["/local/domain".into(), "/libxl".into()],
        }
    }
}

/// How much of a path to read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    /// The node and everything in scope below it.
    Subtree(String),
    /// The node alone (its value and permissions).
    Node(String),
}

impl Part {
    fn path(&self) -> &str {
        match self {
            Part::Subtree(p) | Part::Node(p) => p,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Tag {
    Value(usize),
    Perms(usize),
    Dir(usize),
    DirPart(usize),
}

/// What a walk learnt about one node.
#[derive(Debug, Default)]
struct Slot {
    path: String,
    /// In scope: its value and permissions are wanted.
    wanted: bool,
    value: Option<Vec<u8>>,
    unreadable: bool,
    perms: Option<Perms>,
    gone: bool,
    /// DIRECTORY_PART state: generation of the first chunk and the names gathered so far.
    part_generation: Option<String>,
    part_children: Vec<String>,
    part_offset: u32,
}

/// A pipelined walk over some parts of the tree: the [`Work`] of one pass.
struct Walk<'r> {
    rules: &'r Rules,
    /// Stay inside this unit (children of another unit are not visited); `vm_owner` as in
    /// [`Unit::of`].
    unit: Option<(&'r Unit, &'r HashMap<String, u32>)>,
    with_perms: bool,
    queue: Vec<(Op, Tag)>,
    slots: Vec<Slot>,
    perms_cache: HashMap<Vec<u8>, Perms>,
    denied: Vec<(String, MsgType)>,
}

impl<'r> Walk<'r> {
    fn new(rules: &'r Rules, unit: Option<(&'r Unit, &'r HashMap<String, u32>)>, with_perms: bool) -> Walk<'r> {
        Walk {
            rules,
            unit,
            with_perms,
            queue: Vec::new(),
            slots: Vec::new(),
            perms_cache: HashMap::new(),
            denied: Vec::new(),
        }
    }

    /// Schedules `path`: its value and permissions if in scope, its children if `descend` and
    /// scope may lie below.
    fn visit(&mut self, path: String, descend: bool) {
        let wanted = self.rules.in_scope(&path);
        let list = descend && self.rules.may_contain(&path);
        if !wanted && !list {
            return;
        }
        let i = self.slots.len();
        // A stack: pushed last, popped first. Children lists go last so that values of a
        // directory's nodes are asked for before the walk fans out further.
        if list {
            self.queue.push((Op::Directory(path.clone()), Tag::Dir(i)));
        }
        if wanted {
            if self.with_perms {
                self.queue.push((Op::GetPerms(path.clone()), Tag::Perms(i)));
            }
            self.queue.push((Op::Read(path.clone()), Tag::Value(i)));
        }
        self.slots.push(Slot { path, wanted, ..Slot::default() });
    }

    fn children(&mut self, i: usize, names: Vec<String>) {
        let parent = self.slots[i].path.clone();
        for name in names {
            let child = if parent == "/" { format!("/{name}") } else { format!("{parent}/{name}") };
            // Units are prefix-closed: below a node of another unit there is none of ours.
            if self.unit.is_some_and(|(unit, owners)| Unit::of(&child, owners) != *unit) {
                continue;
            }
            self.visit(child, true);
        }
    }

    fn intern_perms(&mut self, payload: Vec<u8>, path: &str) -> Result<Perms, Error> {
        if let Some(p) = self.perms_cache.get(&payload) {
            return Ok(p.clone());
        }
        let perms = wire::parse_perms(&payload)
            .map_err(|source| Error::BadReply { request: format!("GET_PERMS {path}"), source })?;
        self.perms_cache.insert(payload, perms.clone());
        Ok(perms)
    }

    /// The nodes found, the paths found missing and the refusals.
    fn finish(self) -> Result<WalkResult, Error> {
        let mut nodes = Vec::with_capacity(self.slots.len());
        let mut gone = Vec::new();
        for slot in self.slots {
            if slot.gone {
                gone.push(slot.path);
                continue;
            }
            if !slot.wanted || (slot.value.is_none() && !slot.unreadable) {
                continue;
            }
            let path = valid_path(&slot.path)?;
            let node = Node {
                value: slot.value.unwrap_or_default().into_boxed_slice(),
                perms: slot.perms,
                truncated: false,
                unreadable: slot.unreadable,
            };
            nodes.push((path, node));
        }
        let denied = self
            .denied
            .into_iter()
            .map(|(p, request)| Ok(Denied { path: valid_path(&p)?, request }))
            .collect::<Result<_, Error>>()?;
        Ok(WalkResult { nodes, gone, denied })
    }
}

/// What one walk found.
struct WalkResult {
    nodes: Vec<(Path, Node)>,
    /// Paths that vanished while the walk read them.
    gone: Vec<String>,
    denied: Vec<Denied>,
}

fn valid_path(p: &str) -> Result<Path, Error> {
    Path::new(p).map_err(|source| Error::InvalidPath { path: p.to_string(), source })
}

impl Work for Walk<'_> {
    type Tag = Tag;

    fn next_request(&mut self) -> Option<(Op, Tag)> {
        self.queue.pop()
    }

    fn on_reply(&mut self, tag: Tag, op: &Op, reply: Reply) -> Result<(), Error> {
        let (i, kind) = match tag {
            Tag::Value(i) => (i, MsgType::Read),
            Tag::Perms(i) => (i, MsgType::GetPerms),
            Tag::Dir(i) => (i, MsgType::Directory),
            Tag::DirPart(i) => (i, MsgType::DirectoryPart),
        };
        let payload = match reply {
            Ok(p) => p,
            // Removed since it was listed: it is not part of the tree.
            Err(Errno::ENOENT) => {
                self.slots[i].gone = true;
                return Ok(());
            }
            Err(Errno::EACCES) => {
                self.denied.push((self.slots[i].path.clone(), kind));
                if kind == MsgType::Read {
                    self.slots[i].unreadable = true;
                }
                return Ok(());
            }
            // The child list does not fit in one reply: fetch it in parts.
            Err(Errno::E2BIG) if kind == MsgType::Directory => {
                let path = self.slots[i].path.clone();
                self.queue.push((Op::DirectoryPart(path, 0), Tag::DirPart(i)));
                return Ok(());
            }
            other => return expect_ok(&op.request(), other).map(drop),
        };
        let bad = |source| Error::BadReply { request: super::conn::describe(&op.request()), source };
        match tag {
            Tag::Value(_) => self.slots[i].value = Some(payload),
            Tag::Perms(_) => {
                let path = self.slots[i].path.clone();
                self.slots[i].perms = Some(self.intern_perms(payload, &path)?);
            }
            Tag::Dir(_) => {
                let names = wire::parse_directory(&payload).map_err(bad)?;
                self.children(i, names);
            }
            Tag::DirPart(_) => {
                let part = wire::parse_directory_part(&payload).map_err(bad)?;
                let slot = &mut self.slots[i];
                if slot.part_generation.as_ref().is_some_and(|g| *g != part.generation) {
                    // The list changed between parts: start again from the beginning.
                    slot.part_generation = None;
                    slot.part_children.clear();
                    slot.part_offset = 0;
                    let path = slot.path.clone();
                    self.queue.push((Op::DirectoryPart(path, 0), Tag::DirPart(i)));
                    return Ok(());
                }
                slot.part_generation = Some(part.generation);
                slot.part_children.extend(part.children);
                slot.part_offset += part.list_bytes;
                if part.complete {
                    let names = std::mem::take(&mut slot.part_children);
                    self.children(i, names);
                } else {
                    let next = Op::DirectoryPart(slot.path.clone(), slot.part_offset);
                    self.queue.push((next, Tag::DirPart(i)));
                }
            }
        }
        Ok(())
    }
}

/// Sends requests pipelined and checks each succeeded.
struct Batch {
    ops: Vec<Op>,
}

impl Work for Batch {
    type Tag = ();
    fn next_request(&mut self) -> Option<(Op, ())> {
        // In the order given (the batches are a handful of watches).
        (!self.ops.is_empty()).then(|| (self.ops.remove(0), ()))
    }
    fn on_reply(&mut self, _: (), op: &Op, reply: Reply) -> Result<(), Error> {
        expect_ok(&op.request(), reply).map(drop)
    }
}

/// A round trip after which every event for an earlier change has arrived.
fn barrier(conn: &mut Conn) -> Result<(), Error> {
    conn.call(&Request::Read("/"), 0).map(drop)
}

/// The snapshot under construction.
struct Builder<'r> {
    rules: &'r Rules,
    options: &'r SnapshotOptions,
    tree: Tree,
    denied: BTreeMap<(Path, u32), Denied>,
    stats: SnapshotStats,
    /// `/vm/<uuid>` name → the domain whose `vm` node names it, as read so far (see
    /// [`Unit::of`]). Kept up to date on insertion rather than rebuilt by scanning the tree.
    vm_owners: HashMap<String, u32>,
}

impl Builder<'_> {
    /// Reads `parts` in one pipelined walk (inside transaction `tx_id` unless 0; outside one,
    /// spread over the client's connections) and applies what it found to the tree.
    fn read_parts(
        &mut self,
        client: &mut Client,
        parts: &[Part],
        tx_id: u32,
        unit: Option<&Unit>,
    ) -> Result<(), Error> {
        let owners = &self.vm_owners;
        let mut walk = Walk::new(self.rules, unit.map(|u| (u, owners)), self.options.with_perms);
        for part in parts.iter().rev() {
            match part {
                Part::Subtree(p) => walk.visit(p.clone(), true),
                Part::Node(p) => walk.visit(p.clone(), false),
            }
        }
        if tx_id == 0 {
            let used = client.run_spread(&mut walk)?;
            self.stats.connections = self.stats.connections.max(used);
        } else {
            let window = client.options().window;
            client.conn().run(&mut walk, window, tx_id)?;
        }
        let WalkResult { nodes, gone, denied } = walk.finish()?;
        // What was read replaces what the tree held there (only the unit's own nodes, when
        // the walk kept to one unit).
        let mut doomed: Vec<Path> = Vec::new();
        let subtrees = parts.iter().filter_map(|p| match p {
            Part::Subtree(s) => Some(s.as_str()),
            Part::Node(_) => None,
        });
        for root in subtrees.chain(gone.iter().map(String::as_str)) {
            let Ok(root) = Path::new(root) else { continue };
            let outside = |p: &Path| unit.is_some_and(|u| Unit::of(p.as_str(), owners) != *u);
            doomed.extend(self.tree.subtree(&root).map(|(p, _)| p.clone()).filter(|p| !outside(p)));
        }
        doomed.extend(parts.iter().filter_map(|p| match p {
            Part::Node(n) => Path::new(n).ok(),
            Part::Subtree(_) => None,
        }));
        for path in doomed {
            self.tree.remove(&path);
        }
        for (path, node) in nodes {
            if let Some((uuid, domid)) = vm_link(&path, &node) {
                self.vm_owners.insert(uuid, domid);
            }
            self.tree.insert(path, node);
        }
        for d in denied {
            self.denied.insert((d.path.clone(), d.request.number()), d);
        }
        Ok(())
    }

    /// The parts to re-read for a changed path: its subtree, and those of its ancestors in
    /// scope that the tree lacks. A write creates missing parents but fires only for the path
    /// written; an ancestor already in the tree is unchanged by it (its removal or a change of
    /// its permissions fires an event of its own).
    fn parts_for_event(&self, path: &str) -> Vec<Part> {
        let mut parts = Vec::new();
        if Path::new(path).is_err() {
            return parts;
        }
        if self.rules.in_scope(path) || self.rules.may_contain(path) {
            parts.push(Part::Subtree(path.to_string()));
        }
        let mut p = path;
        while let Some(i) = p.rfind('/') {
            p = if i == 0 { "/" } else { &p[..i] };
            if self.rules.in_scope(p) && self.tree.get_str(p).is_none() {
                parts.push(Part::Node(p.to_string()));
            }
            if p == "/" {
                break;
            }
        }
        parts
    }

    /// Groups events into the parts to re-read per unit, for units in `open` (all when `None`).
    fn classify(
        &mut self,
        events: Vec<wire::WatchEvent>,
        token: &str,
        open: Option<&BTreeSet<Unit>>,
    ) -> BTreeMap<Unit, BTreeSet<Part>> {
        let owners = &self.vm_owners;
        let mut dirty: BTreeMap<Unit, BTreeSet<Part>> = BTreeMap::new();
        for event in events {
            if event.token != token {
                continue;
            }
            self.stats.events += 1;
            for part in self.parts_for_event(&event.path) {
                let unit = Unit::of(part.path(), owners);
                if open.is_none_or(|o| o.contains(&unit)) {
                    dirty.entry(unit).or_default().insert(part);
                }
            }
        }
        dirty
    }

    /// The smallest parts that cover each unit's nodes in the current tree: a node whose
    /// parent is in another unit (or out of scope) roots a part.
    fn unit_roots(&self) -> BTreeMap<Unit, Vec<Part>> {
        let owners = &self.vm_owners;
        let mut roots: BTreeMap<Unit, Vec<Part>> = BTreeMap::new();
        for (path, _) in self.tree.iter() {
            let unit = Unit::of(path.as_str(), owners);
            let parent_same =
                path.parent().is_some_and(|p| self.tree.contains(&p) && Unit::of(p.as_str(), owners) == unit);
            if !parent_same {
                roots.entry(unit).or_default().push(Part::Subtree(path.to_string()));
            }
        }
        roots
    }

    /// Ends the passes for units still changing after `max_passes`. Each unit's dirty parts
    /// are read inside one transaction, which the daemon commits only if none of them changed
    /// meanwhile: a consistent cut of those parts at the commit. A barrier then shows whether
    /// any *other* part of the unit changed since the last pass; if none did, the unit is
    /// consistent at that commit (the same argument as for passes). A unit whose other parts
    /// changed goes round again with them added. These transactions hold only what changed, so
    /// they are short and seldom collide with writers, unlike one over the whole unit.
    fn settle_in_transactions(
        &mut self,
        client: &mut Client,
        mut dirty: BTreeMap<Unit, BTreeSet<Part>>,
        token: &str,
    ) -> Result<(), Error> {
        let mut rounds = 0;
        while !dirty.is_empty() {
            rounds += 1;
            if rounds > client.options().max_transaction_attempts {
                return Err(Error::TooManyRetries { attempts: rounds - 1 });
            }
            let units = dirty.iter().map(|(u, parts)| (u.clone(), parts.iter().cloned().collect())).collect();
            self.read_units_in_transactions(client, units)?;
            barrier(client.conn())?;
            let open: BTreeSet<Unit> = dirty.keys().cloned().collect();
            let events = client.conn().take_events();
            let mut next = BTreeMap::new();
            for (unit, parts) in self.classify(events, token, Some(&open)) {
                let read = &dirty[&unit];
                let uncovered: Vec<Part> = parts.into_iter().filter(|p| !covered(p, read)).collect();
                if !uncovered.is_empty() {
                    let mut grown = read.clone();
                    grown.extend(uncovered);
                    next.insert(unit, grown);
                }
            }
            dirty = next;
        }
        Ok(())
    }

    /// Reads each unit again inside its own transaction, retrying on EAGAIN.
    fn read_units_in_transactions(
        &mut self,
        client: &mut Client,
        units: BTreeMap<Unit, Vec<Part>>,
    ) -> Result<(), Error> {
        for (unit, parts) in units {
            self.stats.transaction_units += 1;
            let mut attempts = 0;
            loop {
                attempts += 1;
                let start = Request::TransactionStart;
                let reply = client.conn().call(&start, 0)?;
                let payload = expect_ok(&start, reply)?;
                let tx_id = wire::parse_transaction_id(&payload)
                    .map_err(|source| Error::BadReply { request: "TRANSACTION_START".into(), source })?;
                // Read into a scratch copy: a retried attempt must not leave half its reads.
                let saved = (self.tree.clone(), self.denied.clone());
                let read = self.read_parts(client, &parts, tx_id, Some(&unit));
                if let Err(e) = read {
                    let _ = client.conn().call(&Request::TransactionEnd { commit: false }, tx_id);
                    return Err(e);
                }
                let end = Request::TransactionEnd { commit: true };
                match client.conn().call(&end, tx_id)? {
                    Ok(_) => break,
                    Err(Errno::EAGAIN) if attempts < client.options().max_transaction_attempts => {
                        self.stats.transaction_retries += 1;
                        (self.tree, self.denied) = saved;
                    }
                    Err(Errno::EAGAIN) => return Err(Error::TooManyRetries { attempts }),
                    Err(errno) => return Err(Error::Daemon { request: "TRANSACTION_END T".into(), errno }),
                }
            }
        }
        Ok(())
    }
}

/// The `(uuid, domid)` that a `/local/domain/<D>/vm` node holding `/vm/<uuid>` links.
fn vm_link(path: &Path, node: &Node) -> Option<(String, u32)> {
    let rest = path.as_str().strip_prefix("/local/domain/")?;
    let domid = rest.strip_suffix("/vm")?.parse().ok()?;
    let uuid = node.text()?.strip_prefix("/vm/")?;
    Some((uuid.to_string(), domid))
}

/// Whether reading `parts` also read `part`.
fn covered(part: &Part, parts: &BTreeSet<Part>) -> bool {
    parts.contains(part)
        || parts.iter().any(|p| match p {
            Part::Subtree(root) => part
                .path()
                .strip_prefix(root.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || root == "/"),
            Part::Node(_) => false,
        })
}

static TOKEN_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Client {
    /// A snapshot of everything reconciliation needs about every domain ([`Scope::Host`]
    /// unless `options.scope` says otherwise), consistent per domain by `options.consistency`.
    ///
    /// On any error (daemon gone, timeout, protocol violation) it returns the error and no
    /// tree: a snapshot is all or nothing.
    pub fn snapshot_host(&mut self, options: &SnapshotOptions) -> Result<Snapshot, Error> {
        self.snapshot(options)
    }

    /// What reconciliation needs about domain `domid` ([`Scope::Domain`]), consistent.
    pub fn snapshot_domain(&mut self, domid: u32) -> Result<Snapshot, Error> {
        self.snapshot(&SnapshotOptions { scope: Scope::Domain(domid), ..SnapshotOptions::default() })
    }

    /// Everything at and below `path`, consistent per unit. `/` gives the whole store.
    pub fn snapshot_subtree(&mut self, path: &Path) -> Result<Snapshot, Error> {
        self.snapshot(&SnapshotOptions { scope: Scope::Subtree(path.clone()), ..SnapshotOptions::default() })
    }

    /// The general form of the `snapshot_*` methods.
    pub fn snapshot(&mut self, options: &SnapshotOptions) -> Result<Snapshot, Error> {
        let requests_before = self.requests_sent();
        let vm_uuid = match options.scope {
            Scope::Domain(d) => self
                .read(&format!("/local/domain/{d}/vm"))?
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.strip_prefix("/vm/").map(str::to_string))
                .filter(|u| Path::new(&format!("/vm/{u}")).is_ok()),
            _ => None,
        };
        let rules = Rules { scope: options.scope.clone(), vm_uuid };
        let mut b = Builder {
            rules: &rules,
            options,
            tree: Tree::new(),
            denied: BTreeMap::new(),
            stats: SnapshotStats::default(),
            vm_owners: HashMap::new(),
        };
        let start: Vec<Part> = rules.start_paths().into_iter().map(Part::Subtree).collect();
        match options.consistency {
            Consistency::None => {
                b.read_parts(self, &start, 0, None)?;
                b.stats.passes = 1;
            }
            Consistency::Transaction => {
                b.read_parts(self, &start, 0, None)?;
                b.stats.passes = 1;
                let units = b.unit_roots();
                b.read_units_in_transactions(self, units)?;
            }
            Consistency::Watch => self.watched_passes(&mut b, &start)?,
        }
        b.stats.requests = self.requests_sent() - requests_before;
        Ok(Snapshot { tree: b.tree, denied: b.denied.into_values().collect(), stats: b.stats })
    }

    fn watched_passes(&mut self, b: &mut Builder<'_>, start: &[Part]) -> Result<(), Error> {
        let token = format!(
            "xlsync-snapshot-{}-{}",
            std::process::id(),
            TOKEN_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let watches = b.rules.watch_paths();
        let window = self.options().window;
        self.conn().run(
            &mut Batch { ops: watches.iter().map(|w| Op::Watch(w.clone(), token.clone())).collect() },
            window,
            0,
        )?;
        let result = (|| {
            // The events each watch fires when set, and any from earlier snapshots, are in.
            barrier(self.conn())?;
            drop(self.conn().take_events());

            b.read_parts(self, start, 0, None)?;
            barrier(self.conn())?;
            b.stats.passes = 1;
            let events = self.conn().take_events();
            let mut dirty = b.classify(events, &token, None);
            let mut reread_domains = BTreeSet::new();
            while !dirty.is_empty() {
                if b.stats.passes > b.options.max_passes {
                    b.settle_in_transactions(self, dirty, &token)?;
                    break;
                }
                let open: BTreeSet<Unit> = dirty.keys().cloned().collect();
                let parts: Vec<Part> = dirty.values().flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect();
                for u in &open {
                    if let Unit::Domain(d) = u {
                        reread_domains.insert(*d);
                    }
                }
                b.stats.reread_parts += parts.len();
                b.stats.units_per_pass.push(open.len());
                b.read_parts(self, &parts, 0, None)?;
                barrier(self.conn())?;
                b.stats.passes += 1;
                let events = self.conn().take_events();
                dirty = b.classify(events, &token, Some(&open));
            }
            b.stats.reread_domains = reread_domains.len();
            Ok(())
        })();
        // Remove the watches even after an error, unless the connection itself failed.
        if !matches!(result, Err(Error::Disconnected { .. } | Error::Timeout { .. } | Error::Io { .. })) {
            let unwatch = watches.iter().map(|w| Op::Unwatch(w.clone(), token.clone())).collect();
            let cleanup = self.conn().run(&mut Batch { ops: unwatch }, window, 0);
            drop(self.conn().take_events());
            return result.and(cleanup);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    /// The dump and live scope (libxl's reads, with their shortcuts, and each home's `vm`)
    /// decides every path as the general rule does.
    #[test]
    fn the_scope_agrees_with_the_general_rule() {
        let general = |path: &str| {
            let components = merge_core::xenstore::leading_components(path);
            merge_core::reconcile::libxl417::reads_components(components)
                || matches!(components, ["local", "domain", d, "vm", "", _] if d.parse::<u32>().is_ok())
        };
        for path in merge_core::testkit::odd_home_paths() {
            assert_eq!(super::in_libxl417_scope(&path), general(&path), "{path}");
        }
    }

    use super::*;

    /// Feeds a walk the daemon's answers by hand: `answer(op)` gives each request's reply.
    fn drive(walk: &mut Walk<'_>, answer: impl Fn(&Op) -> Reply) {
        while let Some((op, tag)) = walk.next_request() {
            let reply = answer(&op);
            walk.on_reply(tag, &op, reply).unwrap();
        }
    }

    #[test]
    fn a_denied_node_is_flagged_not_fatal() {
        let rules = Rules { scope: Scope::Subtree(Path::new("/a").unwrap()), vm_uuid: None };
        let mut walk = Walk::new(&rules, None, true);
        walk.visit("/a".into(), true);
        drive(&mut walk, |op| match op {
            Op::Read(p) | Op::GetPerms(p) if p == "/a" => Err(Errno::EACCES),
            Op::Directory(p) if p == "/a" => Ok(b"b\0gone\0".to_vec()),
            Op::Read(p) if p == "/a/gone" => Err(Errno::ENOENT),
            Op::Read(_) => Ok(b"v".to_vec()),
            Op::GetPerms(_) => Ok(b"n0\0r5\0".to_vec()),
            Op::Directory(_) => Ok(Vec::new()),
            other => panic!("unexpected {other:?}"),
        });
        let found = walk.finish().unwrap();
        let denied: Vec<(&str, MsgType)> = found.denied.iter().map(|d| (d.path.as_str(), d.request)).collect();
        assert_eq!(denied, vec![("/a", MsgType::Read), ("/a", MsgType::GetPerms)]);
        let a = &found.nodes.iter().find(|(p, _)| p.as_str() == "/a").unwrap().1;
        assert!(a.unreadable && a.perms.is_none() && a.value.is_empty());
        let b = &found.nodes.iter().find(|(p, _)| p.as_str() == "/a/b").unwrap().1;
        assert_eq!((&b.value[..], b.perms.as_ref().map(Perms::to_xs_string)), (&b"v"[..], Some("n0,r5".into())));
        assert_eq!(found.gone, vec!["/a/gone".to_string()]);
        assert_eq!(found.nodes.len(), 2);
    }

    #[test]
    fn units_follow_the_domain_the_evidence_is_about() {
        let owners = HashMap::from([("u-5".to_string(), 5)]);
        let of = |p: &str| Unit::of(p, &owners);
        assert_eq!(of("/local/domain/3/device/vif/0/state"), Unit::Domain(3));
        assert_eq!(of("/local/domain/0/backend/vbd/7/51712/params"), Unit::Domain(7));
        assert_eq!(of("/local/domain/0/backend/vbd"), Unit::Domain(0));
        assert_eq!(of("/libxl/9/device"), Unit::Domain(9));
        assert_eq!(of("/vm/u-5/name"), Unit::Domain(5));
        assert_eq!(of("/vm/u-6"), Unit::Other("/vm/u-6".into()));
        assert_eq!(of("/local/domain"), Unit::Other("/local".into()));
        assert_eq!(of("/tool/xenstored"), Unit::Other("/tool".into()));
    }

    #[test]
    fn a_part_covers_what_lies_below_it() {
        let parts = BTreeSet::from([Part::Subtree("/a/b".into()), Part::Node("/c".into())]);
        assert!(covered(&Part::Subtree("/a/b/x".into()), &parts));
        assert!(covered(&Part::Node("/a/b".into()), &parts));
        assert!(covered(&Part::Node("/x".into()), &BTreeSet::from([Part::Subtree("/".into())])));
        assert!(covered(&Part::Subtree("/a/b".into()), &parts));
        assert!(!covered(&Part::Subtree("/a/bc".into()), &parts));
        assert!(!covered(&Part::Subtree("/c/d".into()), &parts));
    }
}
