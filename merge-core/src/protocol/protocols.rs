//! libxl 4.17's protocols (spec §4) as ordered observable steps.
//!
//! The nodes each step writes are not written by hand: they are the difference between the
//! testkit's rendering of the guest with and without the device ([`device_nodes`]), so the
//! protocols write exactly the nodes (values and permissions) of a consistent host, in libxl's
//! order and in libxl's states:
//! - `libxl__device_generic_add` writes the libxl record, the frontend and the backend with
//!   `state = 1` on both ends, the backend keys as copied into the record (the vif's
//!   `hotplug-status` is still empty), and nothing the hotplug script or the drivers write
//!   later (the backend keys the record has no copy of);
//! - the backend driver then writes `state = 2` (InitWait), the hotplug script its keys, and
//!   once the guest's frontend connects both ends reach 4.
//!
//! What is modelled, per spec section:
//! - §4.1 creation: domain nodes, `dm-version`, `libxl__build_post`'s nodes, then every device
//!   (disks first, then consoles, then `device_type_tbl` order) without JSON, the JSON written
//!   by `domcreate_complete`, and the guest connecting its frontends after unpause;
//! - §4.2/§4.3 hot-add (nic, vtpm, vdispl, vsnd, disk, usbctrl): json_lock and read, JSON
//!   write, the commit (or a commit error, or `generic_add` failing part way and the caller
//!   committing anyway, 4.17.5+), InitWait (or its 10 s timeout), the hotplug script (or its
//!   failure, `hotplug-status = error`), the connection. Transaction retries (EAGAIN) rewrite
//!   the same JSON and add no state; they are not modelled;
//! - §4.4 cdrom insert and eject (HVM, qemu-xen): both lock sections and the QMP window with
//!   the drive empty;
//! - §4.5 generic remove: `online = 0, state = 5`, Closed, `libxl__device_destroy`, and the
//!   FORCE_AUTO timeout path to FORCE_ON; the JSON is never touched;
//! - §4.6 PCI attach (PV, no stub domain) with `num_devs` read outside the lock, and detach;
//! - §4.7 usbctrl add (pv, qusb, devicemodel), usbdev attach (with an existing or a new
//!   controller) and detach.
//!
//! Simplifications, all documented where they apply: a frontend and its backend connect (or
//! close) in one step; the hotplug remove script writes nothing visible; retrieve reads
//! xenstore as one snapshot (xlsync's reader is consistent per domain).

use super::world::{join, Action, Actor, Edit, JsonEdit, Operation, PciAdd, StepDef, Then};
use crate::config::DomainConfig;
use crate::hypervisor::{HostInfo, Scheduler};
use crate::testkit::{
    assemble, device_json, domain_json, Device, DevicePaths, DeviceSpec, DiskMedium, GuestSpec, Kind,
};
use crate::xenstore::{Change, Node, Path, Tree};
use std::sync::Arc;

/// Both replicas and the hypervisor's answers for a host running exactly these guests,
/// rendered by the testkit.
pub fn render(guests: &[GuestSpec]) -> (Tree, Vec<Option<DomainConfig>>, HostInfo) {
    let g = assemble(guests.to_vec(), Scheduler::Credit2, &[]);
    let configs = guests.iter().map(|s| g.configs.get(&s.domid).cloned().flatten()).collect();
    (g.scenario.tree, configs, g.scenario.host)
}

fn render_tree(g: &GuestSpec) -> Tree {
    render(std::slice::from_ref(g)).0
}

/// `g` with one more device.
pub fn with_device(g: &GuestSpec, x: &DeviceSpec) -> GuestSpec {
    let mut g = g.clone();
    g.devices.push(x.clone());
    g
}

/// `g` without the device.
pub fn without_device(g: &GuestSpec, x: &DeviceSpec) -> GuestSpec {
    let mut g = g.clone();
    g.devices.retain(|d| d != x);
    g
}

