//! The scenarios explored: every device kind × operation, two operations at once on different
//! devices of one domain, and operations racing a retrieve in its lock gap (spec §6 item 8).
//!
//! A scenario is a starting [`World`] (consistent replicas rendered by the testkit, and the
//! processes to run) plus the consistent states its operations move between: the state before
//! any of them and the state after each subset of them ([`Scenario::intended`]). Crash
//! atomicity compares every reachable state with these.

use super::protocols::{
    cdrom_change, create, describe, hot_add, remove, render, retrieve, usbdev_add_with_new_controller, with_device,
    without_device,
};
use super::world::{JsonEdit, Operation, Replicas, World};
use crate::config::DomainConfig;
use crate::hypervisor::{GuestType, HostInfo, RunState};
use crate::reconcile::JsonReplica;
use crate::testkit::{
    device_json, Boot, Device, DeviceSpec, Disk, DiskMedium, DmVersion, GuestSpec, ImageFormat, Nic, NicType, Pci,
    Usbctrl, UsbctrlType, Usbdev, UsbdevStored, Vdispl, Vsnd, VsndParams, VsndPcm, VsndStream, Vtpm,
};
use crate::xenstore::Path;

/// The guest's domid in every scenario.
pub const DOMID: u32 = 1;

/// How the operations of a scenario run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    /// One operation.
    Single,
    /// Two operations on different devices at once.
    Concurrent,
    /// One operation and a retrieve.
    LockGap,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Single => "single",
            Group::Concurrent => "concurrent",
            Group::LockGap => "lock gap",
        }
    }
}

/// What an operation means for the configuration, once it completed.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    Add(DeviceSpec),
    Remove(DeviceSpec),
    /// A cdrom's medium changes; `params` is what libxl writes for the new medium when the
    /// testkit renders it differently (an ejected drive gets `""`, a created one `aio:`).
    ReplaceDisk {
        old: DeviceSpec,
        new: DeviceSpec,
        params: Option<String>,
    },
    /// The domain is created.
    Create,
}

/// One explored scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// E.g. `nic 1 hot-add`, `nic 1 hot-add ‖ disk xvdb hot-add`.
    pub name: String,
    pub group: Group,
    pub domid: u32,
    pub host: HostInfo,
    pub initial: World,
    /// The consistent states the operations move between: `before`, then `after <ops>` for
    /// every non-empty subset of the operations. A creation's `before` is no domain at all: no
    /// userdata file, no xenstore home (no-loss retrieves no configuration there).
    pub intended: Vec<(String, Replicas)>,
    /// Whether the scenario creates the domain (before it, the domain does not exist).
    pub creates_domain: bool,
}

/// A device-level operation to build a scenario from.
#[derive(Debug, Clone)]
pub struct Op {
    pub operation: Operation,
    pub intents: Vec<Intent>,
}

/// The guest every scenario starts from: a PV guest with a console, one disk and one nic.
pub fn base_pv() -> GuestSpec {
    GuestSpec {
        domid: DOMID,
        uuid: "5a0a7a3e-1c2b-4d5e-8f90-0123456789ab".into(),
        name: "guest1".into(),
        guest_type: GuestType::Pv,
        dm_version: DmVersion::QemuXen,
        boot: Boot::Kernel { kernel: "/boot/vmlinuz".into(), cmdline: "root=/dev/xvda1 ro".into(), ramdisk: None },
        max_vcpus: 2,
        online_vcpus: vec![0, 1],
        max_memkb: 1_048_576,
        target_memkb: 1_048_576,
        video_memkb: 0,
        weight: 256,
        cap: 0,
        configured_weight: None,
        devices: vec![
            DeviceSpec::in_dom0(Device::Console),
            disk("xvda", phy("/dev/vg0/guest1-root"), false),
            nic(0, NicType::Vif),
        ],
    }
}

/// An HVM guest with qemu-xen (for cdroms and emulated usb controllers).
pub fn base_hvm() -> GuestSpec {
    GuestSpec {
        guest_type: GuestType::Hvm,
        boot: Boot::Firmware,
        max_memkb: 2_097_152,
        target_memkb: 2_097_152,
        video_memkb: 8192,
        devices: vec![
            DeviceSpec::in_dom0(Device::Console),
            disk("hda", phy("/dev/vg0/guest1-root"), false),
            nic(0, NicType::VifIoemu),
        ],
        ..base_pv()
    }
}

