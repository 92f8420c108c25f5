//! Perturbations: the half-baked and hostile states of issue 4, applied to consistent replicas.
//!
//! Each [`Perturbation`] names its target, so a failing test says exactly what was done
//! ("dom 3 vif 1: /libxl record missing `backend`"). They are applied to the rendered
//! replicas in the order generated; each one is resolved against the state left by the
//! previous ones (a target that has disappeared is skipped, not recorded).

use super::model::*;
use super::render::{self, device_json, device_paths, perms, put, DevicePaths};
use crate::config::DomainConfig;
use crate::hypervisor::HostInfo;
use crate::xenstore::{Access, Path, Tree};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Names one device of one guest: `kind` plus its identity (`vdev` for disks, the BDF for
/// PCI, `ctrl:port` for usbdevs, the xenstore devid otherwise).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceRef {
    pub domid: u32,
    pub kind: Kind,
    pub id: String,
}

impl DeviceRef {
    pub fn of(domid: u32, device: &Device) -> DeviceRef {
        let id = match device {
            Device::Disk(d) => d.vdev.clone(),
            Device::Pci(p) => p.bdf(),
            Device::Usbdev(u) => format!("{}:{}", u.ctrl, u.port),
            other => xs_devid(other).map(|d| d.to_string()).unwrap_or_default(),
        };
        DeviceRef { domid, kind: device.kind(), id }
    }
}

impl fmt::Display for DeviceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dom {} {} {}", self.domid, self.kind.xs_kind(), self.id)
    }
}

/// Which node a [`RecordFault`] damages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultPlace {
    /// `/libxl/<D>/device/<kind>/<devid>/<key>`.
    Record,
    /// The backend directory (vtpm's `uuid` is read from there).
    Backend,
    /// The guest's PCI backend `/local/domain/0/backend/pci/<D>/0/<key>`.
    PciBackend,
}

/// One malformed node: removed (`value: None`) or holding a bad value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordFault {
    pub place: FaultPlace,
    pub key: &'static str,
    pub value: Option<&'static str>,
}

/// The faults libxl 4.17's `from_xenstore` functions react to (spec §2.4–§2.10). Faults that
/// make libxl dereference NULL (usbctrl without `type`, PCI without `dev-N`) are left out: they
/// crash `xl` rather than produce an answer.
pub fn record_faults(kind: Kind) -> &'static [RecordFault] {
    const fn gone(place: FaultPlace, key: &'static str) -> RecordFault {
        RecordFault { place, key, value: None }
    }
    const fn bad(place: FaultPlace, key: &'static str, value: &'static str) -> RecordFault {
        RecordFault { place, key, value: Some(value) }
    }
    use FaultPlace::*;
    const DISK: &[RecordFault] = &[
        gone(Record, "backend"),
        gone(Record, "type"),
        gone(Record, "dev"),
        gone(Record, "removable"),
        gone(Record, "mode"),
        gone(Record, "device-type"),
        bad(Record, "specification", "floppy"),
    ];
    const NIC: &[RecordFault] = &[
        gone(Record, "backend"),
        bad(Record, "mtu", "jumbo"),
        bad(Record, "mac", "00:16:3e:zz:00:01"),
        bad(Record, "type", "tap2"),
    ];
    const VTPM: &[RecordFault] = &[gone(Record, "backend"), bad(Backend, "uuid", "not-a-uuid")];
    const PCI: &[RecordFault] = &[gone(PciBackend, "num_devs")];
    const VSND: &[RecordFault] = &[gone(Record, "backend"), gone(Record, "frontend")];
    const BACKEND_ONLY: &[RecordFault] = &[gone(Record, "backend")];
    match kind {
        Kind::Disk => DISK,
        Kind::Nic => NIC,
        Kind::Vtpm => VTPM,
        Kind::Pci => PCI,
        Kind::Vsnd => VSND,
        Kind::Usbctrl
        | Kind::Vdispl
        | Kind::Vfb
        | Kind::Vkb
        | Kind::P9
        | Kind::Pvcallsif
        | Kind::Channel
        | Kind::Console => BACKEND_ONLY,
        Kind::Usbdev => &[],
    }
}

