//! One declarative description per device kind: the single table every other module reads.
//!
//! The first nine rows are libxl 4.17's `device_type_tbl`, in its order (the merge loop walks
//! them in that order); the rest are the kinds libxl passes through unchanged. Each row says
//! where the kind lives in the JSON and in xenstore, what identifies a device, how libxl lists
//! it from xenstore, and which fields xenstore can or cannot give back (spec §2).

use crate::config::DeviceArray;
use serde_json::Value;
use std::cmp::Ordering;
use std::fmt;

/// Every device kind xlsync knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceKind {
    Disk,
    Nic,
    Vtpm,
    Usbctrl,
    Usbdev,
    Pci,
    Dtdev,
    Vdispl,
    Vsnd,
    Vfb,
    Vkb,
    P9,
    Pvcallsif,
    Channel,
    Console,
}

/// What makes two records the same device (libxl's `compare`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityRule {
    /// `COMPARE_DISK`: `vdev` string equality.
    Vdev,
    /// `COMPARE_DEVID`.
    Devid,
    /// `COMPARE_PCI`: domain, bus, dev, func.
    Bdf,
    /// `COMPARE_USB`: ctrl and port.
    CtrlPort,
    /// No compare: libxl passes the JSON through (dtdev, and every kind outside the table).
    None,
}

/// How libxl 4.17's `libxl__device_list` builds the xenstore side of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListSource {
    /// One record per entry of `/libxl/<D>/device/<xs_kind>`, through `from_xenstore`.
    LibxlRecords,
    /// The PCI backend `/local/domain/0/backend/pci/<D>/0`, `num_devs` entries.
    PciBackend,
    /// usbdev: one init-state placeholder `(ctrl -1, port 0)` per usb controller record.
    Placeholders,
    /// Not listed: the JSON passes through.
    NotListed,
}

/// libxl's per-kind merge of a matched xenstore record into the JSON entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeRule {
    None,
    /// `libxl_device_disk_merge`: a removable disk with no medium in xenstore gets
    /// `pdev_path = ""` and `format = empty`.
    DiskMedia,
}

/// One row of the table.
#[derive(Debug)]
pub struct KindRule {
    pub kind: DeviceKind,
    /// The JSON array (`None` for consoles, which libxl never stores in the JSON).
    pub array: Option<DeviceArray>,
    /// The frontend kind: `/libxl/<D>/device/<xs_kind>`, `/local/domain/<D>/device/<xs_kind>`.
    pub xs_kind: &'static str,
    /// Backend kinds this frontend kind may have (`/local/domain/<B>/backend/<kind>/<D>/<devid>`).
    pub backend_kinds: &'static [&'static str],
    pub identity: IdentityRule,
    pub list: ListSource,
    pub merge: MergeRule,
    /// Position in `device_type_tbl`, `None` outside it.
    pub table_index: Option<usize>,
    /// IDL fields that no xenstore node gives back (spec §2): a device recovered from xenstore
    /// names these as unknown.
    pub unrecoverable: &'static [&'static str],
}

