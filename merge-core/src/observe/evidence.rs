//! The lifecycle evidence of every device of a domain, looked up where it lives.
//!
//! For each device directory number the no-loss policy wants: libxl's private record (and
//! whether it parses), the backend wherever it lives (dom0, a driver domain, any backend kind
//! of the frontend kind), the backend's `state`, `online`, `hotplug-status` and `error/` node,
//! and the guest's frontend. It also knows whom to trust: a node the guest can write (its own
//! subtree, or anything its permissions let it write) never decides that a device exists.

use super::libxl_list::{parse_record_trusted, parse_record_trusted_or_where, pci_devices_at, XsDevice};
use super::xs::XsView;
use crate::rules::{vdev_names_devid, DeviceKind, IdentityKey, IdentityRule, KindRule};
use crate::xenstore::{Node, Path, Tree};
use std::collections::BTreeMap;

/// Whether domain `guest` could have written the node at `path`.
///
/// With permissions known (a `-fp` dump or the live daemon), the permission list decides.
/// Without them, everything under the guest's own home counts as writable except the nodes
/// the toolstack writes read-only there (`name`, `domid`, `vm`, `memory/`, `cpu/`, `image/`,
/// `store/`, `console/` of the primary console, `target`).
pub fn guest_writable(tree: &Tree, path: &str, guest: u32) -> bool {
    let Ok(p) = Path::new(path) else { return false };
    if let Some(perms) = tree.get(&p).and_then(|n| n.perms.as_ref()) {
        return guest != 0 && perms.access_for(guest).can_write();
    }
    let home = format!("/local/domain/{guest}/");
    let Some(rest) = path.strip_prefix(&home) else { return false };
    let first = rest.split('/').next().unwrap_or("");
    !matches!(first, "name" | "domid" | "vm" | "memory" | "cpu" | "image" | "store" | "target" | "backend")
}

/// A backend directory and its lifecycle nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub path: String,
    pub domid: u32,
    pub kind: String,
    /// XenbusState, when the node holds a number.
    pub state: Option<u32>,
    pub online: Option<String>,
    pub hotplug_status: Option<String>,
    pub hotplug_error: Option<String>,
    /// `/local/domain/<B>/error/backend/<kind>/<D>/<devid>/error`.
    pub error: Option<(String, String)>,
    /// Not writable by the guest.
    pub trusted: bool,
    /// The backend domain itself still exists (`/local/domain/<B>` is present).
    pub domain_alive: bool,
}

impl Backend {
    /// Closed (6).
    pub fn closed(&self) -> bool {
        self.state == Some(6)
    }
}

/// The guest's frontend directory (guest-writable: status only, never presence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    pub path: String,
    pub state: Option<String>,
}

/// libxl's private record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub path: String,
    /// The record read by the kind's `from_xenstore`, or why it does not parse.
    pub parsed: Result<XsDevice, String>,
    pub trusted: bool,
}

/// Everything xenstore says about one device directory number of one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEvidence {
    pub kind: DeviceKind,
    pub devid: i64,
    pub record: Option<Record>,
    pub backend: Option<Backend>,
    pub frontend: Option<Frontend>,
}

impl DeviceEvidence {
    /// The backend, only if the guest could not have forged it.
    pub fn trusted_backend(&self) -> Option<&Backend> {
        self.backend.as_ref().filter(|b| b.trusted)
    }

    /// The record, only if trusted and parseable.
    pub fn good_record(&self) -> Option<&XsDevice> {
        self.record.as_ref().filter(|r| r.trusted).and_then(|r| r.parsed.as_ref().ok())
    }

    /// Every path this evidence rests on (for reaping).
    pub fn paths(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(r) = &self.record {
            v.push(r.path.clone());
        }
        if let Some(b) = &self.backend {
            v.push(b.path.clone());
        }
        if let Some(f) = &self.frontend {
            v.push(f.path.clone());
        }
        v
    }
}