/// One perturbation, as applied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Perturbation {
    /// The device is in the JSON but gone from xenstore: a remove that completed (libxl never
    /// prunes the JSON), or a hot-add whose transaction failed after the JSON write.
    JsonOnly(DeviceRef),
    /// The device is in xenstore but not in the JSON: added outside libxl, or a lost JSON write.
    XenstoreOnly(DeviceRef),
    /// An unplug in progress: backend `state = 5`, `online = 0`.
    BackendClosing(DeviceRef),
    /// An unplug stopped after the backend closed: backend `state = 6`, `online = 0`, the
    /// frontend removed, the `/libxl` record still there.
    BackendClosed(DeviceRef),
    /// The `/libxl/<D>/device/<kind>/<devid>` record is gone while backend and frontend live.
    RecordMissing(DeviceRef),
    /// A node libxl's `from_xenstore` reads is missing or malformed.
    RecordMalformed { device: DeviceRef, fault: RecordFault },
    /// The guest wrote into its own frontend directory.
    GuestFrontendWrite { device: DeviceRef, key: String, value: String },
    /// The device's backend lives in driver domain `backend_domid` (generated that way, not
    /// edited afterwards; listed so tests can name it).
    DriverDomainBackend { device: DeviceRef, backend_domid: u32 },
    /// The JSON holds the device's entry twice (same identity key).
    DuplicateJsonEntry(DeviceRef),
    /// A removable disk whose medium was ejected: `params = ""` in the backend and the record,
    /// the JSON still naming the old medium.
    CdromEjected(DeviceRef),
    /// An implicit usbdev stored with its real controller and port instead (an xl config with
    /// `controller=`/`port=`, or `xl usbdev-attach`), which libxl 4.17 never matches (§2.8).
    UsbdevWithPort { device: DeviceRef, stored: UsbdevStored },
    /// `/libxl/<D>/device/virtio_disk` exists next to `…/vbd`: libxl's disk `get_path` fails.
    VirtioDiskDirectory { domid: u32 },
    /// `/local/domain/<D>/name` is missing (libxl then returns the raw JSON, rc 0).
    NameMissing { domid: u32 },
    /// The JSON has no `b_info.video_memkb` (libxl's fudge wraps: target − 1).
    VideoMemkbAbsent { domid: u32 },
    /// `xl mem-set`: `memory/target` (and `/vm/<U>/memory`) rewritten.
    MemoryTarget { domid: u32, target_kb: u64 },
    /// `xl mem-max`: `memory/static-max` rewritten.
    StaticMax { domid: u32, static_max_kb: u64 },
    /// `xl vcpu-set`: the online vCPUs changed (xenstore, or QEMU for qemu-xen HVM).
    VcpuAvailability { domid: u32, online: Vec<u32> },
    /// `xl rename`: `/local/domain/<D>/name` and `/vm/<U>/name` rewritten.
    Renamed { domid: u32, name: String },
    /// The hypervisor's domain handle differs from the JSON's `c_info.uuid`.
    HandleDiffers { domid: u32, hypervisor_uuid: String },
    /// No userdata file (creation in progress, or a domain made by another toolstack).
    NoUserdata { domid: u32 },
    /// QEMU does not answer QMP (qemu-xen HVM guests only).
    QemuUnresponsive { domid: u32 },
}