/// The table. Rows 0–8 are `device_type_tbl` in order.
pub static RULES: [KindRule; 15] = [
    KindRule {
        kind: DeviceKind::Disk,
        array: Some(DeviceArray::Disks),
        xs_kind: "vbd",
        backend_kinds: &["vbd", "qdisk", "vbd3"],
        identity: IdentityRule::Vdev,
        list: ListSource::LibxlRecords,
        merge: MergeRule::DiskMedia,
        table_index: Some(0),
        unrecoverable: &[
            "backend_domname",
            "format",
            "script",
            "direct_io_safe",
            "discard_enable",
            "trusted",
            "colo_restore_enable",
        ],
    },
    KindRule {
        kind: DeviceKind::Nic,
        array: Some(DeviceArray::Nics),
        xs_kind: "vif",
        backend_kinds: &["vif"],
        identity: IdentityRule::Devid,
        list: ListSource::LibxlRecords,
        merge: MergeRule::None,
        table_index: Some(1),
        unrecoverable: &[
            "backend_domname",
            "model",
            "ifname",
            "rate_bytes_per_interval",
            "rate_interval_usecs",
            "gatewaydev",
            "trusted",
        ],
    },
    KindRule {
        kind: DeviceKind::Vtpm,
        array: Some(DeviceArray::Vtpms),
        xs_kind: "vtpm",
        backend_kinds: &["vtpm"],
        identity: IdentityRule::Devid,
        list: ListSource::LibxlRecords,
        merge: MergeRule::None,
        table_index: Some(2),
        unrecoverable: &["backend_domname"],
    },
    KindRule {
        kind: DeviceKind::Usbctrl,
        array: Some(DeviceArray::Usbctrls),
        xs_kind: "vusb",
        backend_kinds: &["vusb", "qusb"],
        identity: IdentityRule::Devid,
        list: ListSource::LibxlRecords,
        merge: MergeRule::None,
        table_index: Some(3),
        unrecoverable: &["backend_domname"],
    },
    KindRule {
        kind: DeviceKind::Usbdev,
        array: Some(DeviceArray::Usbdevs),
        xs_kind: "vusb",
        backend_kinds: &["vusb", "qusb"],
        identity: IdentityRule::CtrlPort,
        list: ListSource::Placeholders,
        merge: MergeRule::None,
        table_index: Some(4),
        unrecoverable: &["type.hostdev"],
    },
    KindRule {
        kind: DeviceKind::Pci,
        array: Some(DeviceArray::Pcidevs),
        xs_kind: "pci",
        backend_kinds: &["pci"],
        identity: IdentityRule::Bdf,
        list: ListSource::PciBackend,
        merge: MergeRule::None,
        table_index: Some(5),
        unrecoverable: &["vfunc_mask", "seize"],
    },
    KindRule {
        kind: DeviceKind::Dtdev,
        array: Some(DeviceArray::Dtdevs),
        xs_kind: "",
        backend_kinds: &[],
        identity: IdentityRule::None,
        list: ListSource::NotListed,
        merge: MergeRule::None,
        table_index: Some(6),
        unrecoverable: &[],
    },
    KindRule {
        kind: DeviceKind::Vdispl,
        array: Some(DeviceArray::Vdispls),
        xs_kind: "vdispl",
        backend_kinds: &["vdispl"],
        identity: IdentityRule::Devid,
        list: ListSource::LibxlRecords,
        merge: MergeRule::None,
        table_index: Some(7),
        unrecoverable: &["backend_domname", "be_alloc", "connectors"],
    },
    KindRule {
        kind: DeviceKind::Vsnd,
        array: Some(DeviceArray::Vsnds),
        xs_kind: "vsnd",
        backend_kinds: &["vsnd"],
        identity: IdentityRule::Devid,
        list: ListSource::LibxlRecords,
        merge: MergeRule::None,
        table_index: Some(8),
        // libxl reads the names and parameters from the guest's frontend: not trusted.
        unrecoverable: &["backend_domname", "short_name", "long_name", "params", "pcms"],
    },
    KindRule {
        kind: DeviceKind::Vfb,
        array: Some(DeviceArray::Vfbs),
        xs_kind: "vfb",
        backend_kinds: &["vfb"],
        identity: IdentityRule::None,
        list: ListSource::NotListed,
        merge: MergeRule::None,
        table_index: None,
        unrecoverable: &[],
    },
    KindRule {
        kind: DeviceKind::Vkb,
        array: Some(DeviceArray::Vkbs),
        xs_kind: "vkbd",
        backend_kinds: &["vkbd", "qvkbd"],
        identity: IdentityRule::None,
        list: ListSource::NotListed,
        merge: MergeRule::None,
        table_index: None,
        unrecoverable: &[],
    },
    KindRule {
        kind: DeviceKind::P9,
        array: Some(DeviceArray::P9s),
        xs_kind: "9pfs",
        backend_kinds: &["9pfs"],
        identity: IdentityRule::None,
        list: ListSource::NotListed,
        merge: MergeRule::None,
        table_index: None,
        unrecoverable: &[],
    },
    KindRule {
        kind: DeviceKind::Pvcallsif,
        array: Some(DeviceArray::Pvcallsifs),
        xs_kind: "pvcalls",
        backend_kinds: &["pvcalls"],
        identity: IdentityRule::None,
        list: ListSource::NotListed,
        merge: MergeRule::None,
        table_index: None,
        unrecoverable: &[],
    },
    KindRule {
        kind: DeviceKind::Channel,
        array: Some(DeviceArray::Channels),
        xs_kind: "console",
        backend_kinds: &["console"],
        identity: IdentityRule::None,
        list: ListSource::NotListed,
        merge: MergeRule::None,
        table_index: None,
        unrecoverable: &[],
    },
    KindRule {
        kind: DeviceKind::Console,
        array: None,
        xs_kind: "console",
        backend_kinds: &["console"],
        identity: IdentityRule::None,
        list: ListSource::NotListed,
        merge: MergeRule::None,
        table_index: None,
        unrecoverable: &[],
    },
];