fn phy(path: &str) -> DiskMedium {
    DiskMedium::Phy { path: path.into() }
}

fn disk(vdev: &str, medium: DiskMedium, cdrom: bool) -> DeviceSpec {
    DeviceSpec::in_dom0(Device::Disk(Disk {
        vdev: vdev.into(),
        medium,
        readwrite: !cdrom,
        cdrom,
        explicit_backend: false,
    }))
}

fn nic(devid: u32, nictype: NicType) -> DeviceSpec {
    DeviceSpec::in_dom0(Device::Nic(Nic {
        devid,
        mac: format!("00:16:3e:5c:01:{:02x}", devid + 1),
        bridge: Some("xenbr0".into()),
        mtu: None,
        ip: None,
        script: None,
        nictype,
        model: None,
    }))
}

fn usbctrl(ctrl_type: UsbctrlType, automatic: bool) -> DeviceSpec {
    let ports = if ctrl_type == UsbctrlType::Devicemodel { 6 } else { 4 };
    DeviceSpec::in_dom0(Device::Usbctrl(Usbctrl { devid: 0, ctrl_type, version: 2, ports, automatic }))
}

fn usbdev(stored: UsbdevStored) -> DeviceSpec {
    DeviceSpec::in_dom0(Device::Usbdev(Usbdev { ctrl: 0, port: 1, hostbus: 1, hostaddr: 4, stored }))
}

fn pci(bus: u32, func: u32) -> DeviceSpec {
    DeviceSpec::in_dom0(Device::Pci(Pci {
        domain: 0,
        bus,
        dev: 0,
        func,
        permissive: false,
        msitranslate: true,
        power_mgmt: false,
        rdm_policy: "strict",
        vdevfn: 0,
    }))
}

fn vsnd_params() -> VsndParams {
    VsndParams {
        sample_rates: vec![48000],
        sample_formats: vec!["s16_le"],
        channels_min: 1,
        channels_max: 2,
        buffer_size: 0,
    }
}

/// One device of each kind, as hot-added to (or created with) [`base_pv`].
pub fn devices() -> Vec<DeviceSpec> {
    vec![
        disk("xvdb", phy("/dev/vg0/guest1-data"), false),
        disk(
            "xvdc",
            DiskMedium::Qdisk { path: "/srv/xen/guest1-scratch.qcow2".into(), format: ImageFormat::Qcow2 },
            false,
        ),
        nic(1, NicType::Vif),
        DeviceSpec::in_dom0(Device::Vtpm(Vtpm { devid: 0, uuid: "7d8e2f10-3c4b-4a5d-9e6f-a1b2c3d4e5f6".into() })),
        usbctrl(UsbctrlType::Pv, false),
        pci(3, 0),
        DeviceSpec::in_dom0(Device::Vdispl(Vdispl {
            devid: 0,
            be_alloc: false,
            connectors: vec![("conn0".into(), 1920, 1080)],
        })),
        DeviceSpec::in_dom0(Device::Vsnd(Vsnd {
            devid: 0,
            short_name: Some("card0".into()),
            long_name: Some("virtual sound card".into()),
            params: vsnd_params(),
            pcms: vec![VsndPcm {
                name: "pcm0".into(),
                params: VsndParams::default(),
                streams: vec![VsndStream { unique_id: "s0".into(), stream_type: "p", params: VsndParams::default() }],
            }],
        })),
    ]
}

fn json_of(g: &GuestSpec) -> DomainConfig {
    render(std::slice::from_ref(g)).1.into_iter().next().flatten().expect("a rendered guest has JSON")
}