impl Perturbation {
    /// The guest the perturbation touches.
    pub fn domid(&self) -> u32 {
        use Perturbation::*;
        match self {
            JsonOnly(d)
            | XenstoreOnly(d)
            | BackendClosing(d)
            | BackendClosed(d)
            | RecordMissing(d)
            | DuplicateJsonEntry(d)
            | CdromEjected(d) => d.domid,
            RecordMalformed { device, .. }
            | GuestFrontendWrite { device, .. }
            | DriverDomainBackend { device, .. }
            | UsbdevWithPort { device, .. } => device.domid,
            VirtioDiskDirectory { domid }
            | NameMissing { domid }
            | VideoMemkbAbsent { domid }
            | MemoryTarget { domid, .. }
            | StaticMax { domid, .. }
            | VcpuAvailability { domid, .. }
            | Renamed { domid, .. }
            | HandleDiffers { domid, .. }
            | NoUserdata { domid }
            | QemuUnresponsive { domid } => *domid,
        }
    }

    /// libxl 4.17's retrieve fails for the domain (so `xl list -l` omits it): no JSON, or no
    /// QMP answer for a qemu-xen HVM guest (spec §1 steps 3 and 5).
    pub fn fails_libxl_retrieve(&self) -> bool {
        matches!(self, Perturbation::NoUserdata { .. } | Perturbation::QemuUnresponsive { .. })
    }

    /// A legitimate state that libxl 4.17 handles without loss or warning: a driver-domain
    /// backend (outside PCI), and the runtime overrides libxl is designed to read back.
    pub fn is_benign_for_libxl(&self) -> bool {
        use Perturbation::*;
        matches!(
            self,
            DriverDomainBackend { .. }
                | MemoryTarget { .. }
                | StaticMax { .. }
                | VcpuAvailability { .. }
                | Renamed { .. }
                | HandleDiffers { .. }
        )
    }
}

impl fmt::Display for Perturbation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Perturbation::*;
        match self {
            JsonOnly(d) => write!(f, "{d}: in the JSON only"),
            XenstoreOnly(d) => write!(f, "{d}: in xenstore only"),
            BackendClosing(d) => write!(f, "{d}: backend closing (state 5, online 0)"),
            BackendClosed(d) => write!(f, "{d}: backend closed (state 6), frontend gone"),
            RecordMissing(d) => write!(f, "{d}: /libxl record missing"),
            RecordMalformed { device, fault } => match fault.value {
                None => write!(f, "{device}: {:?} node `{}` missing", fault.place, fault.key),
                Some(v) => write!(f, "{device}: {:?} node `{}` = {v:?}", fault.place, fault.key),
            },
            GuestFrontendWrite { device, key, value } => {
                write!(f, "{device}: guest wrote frontend `{key}` = {value:?}")
            }
            DriverDomainBackend { device, backend_domid } => {
                write!(f, "{device}: backend in driver domain {backend_domid}")
            }
            DuplicateJsonEntry(d) => write!(f, "{d}: JSON entry duplicated"),
            CdromEjected(d) => write!(f, "{d}: medium ejected (params empty)"),
            UsbdevWithPort { device, stored } => write!(f, "{device}: JSON entry stored as {stored:?}"),
            VirtioDiskDirectory { domid } => write!(f, "dom {domid}: /libxl/{domid}/device/virtio_disk exists"),
            NameMissing { domid } => write!(f, "dom {domid}: name node missing"),
            VideoMemkbAbsent { domid } => write!(f, "dom {domid}: JSON without video_memkb"),
            MemoryTarget { domid, target_kb } => write!(f, "dom {domid}: memory/target = {target_kb}"),
            StaticMax { domid, static_max_kb } => write!(f, "dom {domid}: memory/static-max = {static_max_kb}"),
            VcpuAvailability { domid, online } => write!(f, "dom {domid}: online vCPUs {online:?}"),
            Renamed { domid, name } => write!(f, "dom {domid}: renamed to {name:?}"),
            HandleDiffers { domid, hypervisor_uuid } => write!(f, "dom {domid}: hypervisor handle {hypervisor_uuid}"),
            NoUserdata { domid } => write!(f, "dom {domid}: no userdata file"),
            QemuUnresponsive { domid } => write!(f, "dom {domid}: QEMU does not answer QMP"),
        }
    }
}

