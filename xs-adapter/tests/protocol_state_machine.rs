//! The protocol model against the real xenstored: random sequences of device adds and removes
//! (several at once), their steps, failures and crashes, retrieves (with their lock gap) and
//! repairs run on merge-core's protocol model (the reference) and, as the same xenstore
//! operations, on a private C xenstored over its socket (the system under test). After every
//! transition the daemon is snapshotted and both policies must decide exactly what they decide
//! on the model's tree: same configuration, decisions, logs and plan.
//!
//! Quick by default; `XLSYNC_PROPTEST_CASES` sets the number of cases.

mod support;

use merge_core::config::DomainConfig;
use merge_core::decision::Class;
use merge_core::plan;
use merge_core::protocol::protocols::{hot_add, remove, retrieve, with_device, without_device};
use merge_core::protocol::scenario::{self, base_pv, DOMID};
use merge_core::protocol::world::{resolve, Edit, Effect, Move, Replicas, Status, World, XsOp};
use merge_core::reconcile::{reconcile, Inputs, JsonReplica, Outcome, Policy};
use merge_core::testkit::{device_json, DeviceSpec, GuestSpec};
use merge_core::xenstore::{Access, Change, Path, Perm, Perms, Tree};
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, FileFailurePersistence};
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;
use support::Xenstored;
use xs_adapter::live::{Client, Endpoint};

const REGRESSIONS: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../proptest-regressions/xs-adapter/protocol_state_machine.txt");

/// The devices transitions add and remove: nic 0 starts plugged, the others start absent.
fn catalogue() -> &'static [DeviceSpec] {
    static DEVICES: OnceLock<Vec<DeviceSpec>> = OnceLock::new();
    DEVICES.get_or_init(|| {
        let d = scenario::devices();
        // disk xvdb, nic 1, vtpm 0, pci 0000:03:00.0, and the base guest's nic 0.
        vec![d[0].clone(), d[2].clone(), d[3].clone(), d[5].clone(), base_pv().devices[2].clone()]
    })
}

fn base() -> &'static GuestSpec {
    static BASE: OnceLock<GuestSpec> = OnceLock::new();
    BASE.get_or_init(base_pv)
}

fn initial() -> &'static (Replicas, merge_core::hypervisor::HostInfo) {
    static INITIAL: OnceLock<(Replicas, merge_core::hypervisor::HostInfo)> = OnceLock::new();
    INITIAL.get_or_init(|| {
        let s = scenario::scenario("initial", scenario::Group::Single, base(), Vec::new(), false);
        (s.initial.replicas.clone(), s.host)
    })
}

#[derive(Clone, Debug)]
enum Transition {
    /// Start adding (or removing) catalogue device `n`.
    Start { device: usize, remove: bool },
    /// A step, a failure or a crash of a running process.
    Move(Move),
    /// Start a retrieve: it reads the JSON, then (maybe after other steps) xenstore.
    Retrieve,
    /// Carry out the no-loss plan on both replicas (no process running).
    Repair,
}

#[derive(Clone)]
struct ModelState {
    world: World,
    /// What the last transition changed: replayed on the daemon.
    last: Effect,
    /// What a retrieve that completed in the last transition saw.
    observed: Option<Replicas>,
}

impl fmt::Debug for ModelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let procs: Vec<String> = self.world.procs.iter().map(|p| format!("{} {:?}", p.op.name, p.status)).collect();
        write!(f, "ModelState {{ {} nodes, processes: {procs:?} }}", self.world.replicas.tree.len())
    }
}

/// Whether catalogue device `x` is fully in both replicas (`Some(true)`), fully absent from
/// both (`Some(false)`), or anything in between (`None`).
fn presence(r: &Replicas, x: &DeviceSpec) -> Option<bool> {
    let in_json = match (r.config(), x.kind().array(), device_json(x)) {
        (Some(c), Some(a), Some(e)) => c.devices(a).contains(&e),
        _ => false,
    };
    let in_xs = match merge_core::testkit::device_paths(base(), x) {
        Some(p) => r.tree.get_str(&p.record).is_some(),
        None => {
            let merge_core::testkit::Device::Pci(p) = &x.detail else { return None };
            let be = format!("/local/domain/0/backend/pci/{DOMID}/0");
            (0..8).any(|i| r.tree.text(&format!("{be}/dev-{i}")) == Some(p.bdf().as_str()))
        }
    };
    (in_json == in_xs).then_some(in_json)
}