/// Applies completed intents to a guest and its JSON, the way the operations would leave them
/// had they all finished: the device added (and appended to the JSON by
/// `device_add_domain_config`), removed (from both: what the configuration should be), or its
/// medium replaced.
fn intended(g: &GuestSpec, json: &DomainConfig, intents: &[&Intent]) -> Replicas {
    let (mut g, mut json) = (g.clone(), json.clone());
    let mut params_override = Vec::new();
    for intent in intents {
        match intent {
            Intent::Add(x) => {
                g = with_device(&g, x);
                if let (Some(array), Some(entry)) = (x.kind().array(), device_json(x)) {
                    JsonEdit::AddOrReplace { array, entry }.apply_to(&mut json);
                }
            }
            Intent::Remove(x) => {
                g = without_device(&g, x);
                if let (Some(array), Some(entry)) = (x.kind().array(), device_json(x)) {
                    let items: Vec<_> = json.devices(array).iter().filter(|e| **e != entry).cloned().collect();
                    json.set_devices(array, items);
                }
            }
            Intent::ReplaceDisk { old, new, params } => {
                if let Some(d) = g.devices.iter_mut().find(|d| *d == old) {
                    *d = new.clone();
                }
                if let (Some(array), Some(entry)) = (new.kind().array(), device_json(new)) {
                    JsonEdit::AddOrReplace { array, entry }.apply_to(&mut json);
                }
                if let (Some(p), Device::Disk(d)) = (params, &new.detail) {
                    params_override.push((crate::testkit::vdev_to_devid(&d.vdev).unwrap_or(0), p.clone()));
                }
            }
            Intent::Create => {}
        }
    }
    let mut tree = render(std::slice::from_ref(&g)).0;
    for (devid, value) in params_override {
        for p in [
            format!("/local/domain/0/backend/qdisk/{}/{devid}/params", g.domid),
            format!("/libxl/{}/device/vbd/{devid}/params", g.domid),
        ] {
            let path = Path::new(&p).expect("valid");
            if let Some(node) = tree.get(&path).cloned() {
                tree.insert(path, crate::xenstore::Node::new(value.as_bytes().to_vec()).with_perms(node.perms));
            }
        }
    }
    Replicas { json: JsonReplica::Present(json), tree }
}