impl DeviceKind {
    pub fn rule(self) -> &'static KindRule {
        RULES.iter().find(|r| r.kind == self).expect("every kind has a row")
    }

    /// libxl's `device_type_tbl`, in merge order.
    pub fn device_type_tbl() -> impl Iterator<Item = &'static KindRule> {
        RULES.iter().filter(|r| r.table_index.is_some())
    }

    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Disk => "disk",
            DeviceKind::Nic => "nic",
            DeviceKind::Vtpm => "vtpm",
            DeviceKind::Usbctrl => "usbctrl",
            DeviceKind::Usbdev => "usbdev",
            DeviceKind::Pci => "pci",
            DeviceKind::Dtdev => "dtdev",
            DeviceKind::Vdispl => "vdispl",
            DeviceKind::Vsnd => "vsnd",
            DeviceKind::Vfb => "vfb",
            DeviceKind::Vkb => "vkb",
            DeviceKind::P9 => "p9",
            DeviceKind::Pvcallsif => "pvcallsif",
            DeviceKind::Channel => "channel",
            DeviceKind::Console => "console",
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A device's identity, as its kind's `compare` sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentityKey {
    /// `None` is a JSON disk without `vdev` (libxl would compare a NULL pointer).
    Vdev(Option<String>),
    Devid(i64),
    Bdf {
        domain: i64,
        bus: i64,
        dev: i64,
        func: i64,
    },
    CtrlPort {
        ctrl: i64,
        port: i64,
    },
    /// Kinds without a compare: the position in the JSON array.
    Index(usize),
}

impl fmt::Display for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityKey::Vdev(Some(v)) => write!(f, "vdev {v}"),
            IdentityKey::Vdev(None) => write!(f, "vdev (none)"),
            IdentityKey::Devid(d) => write!(f, "devid {d}"),
            IdentityKey::Bdf { domain, bus, dev, func } => write!(f, "{domain:04x}:{bus:02x}:{dev:02x}.{func:x}"),
            IdentityKey::CtrlPort { ctrl, port } => write!(f, "ctrl {ctrl} port {port}"),
            IdentityKey::Index(i) => write!(f, "#{i}"),
        }
    }
}

/// A JSON integer field as libxl's parser reads it: present and an integer, else the init value.
pub fn json_int(entry: &Value, key: &str, init: i64) -> i64 {
    entry.get(key).and_then(Value::as_i64).unwrap_or(init)
}

/// The identity of a JSON device entry, reading missing fields as their libxl init values
/// (devid -1, PCI address 0, usbdev ctrl -1 and port 0).
pub fn json_identity(rule: &KindRule, entry: &Value, index: usize) -> IdentityKey {
    match rule.identity {
        IdentityRule::Vdev => IdentityKey::Vdev(entry.get("vdev").and_then(Value::as_str).map(str::to_string)),
        IdentityRule::Devid => IdentityKey::Devid(json_int(entry, "devid", -1)),
        IdentityRule::Bdf => IdentityKey::Bdf {
            domain: json_int(entry, "domain", 0),
            bus: json_int(entry, "bus", 0),
            dev: json_int(entry, "dev", 0),
            func: json_int(entry, "func", 0),
        },
        IdentityRule::CtrlPort => {
            IdentityKey::CtrlPort { ctrl: json_int(entry, "ctrl", -1), port: json_int(entry, "port", 0) }
        }
        IdentityRule::None => IdentityKey::Index(index),
    }
}