fn running(w: &World) -> usize {
    w.procs.iter().filter(|p| p.status.is_running()).count()
}

fn busy(w: &World, x: &DeviceSpec) -> bool {
    let name = merge_core::protocol::protocols::describe(x);
    w.procs.iter().any(|p| p.status.is_running() && p.op.name.starts_with(&format!("{name} ")))
}

fn start_allowed(w: &World, device: usize, remove: bool) -> bool {
    let x = &catalogue()[device];
    let device_ops = w.procs.iter().filter(|p| p.status.is_running() && p.op.name != "retrieve").count();
    device_ops < 2 && !busy(w, x) && presence(&w.replicas, x) == Some(remove)
}

fn no_process(w: &World) -> bool {
    running(w) == 0
}

fn retrieve_running(w: &World) -> bool {
    w.procs.iter().any(|p| p.op.name == "retrieve" && p.status.is_running())
}

/// The no-loss plan carried out on the model: the JSON as `plan::apply` leaves it, and the
/// xenstore changes as operations a daemon can replay (a rewritten node keeps its
/// permissions, as a daemon write does).
fn repair(w: &World, host: &merge_core::hypervisor::HostInfo) -> Effect {
    let r = &w.replicas;
    let out = reconcile(Inputs { domid: DOMID, json: &r.json, tree: &r.tree, host }, Policy::NoLoss);
    let merged = out.config.expect("no-loss always gives a configuration");
    let base = match &r.json {
        JsonReplica::Present(c) => c.clone(),
        _ => merged,
    };
    let (json, tree) = plan::apply(&out.plan, &base, &r.tree);
    let mut edits = Vec::new();
    let mut removed: Vec<Path> = Vec::new();
    for c in r.tree.diff(&tree) {
        match c {
            Change::Added(p, n) | Change::Updated { path: p, new: n, .. } => {
                edits.push(Edit::Write { path: p, value: n.value.to_vec(), perms: n.perms })
            }
            Change::Removed(p, _) => {
                if !removed.iter().any(|a| p.starts_with(a)) {
                    removed.push(p.clone());
                    edits.push(Edit::Rm { path: p });
                }
            }
        }
    }
    let json = (JsonReplica::Present(json.clone()) != r.json).then_some(JsonReplica::Present(json));
    Effect { xs: resolve(&r.tree, &edits), json }
}

struct Model;

impl ReferenceStateMachine for Model {
    type State = ModelState;
    type Transition = Transition;

    fn init_state() -> BoxedStrategy<ModelState> {
        let world = World::new(initial().0.clone());
        Just(ModelState { world, last: Effect::default(), observed: None }).boxed()
    }

    fn transitions(state: &ModelState) -> BoxedStrategy<Transition> {
        let w = &state.world;
        let mut options: Vec<(u32, BoxedStrategy<Transition>)> = Vec::new();
        for device in 0..catalogue().len() {
            for remove in [false, true] {
                if start_allowed(w, device, remove) {
                    options.push((2, Just(Transition::Start { device, remove }).boxed()));
                }
            }
        }
        for mv in w.moves() {
            options.push((6, Just(Transition::Move(mv)).boxed()));
        }
        if !retrieve_running(w) {
            options.push((2, Just(Transition::Retrieve).boxed()));
        }
        if no_process(w) {
            options.push((2, Just(Transition::Repair).boxed()));
        }
        Union::new_weighted(options).boxed()
    }

    fn preconditions(state: &ModelState, t: &Transition) -> bool {
        let w = &state.world;
        match t {
            Transition::Start { device, remove } => start_allowed(w, *device, *remove),
            Transition::Move(mv) => w.moves().contains(mv),
            Transition::Retrieve => !retrieve_running(w),
            Transition::Repair => no_process(w),
        }
    }