/// The nodes adding `x` to `g` creates or changes, as rendered on a consistent host.
pub fn device_nodes(g: &GuestSpec, x: &DeviceSpec) -> Vec<(Path, Node)> {
    let before = render_tree(g);
    let after = render_tree(&with_device(g, x));
    before
        .diff(&after)
        .into_iter()
        .filter_map(|c| match c {
            Change::Added(p, n) | Change::Updated { path: p, new: n, .. } => Some((p, n)),
            Change::Removed(..) => None,
        })
        .collect()
}

/// The paths of a generic device (frontend, backend, libxl record).
fn paths(g: &GuestSpec, x: &DeviceSpec) -> Option<DevicePaths> {
    crate::testkit::device_paths(g, x)
}

fn path(s: &str) -> Path {
    Path::new(s).unwrap_or_else(|e| panic!("invalid path {s}: {e}"))
}

/// Whether `p` is `dir` or below it, or an ancestor of `dir` (a parent created with it).
fn belongs(p: &Path, dir: &Path) -> bool {
    p.starts_with(dir) || dir.starts_with(p)
}

/// A generic device's nodes, split by who writes them and when.
struct GenericNodes {
    /// The record directory and its `frontend`/`backend` pointers (generic_add's first write).
    record_pointers: Vec<Edit>,
    frontend: Vec<Edit>,
    backend: Vec<Edit>,
    /// The copy of the backend keys in the record (generic_add's last write).
    record_copy: Vec<Edit>,
    /// Backend keys written later, by the hotplug script or the backend driver.
    runtime: Vec<Edit>,
    paths: DevicePaths,
    script: bool,
    /// A QEMU backend: libxl does not wait for InitWait.
    qemu: bool,
}

impl GenericNodes {
    fn of(g: &GuestSpec, x: &DeviceSpec) -> Option<GenericNodes> {
        let paths = paths(g, x)?;
        let rendered = render_tree(&with_device(g, x));
        let record = path(&paths.record);
        let frontend = path(&paths.frontend);
        let backend = paths.backend.as_deref().map(path);
        let mut n = GenericNodes {
            record_pointers: Vec::new(),
            frontend: Vec::new(),
            backend: Vec::new(),
            record_copy: Vec::new(),
            runtime: Vec::new(),
            script: false,
            qemu: false,
            paths: paths.clone(),
        };
        let backend_kind = backend.as_ref().and_then(|b| b.components().nth(4).map(str::to_string));
        n.script = matches!(backend_kind.as_deref(), Some("vbd") | Some("vif"));
        n.qemu =
            matches!(backend_kind.as_deref(), Some("qdisk") | Some("qusb") | Some("vfb") | Some("9pfs") | Some("vkbd"));
        for (p, node) in device_nodes(g, x) {
            if belongs(&p, &record) {
                if p.starts_with(&record) && p != record && !matches!(p.name(), "frontend" | "backend")
                    || backend.is_none()
                {
                    n.record_copy.push(Edit::node(&p, &node));
                } else {
                    n.record_pointers.push(Edit::node(&p, &node));
                }
            } else if belongs(&p, &frontend) {
                let node = if p == join(&frontend, "state") { with_value(&node, "1") } else { node };
                n.frontend.push(Edit::node(&p, &node));
            } else if let Some(be) = backend.as_ref().filter(|be| belongs(&p, be)) {
                let rel = p.as_str().strip_prefix(be.as_str()).unwrap_or("");
                // The value libxl wrote at add time is the record's copy; a key the record
                // has no copy of was written later.
                let copy = if rel.is_empty() { None } else { rendered.get_str(&format!("{record}{rel}")) };
                match copy {
                    Some(c) => {
                        n.backend.push(Edit::node(&p, &with_value(&node, c.text().unwrap_or(""))));
                        // The vif's empty hotplug-status becomes `connected` later.
                        if rel != "/state" && c.value != node.value {
                            n.runtime.push(Edit::node(&p, &node));
                        }
                    }
                    None if p.starts_with(be) && p != *be => n.runtime.push(Edit::node(&p, &node)),
                    None => n.backend.push(Edit::node(&p, &node)),
                }
            }
        }
        Some(n)
    }