/// The kinds of perturbation a generator seed can ask for (one per [`Perturbation`] variant
/// that is applied after rendering).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PerturbationKind {
    JsonOnly,
    XenstoreOnly,
    BackendClosing,
    BackendClosed,
    RecordMissing,
    RecordMalformed,
    GuestFrontendWrite,
    DuplicateJsonEntry,
    CdromEjected,
    UsbdevWithPort,
    VirtioDiskDirectory,
    NameMissing,
    VideoMemkbAbsent,
    MemoryTarget,
    StaticMax,
    VcpuAvailability,
    Renamed,
    HandleDiffers,
    NoUserdata,
    QemuUnresponsive,
}

impl PerturbationKind {
    pub const ALL: [PerturbationKind; 20] = [
        PerturbationKind::JsonOnly,
        PerturbationKind::XenstoreOnly,
        PerturbationKind::BackendClosing,
        PerturbationKind::BackendClosed,
        PerturbationKind::RecordMissing,
        PerturbationKind::RecordMalformed,
        PerturbationKind::GuestFrontendWrite,
        PerturbationKind::DuplicateJsonEntry,
        PerturbationKind::CdromEjected,
        PerturbationKind::UsbdevWithPort,
        PerturbationKind::VirtioDiskDirectory,
        PerturbationKind::NameMissing,
        PerturbationKind::VideoMemkbAbsent,
        PerturbationKind::MemoryTarget,
        PerturbationKind::StaticMax,
        PerturbationKind::VcpuAvailability,
        PerturbationKind::Renamed,
        PerturbationKind::HandleDiffers,
        PerturbationKind::NoUserdata,
        PerturbationKind::QemuUnresponsive,
    ];
}

/// A request for one perturbation: the kind plus two numbers that pick the target and a
/// variant among the candidates present when it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PerturbationSeed {
    pub kind: PerturbationKind,
    pub target: u16,
    pub variant: u16,
}

/// The replicas while perturbations are applied.
pub(crate) struct Replicas<'a> {
    pub guests: &'a [GuestSpec],
    pub tree: &'a mut Tree,
    pub host: &'a mut HostInfo,
    /// `None`: the domain has no userdata file.
    pub configs: &'a mut BTreeMap<u32, Option<DomainConfig>>,
}

fn pick<T: Clone>(candidates: &[T], selector: u16) -> Option<T> {
    if candidates.is_empty() {
        None
    } else {
        Some(candidates[selector as usize % candidates.len()].clone())
    }
}

fn path(s: &str) -> Path {
    Path::new(s).unwrap_or_else(|e| panic!("invalid generated path {s:?}: {e}"))
}

fn set_text(tree: &mut Tree, at: &str, value: &str) {
    let p = path(at);
    let node_perms = tree.get(&p).and_then(|n| n.perms.clone()).unwrap_or_else(|| perms(0, Access::None, &[]));
    put(tree, at, value, &node_perms);
}

/// Removes `at`'s subtree, then every ancestor left with no children and an empty value, as
/// `libxl__xs_path_cleanup` does; `/local/domain/<d>` and `/libxl/<d>` themselves stay.
fn remove_and_prune(tree: &mut Tree, at: &str) {
    tree.remove_subtree(&path(at));
    let mut cur = path(at).parent();
    while let Some(p) = cur {
        let depth = p.components().count();
        let is_domain_root =
            depth <= 3 && (p.as_str().starts_with("/local/domain") || p.as_str().starts_with("/libxl"));
        if p.is_root() || is_domain_root || tree.has_descendants(&p) {
            break;
        }
        if tree.get(&p).is_some_and(|n| !n.value.is_empty()) {
            break;
        }
        tree.remove(&p);
        cur = p.parent();
    }
}