    fn apply(mut state: ModelState, t: &Transition) -> ModelState {
        state.last = Effect::default();
        state.observed = None;
        match t {
            Transition::Start { device, remove: false } => {
                let x = &catalogue()[*device];
                state.world.start(hot_add(&without_device(base(), x), x));
            }
            Transition::Start { device, remove: true } => {
                let x = &catalogue()[*device];
                let g = if base().devices.contains(x) { base().clone() } else { with_device(base(), x) };
                state.world.start(remove(&g, x));
            }
            Transition::Retrieve => {
                state.world.start(retrieve());
            }
            Transition::Move(mv) => {
                let (next, effect) = state.world.apply(*mv).expect("a precondition-checked move");
                let p = &next.procs[mv.proc];
                if p.status == Status::Done {
                    state.observed = p.observed.clone();
                }
                state.world = next;
                state.last = effect;
            }
            Transition::Repair => {
                let effect = repair(&state.world, &initial().1);
                for op in &effect.xs {
                    op.apply(&mut state.world.replicas.tree);
                }
                if let Some(j) = &effect.json {
                    state.world.replicas.json = j.clone();
                }
                state.last = effect;
            }
        }
        state
    }
}

/// The daemon, a client, and the JSON file's content.
struct Sut {
    daemon: Xenstored,
    client: Client,
    json: JsonReplica,
}

/// The daemon accepts as owner only a domain it knows, and a user-space xenstored knows only
/// dom0 (it answers ENOENT otherwise, see live_snapshot.rs). A node owned by guest `D` is
/// therefore written as owned by dom0 with full access for `D`: every domain other than dom0
/// gets the same access as in the model, so every trust decision is the same.
fn daemon_perms(p: &Perms) -> Perms {
    let owner = p.owner();
    if owner == 0 {
        return p.clone();
    }
    let mut entries = p.entries().to_vec();
    entries[0].domid = 0;
    entries.insert(1, Perm { access: Access::Both, domid: owner });
    Perms::new(entries).expect("non-empty")
}