/// Deterministic order of identity keys (plan tie-breaks, recovered-device output order).
pub fn key_order(a: &(DeviceKind, IdentityKey), b: &(DeviceKind, IdentityKey)) -> Ordering {
    a.cmp(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_device_type_tbl_order() {
        let order: Vec<&str> = DeviceKind::device_type_tbl().map(|r| r.kind.name()).collect();
        assert_eq!(order, ["disk", "nic", "vtpm", "usbctrl", "usbdev", "pci", "dtdev", "vdispl", "vsnd"]);
        for (i, r) in DeviceKind::device_type_tbl().enumerate() {
            assert_eq!(r.table_index, Some(i));
        }
    }

    #[test]
    fn json_identity_uses_init_values() {
        let e = serde_json::json!({"hostaddr": 3});
        assert_eq!(json_identity(DeviceKind::Usbdev.rule(), &e, 0), IdentityKey::CtrlPort { ctrl: -1, port: 0 });
        assert_eq!(json_identity(DeviceKind::Nic.rule(), &e, 0), IdentityKey::Devid(-1));
    }
}

/// libxl's `libxl__device_disk_dev_number`: the devid (xenstore directory name) of a `vdev`.
/// `None` where libxl returns -1.
pub fn disk_devid(vdev: &str) -> Option<i64> {
    // Drive letters in base 26 (`a`..`z`, `aa`..), then an optional partition without
    // leading zeros.
    fn letters(rest: &str, max_index: i64, max_part: i64) -> Option<(i64, i64)> {
        let b = rest.as_bytes();
        let mut index: i64 = -1;
        let mut i = 0;
        while i < b.len() && b[i].is_ascii_lowercase() {
            index = (index + 1) * 26 + (b[i] - b'a') as i64;
            if index > max_index {
                return None;
            }
            i += 1;
        }
        let tail = &rest[i..];
        if tail.is_empty() {
            return Some((index, 0));
        }
        if tail.starts_with('0') || !tail.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let part: i64 = tail.parse().ok()?;
        (part <= max_part).then_some((index, part))
    }
    let xen = |disk: i64, part: i64| {
        if disk <= 15 && part <= 15 {
            (202 << 8) | (disk << 4) | part
        } else {
            (1 << 28) | (disk << 8) | part
        }
    };
    if let Some(rest) = vdev.strip_prefix('d') {
        if let Some((d, p)) = rest.split_once('p') {
            if let (Ok(d), Ok(p)) = (d.parse::<i64>(), p.parse::<i64>()) {
                if (0..(1 << 20)).contains(&d) && (0..256).contains(&p) {
                    return Some(xen(d, p));
                }
            }
        }
    }
    if let Some(rest) = vdev.strip_prefix("xvd") {
        if let Some((d, p)) = letters(rest, (1 << 20) - 1, 255) {
            if d >= 0 {
                return Some(xen(d, p));
            }
        }
    }
    let n = crate::cparse::strtoull(vdev.as_bytes(), 0);
    if n.consumed == vdev.len() && !vdev.is_empty() && !n.overflow && n.value <= i32::MAX as u64 {
        return Some(n.value as i64);
    }
    if let Some(rest) = vdev.strip_prefix("hd") {
        if let Some((d, p)) = letters(rest, 3, 63) {
            if d >= 0 {
                return Some(((if d < 2 { 3 } else { 22 }) << 8) | ((d & 1) << 6) | p);
            }
        }
    }
    if let Some(rest) = vdev.strip_prefix("sd") {
        if let Some((d, p)) = letters(rest, 15, 15) {
            if d >= 0 {
                return Some((8 << 8) | (d << 4) | p);
            }
        }
    }
    None
}

/// Whether `vdev` names the disk directory numbered `devid` (libxl numbers a disk's
/// directory from its vdev).
pub fn vdev_names_devid(vdev: &str, devid: i64) -> bool {
    disk_devid(vdev) == Some(devid)
}

#[cfg(test)]
mod devid_tests {
    use super::disk_devid;

    #[test]
    fn vdev_numbers_like_libxl() {
        assert_eq!(disk_devid("xvda"), Some(51712));
        assert_eq!(disk_devid("xvdb1"), Some(51729));
        assert_eq!(disk_devid("hda"), Some(768));
        assert_eq!(disk_devid("hdb"), Some(832));
        assert_eq!(disk_devid("hdc"), Some(5632));
        assert_eq!(disk_devid("sda"), Some(2048));
        assert_eq!(disk_devid("xvdq"), Some((1 << 28) | (16 << 8)));
        assert_eq!(disk_devid("51712"), Some(51712));
        assert_eq!(disk_devid("xvda0"), None);
        assert_eq!(disk_devid("bogus"), None);
    }
}