    fn all_add(&self) -> Vec<Edit> {
        [&self.record_pointers, &self.frontend, &self.backend, &self.record_copy]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    fn backend_state(&self) -> Option<Path> {
        self.paths.backend.as_deref().map(|b| path(&format!("{b}/state")))
    }

    /// The guest's frontend and the backend reach Connected.
    fn connect(&self) -> Option<StepDef> {
        let be = self.backend_state()?;
        let fe = path(&format!("{}/state", self.paths.frontend));
        Some(StepDef::new(
            "frontend and backend connect (state 4)",
            Actor::Guest,
            Action::Requires(be.clone(), Box::new(Action::Xs(vec![Edit::write(&fe, "4"), Edit::write(&be, "4")]))),
        ))
    }

    /// InitWait and the hotplug script. With `failures`, the InitWait timeout (not for QEMU
    /// backends, which libxl does not wait for) and the script's failure are edges too.
    fn bring_up(&self, failures: bool) -> Vec<StepDef> {
        let Some(be_state) = self.backend_state() else { return Vec::new() };
        let be = path(self.paths.backend.as_deref().unwrap_or("/"));
        let mut steps = Vec::new();
        let mut init = StepDef::new(
            "backend reaches InitWait (state 2)",
            Actor::Backend,
            Action::Requires(be_state.clone(), Box::new(Action::Xs(vec![Edit::write(&be_state, "2")]))),
        );
        if failures && !self.qemu {
            init = init.or(
                "InitWait timeout (10 s): the add fails, nothing is rolled back",
                Action::Invisible,
                Then::Fail,
            );
        }
        steps.push(init);
        if self.script {
            let mut script = StepDef::new("hotplug script succeeds", Actor::Script, Action::Xs(self.runtime.clone()));
            if failures {
                script = script.or(
                    "hotplug script fails: hotplug-status = error, nothing is rolled back",
                    Action::Xs(vec![
                        Edit::write(&join(&be, "hotplug-status"), "error"),
                        Edit::write(&join(&be, "hotplug-error"), "script failed"),
                    ]),
                    Then::Fail,
                );
            }
            steps.push(script);
        } else if !self.runtime.is_empty() {
            steps.push(StepDef::new(
                "backend publishes its features",
                Actor::Backend,
                Action::Xs(self.runtime.clone()),
            ));
        }
        steps
    }
}

fn with_value(node: &Node, value: &str) -> Node {
    Node::new(value.as_bytes().to_vec()).with_perms(node.perms.clone())
}

/// The JSON entry the add paths store: `None` for devices never stored (console, an automatic
/// usb controller).
fn json_entry(x: &DeviceSpec) -> Option<JsonEdit> {
    let array = x.kind().array()?;
    device_json(x).map(|entry| JsonEdit::AddOrReplace { array, entry })
}

/// Take json_lock, read the JSON and add the device; write the JSON.
fn json_steps(x: &DeviceSpec) -> Vec<StepDef> {
    let edit = json_entry(x).unwrap_or(JsonEdit::Keep);
    vec![
        StepDef::new("take json_lock, read the JSON, add the device", Actor::Libxl, Action::LockReadJson(edit)),
        StepDef::new("write the JSON (inside the transaction loop)", Actor::Libxl, Action::WriteJson),
    ]
}

fn commit_and_unlock(label: &str, edits: Vec<Edit>) -> StepDef {
    StepDef::new(label, Actor::Libxl, Action::Seq(vec![Action::Xs(edits), Action::UnlockJson])).or(
        "commit fails (not EAGAIN): the JSON already has the device",
        Action::UnlockJson,
        Then::Fail,
    )
}

/// Hot-add of a generic device (§4.2; disks §4.3 and usb controllers §4.7 have the same
/// observable order).
fn generic_hot_add(g: &GuestSpec, x: &DeviceSpec) -> Vec<StepDef> {
    let n = GenericNodes::of(g, x).expect("a generic device");
    let mut steps = json_steps(x);
    let mut commit = commit_and_unlock("commit generic_add, release json_lock", n.all_add());
    if n.paths.backend.is_some() {
        let cuts: [(&str, Vec<Edit>); 3] = [
            ("generic_add fails after the record pointers, committed anyway", n.record_pointers.clone()),
            (
                "generic_add fails after the frontend, committed anyway",
                [n.record_pointers.clone(), n.frontend.clone()].concat(),
            ),
            (
                "generic_add fails after the backend (no record copy), committed anyway",
                [n.record_pointers.clone(), n.frontend.clone(), n.backend.clone()].concat(),
            ),
        ];
        for (label, edits) in cuts {
            commit = commit.or(label, Action::Seq(vec![Action::Xs(edits), Action::UnlockJson]), Then::Next);
        }
    }
    steps.push(commit);
    if n.paths.backend.is_none() {
        // devicemodel usbctrl: QEMU's controller, added over QMP.
        steps.push(StepDef::new("QMP device_add of the controller", Actor::Libxl, Action::Invisible).or(
            "QMP device_add fails: the record is removed, the JSON is not reverted",
            Action::Xs(vec![Edit::Cleanup { path: path(&n.paths.record) }]),
            Then::Fail,
        ));
    }
    steps.extend(n.bring_up(true));
    steps.extend(n.connect());
    steps
}

/// The usbdev's port node and its attached value.
fn usb_port(g: &GuestSpec, x: &DeviceSpec) -> (Path, Node) {
    device_nodes(g, x).into_iter().next().expect("a usbdev writes its port node")
}

fn usbdev_hot_add(g: &GuestSpec, x: &DeviceSpec) -> Vec<StepDef> {
    let (port, node) = usb_port(g, x);
    let mut steps = json_steps(x);
    steps.push(commit_and_unlock(
        "commit the host busid into the port, release json_lock",
        vec![Edit::node(&port, &node)],
    ));
    steps.push(StepDef::new("bind the interfaces to usbback (sysfs)", Actor::Libxl, Action::Invisible).or(
        "binding fails: the port is written back to \"\", the JSON entry stays",
        Action::Xs(vec![Edit::write(&port, "")]),
        Then::Fail,
    ));
    steps
}

/// The PCI nodes of `x`: what creating the backend writes, the function's keys, the host node.
fn pci_nodes(g: &GuestSpec, x: &DeviceSpec) -> (Arc<PciAdd>, Vec<Edit>, Path, Path) {
    let backend = path(&format!("/local/domain/0/backend/pci/{}/0", g.domid));
    let frontend = path(&format!("/local/domain/{}/device/pci/0", g.domid));
    let mut add = PciAdd { create: Vec::new(), slot0: Vec::new(), backend: backend.clone() };
    let mut host = Vec::new();
    for (p, node) in device_nodes(g, x) {
        if p.as_str().starts_with("/libxl/pci") {
            host.push(Edit::node(&p, &node));
        } else if p.parent().as_ref() == Some(&backend) && p.name().ends_with("-0") {
            add.slot0.push((p, node));
        } else if p == join(&backend, "num_devs") {
            // Written from the count read before the transaction.
        } else if p == join(&backend, "state") || p == join(&frontend, "state") {
            add.create.push((p, with_value(&node, "1")));
        } else {
            add.create.push((p, node));
        }
    }
    (Arc::new(add), host, backend, frontend)
}

fn pci_host_cleanup(host: &[Edit]) -> Vec<Edit> {
    host.iter()
        .filter_map(|e| match e {
            Edit::Write { path, .. } if path.name() == "domid" => Some(Edit::Cleanup { path: path.clone() }),
            _ => None,
        })
        .collect()
}

/// `libxl_device_pci_add` for a PV guest without a stub domain (§4.6). At creation
/// (`starting`) there is no JSON and no lock.
fn pci_add(g: &GuestSpec, x: &DeviceSpec, starting: bool) -> (Vec<StepDef>, Option<StepDef>) {
    let (add, host, backend, frontend) = pci_nodes(g, x);
    let undo = pci_host_cleanup(&host);
    let mut steps = vec![
        StepDef::new("write /libxl/pci/<bdf>/domid", Actor::Libxl, Action::Xs(host.clone())),
        StepDef::new("reset, permissions, xc_assign_device", Actor::Libxl, Action::Invisible).or(
            "assignment fails: /libxl/pci/<bdf>/domid removed",
            Action::Xs(undo.clone()),
            Then::Fail,
        ),
        StepDef::new(
            "read num_devs (outside the lock and any transaction)",
            Actor::Libxl,
            Action::ReadPciCount { backend: backend.clone() },
        ),
    ];
    if starting {
        steps.push(StepDef::new("commit the function's keys", Actor::Libxl, Action::PciCommit(add)));
    } else {
        let edit = json_entry(x).unwrap_or(JsonEdit::Keep);
        steps.push(StepDef::new(
            "take json_lock, read the JSON, add the device",
            Actor::Libxl,
            Action::LockReadJson(edit),
        ));
        steps.push(StepDef::new("write the JSON (inside the transaction loop)", Actor::Libxl, Action::WriteJson));
        steps.push(
            StepDef::new(
                "commit the function's keys, release json_lock",
                Actor::Libxl,
                Action::Seq(vec![Action::PciCommit(add), Action::UnlockJson]),
            )
            .or(
                "commit fails: /libxl/pci/<bdf>/domid removed, the JSON keeps the device",
                Action::Seq(vec![Action::Xs(undo), Action::UnlockJson]),
                Then::Fail,
            ),
        );
    }
    let be_state = join(&backend, "state");
    let connect = StepDef::new(
        "pciback connects (state 4)",
        Actor::Backend,
        Action::Requires(
            be_state.clone(),
            Box::new(Action::Xs(vec![Edit::write(&be_state, "4"), Edit::write(&join(&frontend, "state"), "4")])),
        ),
    );
    (steps, Some(connect))
}

/// Hot-add (or attach) of `x` to the running guest `g` (`g` without `x`).
pub fn hot_add(g: &GuestSpec, x: &DeviceSpec) -> Operation {
    let steps = match &x.detail {
        Device::Usbdev(_) => usbdev_hot_add(g, x),
        Device::Pci(_) => {
            let (mut steps, connect) = pci_add(g, x, false);
            steps.extend(connect);
            steps
        }
        _ => generic_hot_add(g, x),
    };
    Operation { name: format!("{} hot-add", describe(x)), steps, crashable: true }
}

/// `xl usbdev-attach` without a free port: libxl creates a controller (its JSON and xenstore
/// committed at once), then attaches the device (§4.7 usbdev add, step 3).
pub fn usbdev_add_with_new_controller(g: &GuestSpec, ctrl: &DeviceSpec, dev: &DeviceSpec) -> Operation {
    let n = GenericNodes::of(g, ctrl).expect("a usb controller");
    let mut steps = json_steps(ctrl);
    steps.push(commit_and_unlock("commit the new controller, release json_lock", n.all_add()));
    steps.extend(usbdev_hot_add(&with_device(g, ctrl), dev));
    steps.extend(n.bring_up(false));
    steps.extend(n.connect());
    Operation { name: format!("{} hot-add with a new controller", describe(dev)), steps, crashable: true }
}

/// Removal of `x` from the running guest `g` (which has it). The JSON is never touched.
pub fn remove(g: &GuestSpec, x: &DeviceSpec) -> Operation {
    let rest = without_device(g, x);
    let steps = match &x.detail {
        Device::Usbdev(_) => {
            let (port, _) = usb_port(&rest, x);
            vec![StepDef::new(
                "unbind from usbback, port = \"\", rebind the host driver",
                Actor::Libxl,
                Action::Xs(vec![Edit::write(&port, "")]),
            )]
        }
        Device::Pci(p) => {
            let (_, host, backend, frontend) = pci_nodes(&rest, x);
            let bdf = p.bdf();
            let be_state = join(&backend, "state");
            vec![
                StepDef::new(
                    "transaction: state-i = 5, state = 7",
                    Actor::Libxl,
                    Action::PciMarkClosing { backend: backend.clone(), bdf: bdf.clone() },
                ),
                StepDef::new(
                    "pciback reconfigures (state 4)",
                    Actor::Backend,
                    Action::Requires(be_state.clone(), Box::new(Action::Xs(vec![Edit::write(&be_state, "4")]))),
                ),
                StepDef::new(
                    "transaction: remove the function's keys, num_devs - 1",
                    Actor::Libxl,
                    Action::PciRemoveKeys { backend: backend.clone(), bdf },
                ),
                StepDef::new(
                    "last function: destroy frontend and backend",
                    Actor::Libxl,
                    Action::PciDestroyIfEmpty { backend, frontend },
                ),
                StepDef::new("remove /libxl/pci/<bdf>/domid", Actor::Libxl, Action::Xs(pci_host_cleanup(&host))),
            ]
        }
        _ => generic_remove(&rest, x),
    };
    Operation { name: format!("{} remove", describe(x)), steps, crashable: true }
}

/// `libxl__initiate_device_generic_remove` with FORCE_AUTO (§4.5).
fn generic_remove(g: &GuestSpec, x: &DeviceSpec) -> Vec<StepDef> {
    let n = GenericNodes::of(g, x).expect("a generic device");
    let record = path(&n.paths.record);
    let frontend = path(&n.paths.frontend);
    let Some(backend) = n.paths.backend.as_deref().map(path) else {
        // devicemodel usbctrl: QMP device_del, then the record goes.
        return vec![
            StepDef::new("QMP device_del of the controller", Actor::Libxl, Action::Invisible),
            StepDef::new("remove the record", Actor::Libxl, Action::Xs(vec![Edit::Cleanup { path: record }])),
        ];
    };
    let be_state = join(&backend, "state");
    let destroy = Action::Xs(vec![
        Edit::Cleanup { path: frontend.clone() },
        Edit::Cleanup { path: record },
        Edit::Cleanup { path: backend.clone() },
    ]);
    const DESTROY: usize = 4;
    vec![
        StepDef::new(
            "commit: online = 0, state = 5",
            Actor::Libxl,
            Action::Requires(
                be_state.clone(),
                Box::new(Action::Xs(vec![Edit::write(&join(&backend, "online"), "0"), Edit::write(&be_state, "5")])),
            ),
        ),
        StepDef::new(
            "frontend and backend close (state 6)",
            Actor::Guest,
            Action::Xs(vec![Edit::write(&join(&frontend, "state"), "6"), Edit::write(&be_state, "6")]),
        )
        .then(Then::Goto(DESTROY))
        .or("no Closed in 10 s: FORCE_AUTO becomes FORCE_ON", Action::Invisible, Then::Next),
        StepDef::new(
            "FORCE_ON commit: frontend removed, online = 0, state = 5",
            Actor::Libxl,
            Action::Xs(vec![
                Edit::Rm { path: frontend.clone() },
                Edit::write(&join(&backend, "online"), "0"),
                Edit::write(&be_state, "5"),
            ]),
        ),
        StepDef::new("backend closes (state 6)", Actor::Backend, Action::Xs(vec![Edit::write(&be_state, "6")])).or(
            "no Closed again: an error, but FORCE_ON destroys anyway",
            Action::Invisible,
            Then::Next,
        ),
        StepDef::new("libxl__device_destroy: frontend, record and backend removed", Actor::Libxl, destroy),
    ]
}

/// cdrom insert (`xl cd-insert`; eject is an insert of an empty medium) on an HVM guest with
/// qemu-xen (§4.4). `g` has the drive with its old medium; `new` is the drive after.
pub fn cdrom_change(g: &GuestSpec, old: &DeviceSpec, new: &DeviceSpec) -> Operation {
    let n = GenericNodes::of(g, old).expect("a disk");
    let be = path(n.paths.backend.as_deref().expect("a qdisk backend"));
    let record = path(&n.paths.record);
    let params =
        |value: &str| vec![Edit::write(&join(&be, "params"), value), Edit::write(&join(&record, "params"), value)];
    let new_params = match &new.detail {
        Device::Disk(d) => match &d.medium {
            DiskMedium::Empty => String::new(),
            DiskMedium::Qdisk { path, format } => format!("{}:{path}", format.params_prefix()),
            DiskMedium::Phy { path } => path.clone(),
        },
        _ => panic!("a cdrom is a disk"),
    };
    let edit = json_entry(new).unwrap_or(JsonEdit::Keep);
    let steps = vec![
        StepDef::new("take the device-changes lock, QMP eject", Actor::Libxl, Action::LockDev),
        StepDef::new(
            "json_lock; commit: params = \"\" in backend and record; unlock",
            Actor::Libxl,
            Action::Seq(vec![Action::LockJson, Action::Xs(params("")), Action::UnlockJson]),
        ),
        StepDef::new("QMP add-fd, blockdev-change-medium", Actor::Libxl, Action::Invisible).or(
            "QMP fails: the drive stays empty, the JSON keeps the old medium",
            Action::UnlockDev,
            Then::Fail,
        ),
        StepDef::new("take json_lock, read the JSON, replace the disk", Actor::Libxl, Action::LockReadJson(edit)),
        StepDef::new("write the JSON", Actor::Libxl, Action::WriteJson),
        StepDef::new(
            "commit: params = <fmt>:<path> in backend and record; release both locks",
            Actor::Libxl,
            Action::Seq(vec![Action::Xs(params(&new_params)), Action::UnlockJson, Action::UnlockDev]),
        )
        .or(
            "commit fails: the JSON has the new medium",
            Action::Seq(vec![Action::UnlockJson, Action::UnlockDev]),
            Then::Fail,
        ),
    ];
    let verb = if new_params.is_empty() { "eject" } else { "insert" };
    Operation { name: format!("{} {verb}", describe(old)), steps, crashable: true }
}

/// Domain creation (§4.1): `g` from nothing. Devices are added without JSON; the JSON is
/// written last; the guest connects its frontends once unpaused.
pub fn create(g: &GuestSpec) -> Operation {
    let mut empty = g.clone();
    empty.devices.clear();
    let dom0 = render(&[]).0;
    let domain = render_tree(&empty);
    let (mut make, mut dm, mut build) = (Vec::new(), Vec::new(), Vec::new());
    let home = format!("/local/domain/{}/", g.domid);
    for c in dom0.diff(&domain) {
        let (Change::Added(p, node) | Change::Updated { path: p, new: node, .. }) = c else { continue };
        let rest = p.as_str().strip_prefix(&home).unwrap_or("");
        let e = Edit::node(&p, &node);
        if p.name() == "dm-version" {
            dm.push(e);
        } else if ["memory", "cpu", "store"].iter().any(|k| rest == *k || rest.starts_with(&format!("{k}/"))) {
            build.push(e);
        } else {
            make.push(e);
        }
    }
    let mut steps = vec![StepDef::new("libxl__domain_make transaction", Actor::Libxl, Action::Xs(make))];
    if !dm.is_empty() {
        steps.push(StepDef::new("store_libxl_entry: dm-version", Actor::Libxl, Action::Xs(dm)));
    }
    steps.push(StepDef::new("libxl__build_post: memory, vcpus, store", Actor::Libxl, Action::Xs(build)));
    // Disks first (domcreate_rebuild_done), then consoles and the other pass-through kinds
    // (domcreate_launch_dm), then device_type_tbl order.
    let order = |k: Kind| match k {
        Kind::Disk => 0,
        Kind::Console | Kind::Channel | Kind::Vfb | Kind::Vkb | Kind::P9 | Kind::Pvcallsif => 1,
        Kind::Nic => 2,
        Kind::Vtpm => 3,
        Kind::Usbctrl => 4,
        Kind::Usbdev => 5,
        Kind::Pci => 6,
        Kind::Vdispl => 7,
        Kind::Vsnd => 8,
    };
    let mut devices: Vec<&DeviceSpec> = g.devices.iter().collect();
    devices.sort_by_key(|d| order(d.kind()));
    let mut so_far = empty.clone();
    let mut connects = Vec::new();
    for x in devices {
        let name = describe(x);
        match &x.detail {
            Device::Usbdev(_) => {
                let (port, node) = usb_port(&so_far, x);
                steps.push(StepDef::new(
                    format!("{name}: commit the port"),
                    Actor::Libxl,
                    Action::Xs(vec![Edit::node(&port, &node)]),
                ));
            }
            Device::Pci(_) => {
                let (pci, connect) = pci_add(&so_far, x, true);
                steps.extend(pci.into_iter().map(|s| prefixed(&name, s)));
                connects.extend(connect.map(|s| prefixed(&name, s)));
            }
            _ => {
                let n = GenericNodes::of(&so_far, x).expect("a generic device");
                steps.push(StepDef::new(format!("{name}: commit generic_add"), Actor::Libxl, Action::Xs(n.all_add())));
                steps.extend(n.bring_up(false).into_iter().map(|s| prefixed(&name, s)));
                connects.extend(n.connect().map(|s| prefixed(&name, s)));
            }
        }
        so_far = with_device(&so_far, x);
    }
    steps.push(StepDef::new(
        "domcreate_complete: write the JSON",
        Actor::Libxl,
        Action::Seq(vec![Action::LockJson, Action::WriteJsonValue(Box::new(domain_json(g))), Action::UnlockJson]),
    ));
    steps.extend(connects);
    Operation { name: format!("create {}", g.name), steps, crashable: true }
}

fn prefixed(name: &str, mut s: StepDef) -> StepDef {
    s.label = format!("{name}: {}", s.label);
    s
}

/// `libxl_retrieve_domain_configuration`'s two lock sections (spec §1 steps 1–6): it reads the
/// JSON, releases the userdata lock (QMP may take 10 s), then reads xenstore.
pub fn retrieve() -> Operation {
    Operation {
        name: "retrieve".into(),
        steps: vec![
            StepDef::new(
                "retrieve: devlock, read the JSON (userdata lock)",
                Actor::Retrieve,
                Action::Seq(vec![Action::LockDev, Action::RetrieveReadJson]),
            ),
            StepDef::new(
                "retrieve: read xenstore (userdata lock again)",
                Actor::Retrieve,
                Action::Seq(vec![Action::RetrieveReadXenstore, Action::UnlockDev]),
            ),
        ],
        crashable: false,
    }
}

/// A short name for a device: `nic 1`, `disk xvdb`, `pci 0000:03:00.0`.
pub fn describe(x: &DeviceSpec) -> String {
    match &x.detail {
        Device::Disk(d) if d.cdrom => format!("cdrom {}", d.vdev),
        Device::Disk(d) => format!("disk {}", d.vdev),
        Device::Nic(n) => format!("nic {}", n.devid),
        Device::Vtpm(v) => format!("vtpm {}", v.devid),
        Device::Usbctrl(u) => format!("usbctrl {} ({})", u.devid, u.ctrl_type.as_str()),
        Device::Usbdev(u) => format!("usbdev {}.{}", u.ctrl, u.port),
        Device::Pci(p) => format!("pci {}", p.bdf()),
        Device::Vdispl(v) => format!("vdispl {}", v.devid),
        Device::Vsnd(v) => format!("vsnd {}", v.devid),
        other => format!("{:?}", other.kind()).to_lowercase(),
    }
}