fn replay(client: &mut Client, ops: &[XsOp]) {
    if ops.is_empty() {
        return;
    }
    client
        .transaction(|tx| {
            for op in ops {
                match op {
                    XsOp::Write { path, value, perms } => {
                        tx.write(path.as_str(), value)?;
                        if let Some(p) = perms {
                            tx.set_perms(path.as_str(), &daemon_perms(p))?;
                        }
                    }
                    XsOp::Rm { path } => tx.rm(path.as_str())?,
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("replaying {} operations on the daemon: {e}", ops.len()));
}

/// The userdata file round trip: printed as libxl prints it, read back.
fn through_file(json: &JsonReplica) -> JsonReplica {
    match json {
        JsonReplica::Present(c) => {
            JsonReplica::Present(DomainConfig::parse(&c.to_userdata_bytes()).expect("the userdata we wrote parses"))
        }
        other => other.clone(),
    }
}

/// A node as compared: path, value, and the guest's and a third domain's access.
type NodeView = (String, Vec<u8>, Option<(Access, Access)>);

/// The nodes reconciliation reads for the guest, for comparing trees: path, value, and the
/// access the guest and a third domain have (what trust decisions use).
fn relevant(tree: &Tree) -> Vec<NodeView> {
    let keep = |p: &str| {
        ["/local/domain/1", "/local/domain/0/backend", "/libxl", "/vm"]
            .iter()
            .any(|r| p == *r || p.starts_with(&format!("{r}/")))
    };
    tree.iter()
        .filter(|(p, _)| keep(p.as_str()))
        .map(|(p, n)| {
            (p.to_string(), n.value.to_vec(), n.perms.as_ref().map(|x| (x.access_for(DOMID), x.access_for(7))))
        })
        .collect()
}

fn outcomes(json: &JsonReplica, tree: &Tree) -> [Outcome; 2] {
    let host = &initial().1;
    [Policy::NoLoss, Policy::Libxl417].map(|p| reconcile(Inputs { domid: DOMID, json, tree, host }, p))
}

struct OnTheDaemon;

impl StateMachineTest for OnTheDaemon {
    type SystemUnderTest = Sut;
    type Reference = Model;

    fn init_test(state: &ModelState) -> Sut {
        let daemon = Xenstored::start_empty();
        let mut client = Client::connect(Endpoint::Socket(daemon.socket())).expect("connect to the daemon");
        let load: Vec<XsOp> = state
            .world
            .replicas
            .tree
            .iter()
            .map(|(p, n)| XsOp::Write { path: p.clone(), value: n.value.to_vec(), perms: n.perms.clone() })
            .collect();
        replay(&mut client, &load);
        Sut { daemon, client, json: through_file(&state.world.replicas.json) }
    }

    fn apply(mut sut: Sut, state: &ModelState, _t: Transition) -> Sut {
        replay(&mut sut.client, &state.last.xs);
        if let Some(j) = &state.last.json {
            sut.json = through_file(j);
        }
        sut
    }

    fn check_invariants(sut: &Sut, state: &ModelState) {
        let mut client = Client::connect(Endpoint::Socket(sut.daemon.socket())).expect("connect");
        let snap = client.snapshot_subtree(&Path::root()).expect("snapshot the daemon").tree;
        let model = &state.world.replicas;
        assert_eq!(relevant(&snap), relevant(&model.tree), "the daemon's tree and the model's differ");
        let (ours, theirs) = (outcomes(&sut.json, &snap), outcomes(&model.json, &model.tree));
        for (o, m) in ours.iter().zip(&theirs) {
            assert_eq!(o, m, "{} decides differently on the daemon's snapshot", o.policy.name());
        }
        // A retrieve that just read xenstore saw its JSON copy and this tree.
        if let Some(seen) = &state.observed {
            let (o, m) = (outcomes(&seen.json, &snap), outcomes(&seen.json, &seen.tree));
            assert_eq!(o, m, "a retrieve in its lock gap decides differently on the daemon");
        }
    }
}

/// Runs one transition on both sides and checks them, as the state machine runner does.
fn drive(state: ModelState, sut: Sut, t: Transition) -> (ModelState, Sut) {
    assert!(Model::preconditions(&state, &t), "{t:?} is not possible now: {state:?}");
    let state = Model::apply(state, &t);
    let sut = OnTheDaemon::apply(sut, &state, t);
    OnTheDaemon::check_invariants(&sut, &state);
    (state, sut)
}

fn classes(r: &Replicas) -> BTreeSet<Class> {
    outcomes(&r.json, &r.tree)[0].decisions.iter().map(|d| d.class).collect()
}

/// A fixed sequence through the half-baked states that matter, so the random test above is
/// known to reach them on the daemon: a nic added inside a retrieve's lock gap, its hotplug
/// script failing, a repair; then a removal stopped after `online = 0, state = 5` by a crash,
/// and a repair.
#[test]
fn scripted_sequence_on_the_daemon() {
    use merge_core::protocol::world::Choice;
    let mv = |proc, choice| Transition::Move(Move { proc, choice });
    let mut state =
        Model::init_state().new_tree(&mut proptest::test_runner::TestRunner::deterministic()).unwrap().current();
    let mut sut = OnTheDaemon::init_test(&state);
    let mut seen = BTreeSet::new();
    let nic1 = catalogue().iter().position(|d| merge_core::protocol::protocols::describe(d) == "nic 1").unwrap();
    let nic0 = catalogue().iter().position(|d| merge_core::protocol::protocols::describe(d) == "nic 0").unwrap();
    let script = [
        Transition::Start { device: nic1, remove: false },
        Transition::Retrieve,
        mv(1, Choice::Step),    // retrieve reads the JSON
        mv(0, Choice::Step),    // json_lock, read, add
        mv(0, Choice::Step),    // write the JSON
        mv(0, Choice::Step),    // commit
        mv(1, Choice::Step),    // retrieve reads xenstore: the lock gap
        mv(0, Choice::Step),    // InitWait
        mv(0, Choice::Fail(0)), // the hotplug script fails
        Transition::Repair,
        Transition::Start { device: nic0, remove: true },
        mv(2, Choice::Step), // online = 0, state = 5
        mv(2, Choice::Crash),
        Transition::Repair,
    ];
    for t in script {
        (state, sut) = drive(state, sut, t);
        seen.extend(classes(&state.world.replicas));
        if let Some(o) = &state.observed {
            seen.extend(classes(o));
        }
    }
    for want in
        [Class::Recovered, Class::Plugging, Class::Failed, Class::Unplugging, Class::JsonOnly, Class::Consistent]
    {
        assert!(seen.contains(&want), "the script never reached {want:?} on the daemon: {seen:?}");
    }
    assert_eq!(
        classes(&state.world.replicas).into_iter().filter(|c| c.is_half_baked()).count(),
        0,
        "repaired at the end"
    );
}

fn config() -> Config {
    let cases = std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..Config::default()
    }
}

prop_state_machine! {
    #![proptest_config(config())]

    #[test]
    fn model_and_daemon_decide_alike(sequential 1..30 => OnTheDaemon);
}