impl<'a> Replicas<'a> {
    fn guest(&self, domid: u32) -> &'a GuestSpec {
        self.guests.iter().find(|g| g.domid == domid).expect("perturbation of a generated guest")
    }

    fn spec(&self, r: &DeviceRef) -> Option<&'a DeviceSpec> {
        self.guest(r.domid).devices.iter().find(|d| DeviceRef::of(r.domid, &d.detail) == *r)
    }

    fn config_mut(&mut self, domid: u32) -> Option<&mut DomainConfig> {
        self.configs.get_mut(&domid).and_then(Option::as_mut)
    }

    /// Every device, with its reference, for which `keep` holds.
    fn devices(&self, keep: impl Fn(&GuestSpec, &DeviceSpec) -> bool) -> Vec<DeviceRef> {
        let mut out = Vec::new();
        for g in self.guests {
            for d in &g.devices {
                if keep(g, d) {
                    out.push(DeviceRef::of(g.domid, &d.detail));
                }
            }
        }
        out
    }

    fn paths(&self, r: &DeviceRef) -> Option<DevicePaths> {
        let spec = self.spec(r)?;
        device_paths(self.guest(r.domid), spec)
    }

    fn exists(&self, at: &str) -> bool {
        self.tree.exists(&path(at))
    }

    /// A device whose backend directory is still in the tree.
    fn live_backend(&self, r: &DeviceRef) -> Option<(DevicePaths, String)> {
        let p = self.paths(r)?;
        let be = p.backend.clone()?;
        self.exists(&be).then_some((p, be))
    }

    /// Index of the device's entry in its JSON array, found by value.
    fn json_index(&self, r: &DeviceRef) -> Option<usize> {
        let spec = self.spec(r)?;
        let array = r.kind.array()?;
        let entry = device_json(spec)?;
        let config = self.configs.get(&r.domid)?.as_ref()?;
        config.devices(array).iter().position(|v| *v == entry)
    }

    fn guests_where(&self, keep: impl Fn(&GuestSpec) -> bool) -> Vec<u32> {
        self.guests.iter().filter(|g| keep(g)).map(|g| g.domid).collect()
    }

    /// Resolves `seed` against the current replicas and applies it. `None`: no candidate.
    pub fn apply(&mut self, seed: PerturbationSeed) -> Option<Perturbation> {
        use PerturbationKind as K;
        let (target, variant) = (seed.target, seed.variant);
        let p = match seed.kind {
            K::JsonOnly => {
                let c = self.devices(|_, d| d.kind().array().is_some() && !is_automatic(d));
                let r = pick(&c, target)?;
                self.json_index(&r)?;
                self.remove_from_xenstore(&r)?;
                Perturbation::JsonOnly(r)
            }
            K::XenstoreOnly => {
                let c = self.devices(|_, d| d.kind().array().is_some() && !is_automatic(d));
                let r = pick(&c, target)?;
                let i = self.json_index(&r)?;
                let array = r.kind.array()?;
                let config = self.config_mut(r.domid)?;
                let mut entries = config.devices(array).to_vec();
                entries.remove(i);
                config.set_devices(array, entries);
                Perturbation::XenstoreOnly(r)
            }
            K::BackendClosing | K::BackendClosed => {
                let c = self.devices(|g, d| device_paths(g, d).is_some_and(|p| p.backend.is_some()));
                let r = pick(&c, target)?;
                let (paths, be) = self.live_backend(&r)?;
                let closed = seed.kind == K::BackendClosed;
                set_text(self.tree, &format!("{be}/online"), "0");
                set_text(self.tree, &format!("{be}/state"), if closed { "6" } else { "5" });
                if closed {
                    remove_and_prune(self.tree, &paths.frontend);
                    Perturbation::BackendClosed(r)
                } else {
                    Perturbation::BackendClosing(r)
                }
            }
            K::RecordMissing => {
                let c = self.devices(|g, d| device_paths(g, d).is_some_and(|p| p.backend.is_some()));
                let r = pick(&c, target)?;
                let (paths, _) = self.live_backend(&r)?;
                if !self.exists(&paths.record) {
                    return None;
                }
                remove_and_prune(self.tree, &paths.record);
                Perturbation::RecordMissing(r)
            }
            K::RecordMalformed => {
                let c = self.devices(|_, d| !record_faults(d.kind()).is_empty());
                let r = pick(&c, target)?;
                let fault = pick(record_faults(r.kind), variant)?;
                let dir = match fault.place {
                    FaultPlace::Record => self.paths(&r)?.record,
                    FaultPlace::Backend => self.live_backend(&r)?.1,
                    FaultPlace::PciBackend => render::pci_backend_path(r.domid),
                };
                let at = format!("{dir}/{}", fault.key);
                match fault.value {
                    None => {
                        if !self.exists(&at) {
                            return None;
                        }
                        self.tree.remove_subtree(&path(&at));
                    }
                    Some(v) => {
                        if !self.exists(&dir) {
                            return None;
                        }
                        set_text(self.tree, &at, v);
                    }
                }
                Perturbation::RecordMalformed { device: r, fault }
            }
            K::GuestFrontendWrite => {
                let c = self.devices(|g, d| {
                    device_paths(g, d).is_some_and(|p| p.backend.is_some()) && d.kind() != Kind::Console
                });
                let r = pick(&c, target)?;
                let paths = self.paths(&r)?;
                if !self.exists(&paths.frontend) {
                    return None;
                }
                // A vsnd guest can break libxl's parse of its own card; any guest can point its
                // frontend at another backend or report a state of its choosing.
                let writes: &[(&str, &str)] = if r.kind == Kind::Vsnd {
                    &[("sample-formats", "s16_le,dsd_u8"), ("short-name", "pwned")]
                } else {
                    &[("backend", "/local/domain/0/backend/vbd/0/51712"), ("state", "6")]
                };
                let (key, value) = pick(writes, variant)?;
                set_text(self.tree, &format!("{}/{key}", paths.frontend), value);
                Perturbation::GuestFrontendWrite { device: r, key: key.to_string(), value: value.to_string() }
            }
            K::DuplicateJsonEntry => {
                let c = self.devices(|_, d| d.kind().merged_by_libxl() && !is_automatic(d));
                let r = pick(&c, target)?;
                let i = self.json_index(&r)?;
                let array = r.kind.array()?;
                let config = self.config_mut(r.domid)?;
                let mut entries = config.devices(array).to_vec();
                entries.insert(i + 1, entries[i].clone());
                config.set_devices(array, entries);
                Perturbation::DuplicateJsonEntry(r)
            }
            K::CdromEjected => {
                let c = self.devices(|_, d| {
                    matches!(&d.detail, Device::Disk(disk) if disk.removable() && disk.medium != DiskMedium::Empty)
                });
                let r = pick(&c, target)?;
                let (paths, be) = self.live_backend(&r)?;
                set_text(self.tree, &format!("{be}/params"), "");
                if self.exists(&paths.record) {
                    set_text(self.tree, &format!("{}/params", paths.record), "");
                }
                Perturbation::CdromEjected(r)
            }
            K::UsbdevWithPort => {
                let c =
                    self.devices(|_, d| matches!(&d.detail, Device::Usbdev(u) if u.stored == UsbdevStored::Implicit));
                let r = pick(&c, target)?;
                let i = self.json_index(&r)?;
                let stored = if variant % 2 == 0 { UsbdevStored::Explicit } else { UsbdevStored::HotAdded };
                let mut spec = self.spec(&r)?.clone();
                if let Device::Usbdev(u) = &mut spec.detail {
                    u.stored = stored;
                }
                let entry = device_json(&spec)?;
                let config = self.config_mut(r.domid)?;
                let mut entries = config.devices(crate::config::DeviceArray::Usbdevs).to_vec();
                entries[i] = entry;
                config.set_devices(crate::config::DeviceArray::Usbdevs, entries);
                Perturbation::UsbdevWithPort { device: r, stored }
            }
            K::VirtioDiskDirectory => {
                let domid = pick(&self.guests_where(|g| g.devices_of(Kind::Disk).next().is_some()), target)?;
                put(self.tree, &format!("/libxl/{domid}/device/virtio_disk"), "", &perms(0, Access::None, &[]));
                Perturbation::VirtioDiskDirectory { domid }
            }
            K::NameMissing => {
                let domid = pick(&self.guests_where(|_| true), target)?;
                let at = format!("/local/domain/{domid}/name");
                if !self.exists(&at) {
                    return None;
                }
                self.tree.remove_subtree(&path(&at));
                Perturbation::NameMissing { domid }
            }
            K::VideoMemkbAbsent => {
                let domid = pick(&self.guests_where(|_| true), target)?;
                self.config_mut(domid)?.set_b_info("video_memkb", None);
                Perturbation::VideoMemkbAbsent { domid }
            }
            K::MemoryTarget => {
                let domid = pick(&self.guests_where(|_| true), target)?;
                let g = self.guest(domid);
                // mem-set to a MiB-aligned value between 128 MiB and static-max.
                let max_mib = (g.max_memkb / 1024).max(129);
                let target_kb = (128 + u64::from(variant) % (max_mib - 127)) * 1024;
                set_text(self.tree, &format!("/local/domain/{domid}/memory/target"), &target_kb.to_string());
                set_text(self.tree, &format!("/vm/{}/memory", g.uuid), &(target_kb / 1024).to_string());
                Perturbation::MemoryTarget { domid, target_kb }
            }
            K::StaticMax => {
                let domid = pick(&self.guests_where(|_| true), target)?;
                let static_max_kb = self.guest(domid).max_memkb + 1024 * (1 + u64::from(variant % 1024));
                set_text(self.tree, &format!("/local/domain/{domid}/memory/static-max"), &static_max_kb.to_string());
                Perturbation::StaticMax { domid, static_max_kb }
            }
            K::VcpuAvailability => {
                let domid = pick(&self.guests_where(|_| true), target)?;
                let g = self.guest(domid);
                let max = g.max_vcpus.min(16);
                // A non-empty set: vCPU 0 stays online, the rest follow the bits of `variant`.
                let online: Vec<u32> = (0..max).filter(|&i| i == 0 || variant & (1 << i) != 0).collect();
                if g.uses_qmp() {
                    let d = self.host.domains.get_mut(&domid)?;
                    // vcpu-set goes through QMP: impossible once QEMU stopped answering.
                    d.qemu_cpus.as_ref()?;
                    d.qemu_cpus = Some(online.clone());
                    d.vcpus = online.len() as u32;
                } else {
                    for i in 0..g.max_vcpus {
                        let state = if online.contains(&i) { "online" } else { "offline" };
                        set_text(self.tree, &format!("/local/domain/{domid}/cpu/{i}/availability"), state);
                    }
                }
                Perturbation::VcpuAvailability { domid, online }
            }
            K::Renamed => {
                let domid = pick(&self.guests_where(|_| true), target)?;
                let name = format!("{}-renamed{}", self.guest(domid).name, variant % 10);
                let uuid = self.guest(domid).uuid.clone();
                // Renaming rewrites the name node; it cannot bring back a missing one.
                if !self.exists(&format!("/local/domain/{domid}/name")) {
                    return None;
                }
                set_text(self.tree, &format!("/local/domain/{domid}/name"), &name);
                set_text(self.tree, &format!("/vm/{uuid}/name"), &name);
                Perturbation::Renamed { domid, name }
            }
            K::HandleDiffers => {
                let domid = pick(&self.guests_where(|_| true), target)?;
                let hypervisor_uuid =
                    format!("{:08x}-0000-4000-8000-{:012x}", 0xfeed_0000u32 + u32::from(variant), domid);
                self.host.domains.get_mut(&domid)?.uuid = hypervisor_uuid.clone();
                Perturbation::HandleDiffers { domid, hypervisor_uuid }
            }
            K::NoUserdata => {
                let domid = pick(&self.guests_where(|_| true), target)?;
                self.configs.insert(domid, None);
                Perturbation::NoUserdata { domid }
            }
            K::QemuUnresponsive => {
                let domid = pick(&self.guests_where(GuestSpec::uses_qmp), target)?;
                self.host.domains.get_mut(&domid)?.qemu_cpus = None;
                Perturbation::QemuUnresponsive { domid }
            }
        };
        Some(p)
    }

    /// Removes a device from xenstore the way a completed libxl remove leaves it.
    fn remove_from_xenstore(&mut self, r: &DeviceRef) -> Option<()> {
        let g = self.guest(r.domid).clone();
        let spec = self.spec(r)?.clone();
        match &spec.detail {
            Device::Usbdev(u) => {
                // Detach writes "" back into the port.
                let port = render::usbdev_port_path(&g, u)?;
                if !self.exists(&port) {
                    return None;
                }
                set_text(self.tree, &port, "");
            }
            Device::Pci(p) => self.remove_pci(&g, p)?,
            _ => {
                let paths = device_paths(&g, &spec)?;
                if !self.exists(&paths.record) && !paths.backend.as_deref().is_some_and(|b| self.exists(b)) {
                    return None;
                }
                remove_and_prune(self.tree, &paths.frontend);
                if let Some(be) = &paths.backend {
                    remove_and_prune(self.tree, be);
                }
                remove_and_prune(self.tree, &paths.record);
            }
        }
        Some(())
    }

    /// `libxl__device_pci_remove_xenstore`: drop slot N, shift the higher slots down.
    fn remove_pci(&mut self, g: &GuestSpec, p: &Pci) -> Option<()> {
        let be = render::pci_backend_path(g.domid);
        let num: usize = self.tree.text(&format!("{be}/num_devs"))?.parse().ok()?;
        let slot = (0..num).find(|n| self.tree.text(&format!("{be}/dev-{n}")) == Some(p.bdf().as_str()))?;
        let keys = ["key", "dev", "vdevfn", "opts", "state", "name", "vdev"];
        for n in slot..num {
            for k in keys {
                let from = format!("{be}/{k}-{}", n + 1);
                let to = format!("{be}/{k}-{n}");
                let moved = self.tree.get_str(&from).cloned();
                self.tree.remove_subtree(&path(&to));
                if let Some(node) = moved {
                    self.tree.insert(path(&to), node);
                    self.tree.remove(&path(&from));
                }
            }
        }
        let host = format!("/libxl/pci/{:04x}-{:02x}-{:02x}-{:01x}", p.domain, p.bus, p.dev, p.func);
        remove_and_prune(self.tree, &host);
        if num == 1 {
            remove_and_prune(self.tree, &be);
            remove_and_prune(self.tree, &format!("/local/domain/{}/device/pci/0", g.domid));
        } else {
            set_text(self.tree, &format!("{be}/num_devs"), &(num - 1).to_string());
        }
        Some(())
    }
}

fn is_automatic(d: &DeviceSpec) -> bool {
    matches!(&d.detail, Device::Usbctrl(u) if u.automatic)
}

/// The JSON entries of a config that a test might want to compare, keyed by array.
pub fn device_arrays(config: &DomainConfig) -> BTreeMap<&'static str, Vec<Value>> {
    crate::config::DeviceArray::ALL
        .iter()
        .filter(|a| !config.devices(**a).is_empty())
        .map(|a| (a.key(), config.devices(*a).to_vec()))
        .collect()
}