fn read_backend(xs: &XsView<'_>, path: &str, domid: u32, kind: &str, guest: u32, devid: i64) -> Backend {
    let v = |n: &str| xs.value(&format!("{path}/{n}"));
    let state = v("state").and_then(|s| s.trim().parse::<u32>().ok());
    let error_path = format!("/local/domain/{domid}/error/backend/{kind}/{guest}/{devid}/error");
    let error = xs.value(&error_path).map(|e| (error_path, e));
    Backend {
        path: path.to_string(),
        domid,
        kind: kind.to_string(),
        state,
        online: v("online"),
        hotplug_status: v("hotplug-status"),
        hotplug_error: v("hotplug-error"),
        error,
        trusted: domid != guest
            && !guest_writable(xs.tree, path, guest)
            && !guest_writable(xs.tree, &format!("{path}/state"), guest),
        domain_alive: xs.exists(&format!("/local/domain/{domid}")),
    }
}

/// Domains that have a `/local/domain/<B>/backend` directory (computed once per snapshot).
fn backend_domains<'t>(xs: &XsView<'t>) -> &'t [u32] {
    &xs.tree.host_shape().backend_domains
}

/// Finds the backend of `guest`'s device `devid` of `rule`'s kind: first where libxl's record
/// points, then in every domain's `backend/<kind>/<guest>/<devid>` for the kind's backend kinds.
fn find_backend(xs: &XsView<'_>, rule: &KindRule, guest: u32, devid: i64, pointer: Option<&str>) -> Option<Backend> {
    if let Some(p) = pointer {
        if let Some(b) = super::libxl_list::parse_backend_domid(p) {
            let kind = p.split('/').nth(5).unwrap_or("").to_string();
            if xs.exists(p) {
                return Some(read_backend(xs, p, b, &kind, guest, devid));
            }
        }
    }
    for &b in backend_domains(xs) {
        for kind in rule.backend_kinds {
            let p = format!("/local/domain/{b}/backend/{kind}/{guest}/{devid}");
            if xs.exists(&p) {
                return Some(read_backend(xs, &p, b, kind, guest, devid));
            }
        }
    }
    None
}

/// All device evidence of a `/libxl`-recorded kind for domain `guest`, by directory number.
pub fn device_evidence(xs: &XsView<'_>, guest: u32, rule: &KindRule) -> Vec<DeviceEvidence> {
    let tree = xs.tree;
    let record_dir = format!("/libxl/{guest}/device/{}", rule.xs_kind);
    let front_dir = format!("/local/domain/{guest}/device/{}", rule.xs_kind);
    let mut devids: BTreeMap<i64, ()> = BTreeMap::new();
    let mut numeric = |names: Vec<String>| {
        for n in names {
            if let Ok(d) = n.parse::<i64>() {
                devids.insert(d, ());
            }
        }
    };
    numeric(xs.directory(&record_dir));
    numeric(xs.directory(&front_dir));
    for &b in backend_domains(xs) {
        for kind in rule.backend_kinds {
            numeric(xs.directory(&format!("/local/domain/{b}/backend/{kind}/{guest}")));
        }
    }
    let mut out = Vec::new();
    for devid in devids.into_keys() {
        let rpath = format!("{record_dir}/{devid}");
        let record = xs.exists(&rpath).then(|| Record {
            path: rpath.clone(),
            // A record that reads as another devid than its directory's (a nic record without
            // its `handle` copy reads as devid 0: `libxl__device_generic_add` failing part way,
            // spec §6 item 11) is not this device's record: it must be rewritten, not trusted.
            parsed: parse_record_trusted(xs, rule, &rpath, devid as i32).and_then(|d| match (rule.identity, &d.key) {
                (IdentityRule::Devid, IdentityKey::Devid(k)) if *k != devid => {
                    Err(format!("the record reads as devid {k} but lives under {devid}: a partial record"))
                }
                // libxl numbers a disk's directory from its vdev. A record whose `dev` names
                // another directory, or none, is not this disk's: trusted, it would give two
                // live disks one vdev, and the next pass would take them for one device.
                (IdentityRule::Vdev, IdentityKey::Vdev(Some(v))) if !vdev_names_devid(v, devid) => {
                    Err(format!("the record's dev {v:?} does not name its directory {devid}"))
                }
                _ => Ok(d),
            }),
            trusted: !guest_writable(tree, &rpath, guest),
        });
        let pointer = xs.value(&format!("{rpath}/backend"));
        let backend = find_backend(xs, rule, guest, devid, pointer.as_deref());
        let fpath = format!("{front_dir}/{devid}");
        let frontend =
            xs.exists(&fpath).then(|| Frontend { path: fpath.clone(), state: xs.value(&format!("{fpath}/state")) });
        out.push(DeviceEvidence { kind: rule.kind, devid, record, backend, frontend });
    }
    out
}