/// A scenario from a guest and its operations (at most a few: every subset is an intended
/// state).
pub fn scenario(name: impl Into<String>, group: Group, g: &GuestSpec, ops: Vec<Op>, with_retrieve: bool) -> Scenario {
    let creates_domain = ops.iter().any(|o| o.intents.contains(&Intent::Create));
    let (tree, configs, mut host) = render(std::slice::from_ref(g));
    let json0 = configs.into_iter().next().flatten().expect("a rendered guest has JSON");
    let mut intended_states = Vec::new();
    let initial = if creates_domain {
        let (dom0, _, _) = render(&[]);
        // What the configuration is once created: every device that exists, including a usb
        // controller libxl made for a usbdev and never recorded (spec §4.1).
        let mut recorded = g.clone();
        for d in &mut recorded.devices {
            if let Device::Usbctrl(u) = &mut d.detail {
                u.automatic = false;
            }
        }
        // libxl creates the domain paused; xl unpauses it only once creation has returned,
        // after the JSON write the model ends with.
        if let Some(d) = host.domains.get_mut(&g.domid) {
            d.state = RunState::Paused;
        }
        // Before, the domain does not exist: neither replica configures it.
        let before = Replicas { json: JsonReplica::Missing, tree: dom0 };
        intended_states.push(("before".to_string(), before.clone()));
        intended_states.push((
            format!("after {}", ops[0].operation.name),
            Replicas { json: JsonReplica::Present(json_of(&recorded)), tree },
        ));
        before
    } else {
        let initial = Replicas { json: JsonReplica::Present(json0.clone()), tree };
        intended_states.push(("before".to_string(), initial.clone()));
        // Every order in which the operations' intents can complete (an operation's own
        // intents in order: usbdev-attach commits its new controller first). The order
        // matters: `device_add_domain_config` appends, so JSON order is completion order.
        let mut seqs: Vec<Vec<(usize, usize)>> = vec![Vec::new()];
        let mut frontier = seqs.clone();
        while let Some(seq) = frontier.pop() {
            for (i, op) in ops.iter().enumerate() {
                let done = seq.iter().filter(|(o, _)| *o == i).count();
                if done < op.intents.len() {
                    let mut next = seq.clone();
                    next.push((i, done));
                    seqs.push(next.clone());
                    frontier.push(next);
                }
            }
        }
        for seq in seqs.into_iter().filter(|s| !s.is_empty()) {
            let intents: Vec<&Intent> = seq.iter().map(|(o, k)| &ops[*o].intents[*k]).collect();
            let mut names: Vec<String> = Vec::new();
            for (o, _) in &seq {
                let op = &ops[*o];
                let done = seq.iter().filter(|(p, _)| p == o).count();
                let name = if done < op.intents.len() {
                    format!("{} (step {done} of {})", op.operation.name, op.intents.len())
                } else {
                    op.operation.name.clone()
                };
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            let state = intended(g, &json0, &intents);
            if !intended_states.iter().any(|(_, r)| *r == state) {
                intended_states.push((format!("after {}", names.join(" + ")), state));
            }
        }
        initial
    };
    let mut world = World::new(initial);
    for op in ops {
        world.start(op.operation);
    }
    if with_retrieve {
        world.start(retrieve());
    }
    Scenario {
        name: name.into(),
        group,
        domid: g.domid,
        host,
        initial: world,
        intended: intended_states,
        creates_domain,
    }
}

fn add_op(g: &GuestSpec, x: &DeviceSpec) -> Op {
    Op { operation: hot_add(g, x), intents: vec![Intent::Add(x.clone())] }
}

fn remove_op(g: &GuestSpec, x: &DeviceSpec) -> Op {
    Op { operation: remove(g, x), intents: vec![Intent::Remove(x.clone())] }
}

fn hot_added(x: &DeviceSpec) -> DeviceSpec {
    match &x.detail {
        Device::Usbdev(u) => {
            DeviceSpec::in_dom0(Device::Usbdev(Usbdev { stored: UsbdevStored::HotAdded, ..u.clone() }))
        }
        _ => x.clone(),
    }
}

/// The single-operation scenarios: for every kind, create, hot-add and remove; cdrom insert
/// and eject; usb devices with an existing or a new controller.
pub fn single() -> Vec<Scenario> {
    let base = base_pv();
    let hvm = base_hvm();
    let mut out = Vec::new();
    let mut kinds: Vec<(GuestSpec, DeviceSpec)> = devices().into_iter().map(|x| (base.clone(), x)).collect();
    kinds.push((hvm.clone(), usbctrl(UsbctrlType::Devicemodel, false)));
    kinds.push((hvm.clone(), usbctrl(UsbctrlType::Qusb, false)));
    let with_ctrl = with_device(&base, &usbctrl(UsbctrlType::Pv, false));
    kinds.push((with_ctrl.clone(), usbdev(UsbdevStored::HotAdded)));
    for (g, x) in &kinds {
        let name = describe(x);
        // Creation with the device (usbdevs created by xl are stored with their placement).
        let created = match &x.detail {
            Device::Usbdev(u) => {
                DeviceSpec::in_dom0(Device::Usbdev(Usbdev { stored: UsbdevStored::Explicit, ..u.clone() }))
            }
            _ => x.clone(),
        };
        let full = with_device(g, &created);
        out.push(scenario(
            format!("{name} create"),
            Group::Single,
            &full,
            vec![Op { operation: create(&full), intents: vec![Intent::Create] }],
            false,
        ));
        let x = hot_added(x);
        out.push(scenario(format!("{name} hot-add"), Group::Single, g, vec![add_op(g, &x)], false));
        let with_x = with_device(g, &x);
        out.push(scenario(format!("{name} remove"), Group::Single, &with_x, vec![remove_op(&with_x, &x)], false));
    }
    // A usbdev with no controller: xl create makes one that the JSON never lists (§4.1);
    // usbdev-attach makes one that it does (§4.7).
    let auto = with_device(&with_device(&base, &usbctrl(UsbctrlType::Pv, true)), &usbdev(UsbdevStored::Implicit));
    out.push(scenario(
        "usbdev 0.1 create with an automatic controller",
        Group::Single,
        &auto,
        vec![Op { operation: create(&auto), intents: vec![Intent::Create] }],
        false,
    ));
    let (ctrl, dev) = (usbctrl(UsbctrlType::Pv, false), usbdev(UsbdevStored::HotAdded));
    out.push(scenario(
        "usbdev 0.1 hot-add with a new controller",
        Group::Single,
        &base,
        vec![Op {
            operation: usbdev_add_with_new_controller(&base, &ctrl, &dev),
            intents: vec![Intent::Add(ctrl.clone()), Intent::Add(dev.clone())],
        }],
        false,
    ));
    out.extend(cdrom_scenarios(false));
    out
}

fn cdrom_scenarios(with_retrieve: bool) -> Vec<Scenario> {
    let hvm = base_hvm();
    let empty = disk("hdc", DiskMedium::Empty, true);
    let medium =
        disk("hdc", DiskMedium::Qdisk { path: "/srv/iso/installer.iso".into(), format: ImageFormat::Raw }, true);
    let group = if with_retrieve { Group::LockGap } else { Group::Single };
    let suffix = if with_retrieve { " ‖ retrieve" } else { "" };
    let g_empty = with_device(&hvm, &empty);
    let g_medium = with_device(&hvm, &medium);
    let insert = Op {
        operation: cdrom_change(&g_empty, &empty, &medium),
        intents: vec![Intent::ReplaceDisk { old: empty.clone(), new: medium.clone(), params: None }],
    };
    let eject = Op {
        operation: cdrom_change(&g_medium, &medium, &empty),
        intents: vec![Intent::ReplaceDisk { old: medium.clone(), new: empty.clone(), params: Some(String::new()) }],
    };
    let mut out =
        vec![scenario(format!("{}{suffix}", insert.operation.name), group, &g_empty, vec![insert], with_retrieve)];
    if !with_retrieve {
        out.push(scenario(eject.operation.name.clone(), group, &g_medium, vec![eject], false));
    }
    out
}

/// Two operations on different devices of one domain at once.
pub fn concurrent() -> Vec<Scenario> {
    let base = base_pv();
    let d = devices();
    let (disk_b, nic1, vtpm, pci_a) = (d[0].clone(), d[2].clone(), d[3].clone(), d[5].clone());
    let pci_b = pci(4, 1);
    let mut out = Vec::new();
    let pair = |g: &GuestSpec, a: Op, b: Op| {
        let name = format!("{} ‖ {}", a.operation.name, b.operation.name);
        scenario(name, Group::Concurrent, g, vec![a, b], false)
    };
    out.push(pair(&base, add_op(&base, &nic1), add_op(&base, &disk_b)));
    let with_vtpm = with_device(&base, &vtpm);
    out.push(pair(&with_vtpm, add_op(&with_vtpm, &nic1), remove_op(&with_vtpm, &vtpm)));
    let with_both = with_device(&base, &disk_b);
    let nic0 = base.devices[2].clone();
    out.push(pair(&with_both, remove_op(&with_both, &disk_b), remove_op(&with_both, &nic0)));
    // Both attaches read num_devs before either commits (§4.6, spec §6 item 13).
    out.push(pair(&base, add_op(&base, &pci_a), add_op(&base, &pci_b)));
    out
}

/// An operation racing a retrieve: the JSON is read, the operation runs, xenstore is read.
pub fn lock_gap() -> Vec<Scenario> {
    let base = base_pv();
    let d = devices();
    let (disk_b, nic1, pci_a) = (d[0].clone(), d[2].clone(), d[5].clone());
    let with_ctrl = with_device(&base, &usbctrl(UsbctrlType::Pv, false));
    let dev = usbdev(UsbdevStored::HotAdded);
    let ops: Vec<(GuestSpec, Op)> = vec![
        (base.clone(), add_op(&base, &nic1)),
        (base.clone(), add_op(&base, &disk_b)),
        (base.clone(), add_op(&base, &pci_a)),
        (with_ctrl.clone(), add_op(&with_ctrl, &dev)),
        (base.clone(), remove_op(&base, &base.devices[2])),
        (base_hvm(), add_op(&base_hvm(), &usbctrl(UsbctrlType::Devicemodel, false))),
    ];
    let mut out: Vec<Scenario> = ops
        .into_iter()
        .map(|(g, op)| {
            let name = format!("{} ‖ retrieve", op.operation.name);
            scenario(name, Group::LockGap, &g, vec![op], true)
        })
        .collect();
    out.extend(cdrom_scenarios(true));
    out
}

/// Every scenario: single, concurrent, lock gap.
pub fn all() -> Vec<Scenario> {
    let mut v = single();
    v.extend(concurrent());
    v.extend(lock_gap());
    v
}

/// The JSON of the base guest as rendered (for tests that build their own states).
pub fn base_json(g: &GuestSpec) -> DomainConfig {
    json_of(g)
}