/// The vdev of the disk at directory `devid`, given the one a node names: that one if it names
/// this directory, else the directory's own number, which libxl reads back as the same devid.
/// So no two live disks go by one vdev, which the next pass would take for one device.
pub fn disk_vdev_at(devid: i64, named: String) -> String {
    if vdev_names_devid(&named, devid) {
        named
    } else {
        devid.to_string()
    }
}

/// A device rebuilt from its backend ([`record_from_backend`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rebuilt {
    pub device: XsDevice,
    /// The nodes left out because libxl's reader rejects their values (a vtpm's malformed
    /// `uuid`): each backend node, and why. libxl cannot list the kind while they stay.
    pub rejected: Vec<(String, String)>,
    /// The backend's `dev` when it does not name the disk's directory: the disk then goes by
    /// the directory's number ([`disk_vdev_at`]).
    pub vdev_replaced: Option<String>,
}

/// Rebuilds a record from a backend directory when libxl's record is missing or malformed:
/// the backend holds the same keys libxl copies into its record. A backend value libxl's
/// reader rejects is left out and the rest read again, so that one bad value does not lose a
/// live device; the value is named in [`Rebuilt::rejected`].
pub fn record_from_backend(xs: &XsView<'_>, rule: &KindRule, guest: u32, ev: &DeviceEvidence) -> Option<Rebuilt> {
    let be = ev.trusted_backend()?;
    let fake = format!("/libxl/{guest}/device/{}/{}", rule.xs_kind, ev.devid);
    let mut tree = xs.tree.clone();
    let fake_path = Path::new(&fake).ok()?;
    tree.remove_subtree(&fake_path);
    let be_path = Path::new(&be.path).ok()?;
    for (p, n) in xs.tree.subtree(&be_path) {
        let rel = &p.as_str()[be.path.len()..];
        if let Ok(np) = Path::new(&format!("{fake}{rel}")) {
            tree.insert(np, n.clone());
        }
    }
    tree.insert(fake_path.join("backend").ok()?, Node::new(be.path.as_bytes().to_vec()));
    if let Some(f) = &ev.frontend {
        tree.insert(fake_path.join("frontend").ok()?, Node::new(f.path.as_bytes().to_vec()));
    }
    let mut rejected = Vec::new();
    loop {
        match parse_record_trusted_or_where(&XsView::new(&tree), rule, &fake, ev.devid as i32) {
            Ok(mut device) => {
                device.record_path = be.path.clone();
                let mut vdev_replaced = None;
                if let IdentityKey::Vdev(Some(named)) = &mut device.key {
                    let vdev = disk_vdev_at(ev.devid, named.clone());
                    if vdev != *named {
                        device.fields.insert("vdev".into(), vdev.clone().into());
                        vdev_replaced = Some(std::mem::replace(named, vdev));
                    }
                }
                return Some(Rebuilt { device, rejected, vdev_replaced });
            }
            Err((at, reason)) => {
                // Only a value the backend holds (read there, or from its copy in the record
                // built here) is left out; each pass removes a node, so this ends.
                let node = Path::new(&at).ok().filter(|p| tree.get(p).is_some())?;
                let below = |dir: &Path| node != *dir && node.starts_with(dir);
                let backend_node = if below(&fake_path) {
                    format!("{}{}", be.path, &at[fake.len()..])
                } else if below(&be_path) {
                    at
                } else {
                    return None;
                };
                tree.remove(&node);
                rejected.push((backend_node, reason));
            }
        }
    }
}

/// One PCI function found in a pci backend.
#[derive(Debug, Clone, PartialEq)]
pub struct PciEvidence {
    pub device: XsDevice,
    pub backend: Backend,
    /// The index N of its `dev-N` keys.
    pub index: i32,
    /// `state-N`.
    pub state: Option<u32>,
    /// Found in a stub domain's backend rather than the guest's own.
    pub via_stubdom: Option<u32>,
}

/// The stub domain serving `guest`, if any (`/local/domain/<S>/target = guest`, or the guest's
/// `image/device-model-domid`).
pub fn stubdom_of(xs: &XsView<'_>, guest: u32) -> Option<u32> {
    if let Some(s) = xs.value(&format!("/local/domain/{guest}/image/device-model-domid")).and_then(|v| v.parse().ok()) {
        return Some(s);
    }
    xs.tree.host_shape().targets.iter().find(|(s, target)| *s != guest && *target == guest).map(|(s, _)| *s)
}

/// Every PCI function assigned to `guest`: its own pci backends, then its stub domain's.
pub fn pci_evidence(xs: &XsView<'_>, guest: u32) -> Vec<PciEvidence> {
    let mut out = Vec::new();
    let mut targets = vec![(guest, None)];
    if let Some(s) = stubdom_of(xs, guest) {
        targets.push((s, Some(s)));
    }
    for (target, via) in targets {
        for &b in backend_domains(xs) {
            let dir = format!("/local/domain/{b}/backend/pci/{target}");
            for devid in xs.directory(&dir) {
                let path = format!("{dir}/{devid}");
                let Ok(devices) = pci_devices_at(xs, &path) else { continue };
                let backend = read_backend(xs, &path, b, "pci", guest, devid.parse().unwrap_or(0));
                for d in devices {
                    let state = xs.value(&format!("{path}/state-{}", d.nr)).and_then(|s| s.trim().parse().ok());
                    out.push(PciEvidence { index: d.nr, device: d, backend: backend.clone(), state, via_stubdom: via });
                }
            }
        }
    }
    out
}

/// One occupied USB port: a usbdev as the runtime knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbPortEvidence {
    pub ctrl: i64,
    pub port: i64,
    /// The host bus id written into the port (`1-1.2`).
    pub busid: String,
    pub path: String,
    /// The controller is being unplugged (or failed): its ports go with it.
    pub controller_leaving: bool,
}

/// Occupied ports of every usb controller of `guest`: read from the controller's trusted
/// backend wherever it lives, or from libxl's record for a devicemodel controller (QEMU's
/// ports are kept there).
pub fn usb_ports(xs: &XsView<'_>, guest: u32) -> Vec<UsbPortEvidence> {
    let rule = DeviceKind::Usbctrl.rule();
    let mut out = Vec::new();
    for ev in device_evidence(xs, guest, rule) {
        let devicemodel =
            ev.good_record().is_some_and(|d| d.fields.get("type").and_then(|t| t.as_str()) == Some("devicemodel"));
        let (base, leaving) = match (devicemodel, ev.trusted_backend().filter(|b| b.domain_alive)) {
            (true, _) => (ev.record.as_ref().map(|r| r.path.clone()), false),
            (false, Some(b)) => {
                let leaving = matches!(b.state, Some(5) | Some(6))
                    || b.online.as_deref() == Some("0")
                    || b.hotplug_status.as_deref() == Some("error")
                    || b.error.is_some();
                (Some(b.path.clone()), leaving)
            }
            (false, None) => (None, false),
        };
        let Some(base) = base else { continue };
        for port in xs.directory(&format!("{base}/port")) {
            let Ok(p) = port.parse::<i64>() else { continue };
            let path = format!("{base}/port/{port}");
            if let Some(busid) = xs.value(&path).filter(|v| !v.is_empty()) {
                out.push(UsbPortEvidence { ctrl: ev.devid, port: p, busid, path, controller_leaving: leaving });
            }
        }
    }
    out
}
