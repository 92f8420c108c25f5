//! The intent behind a generated guest: what the user configured and what libxl chose for it.
//!
//! A [`GuestSpec`] is the single source both replicas are rendered from (see
//! [`render`](super::render)), so an unperturbed scenario is consistent by construction. The
//! model is deliberately independent of the engine's own rule table: it is a second,
//! hand-written reading of spec §3 and §5.4, so that a differential test compares two
//! independent descriptions of libxl with the real thing.

use crate::config::DeviceArray;
use crate::hypervisor::GuestType;

/// Every device kind the generator produces.
///
/// `Disk`…`Vsnd` are in libxl 4.17's `device_type_tbl` with a `compare` (their JSON entries are
/// filtered by xenstore); the rest are passed through by libxl's retrieve. `Console` has no JSON
/// array at all: libxl creates the primary console (and one console per channel) at domain
/// creation without recording it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Disk,
    Nic,
    Vtpm,
    Usbctrl,
    Usbdev,
    Pci,
    Vdispl,
    Vsnd,
    Vfb,
    Vkb,
    P9,
    Pvcallsif,
    Channel,
    Console,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::Disk,
        Kind::Nic,
        Kind::Vtpm,
        Kind::Usbctrl,
        Kind::Usbdev,
        Kind::Pci,
        Kind::Vdispl,
        Kind::Vsnd,
        Kind::Vfb,
        Kind::Vkb,
        Kind::P9,
        Kind::Pvcallsif,
        Kind::Channel,
        Kind::Console,
    ];

    /// The `libxl_domain_config` array the kind is stored in (`None`: never in the JSON).
    pub fn array(self) -> Option<DeviceArray> {
        Some(match self {
            Kind::Disk => DeviceArray::Disks,
            Kind::Nic => DeviceArray::Nics,
            Kind::Vtpm => DeviceArray::Vtpms,
            Kind::Usbctrl => DeviceArray::Usbctrls,
            Kind::Usbdev => DeviceArray::Usbdevs,
            Kind::Pci => DeviceArray::Pcidevs,
            Kind::Vdispl => DeviceArray::Vdispls,
            Kind::Vsnd => DeviceArray::Vsnds,
            Kind::Vfb => DeviceArray::Vfbs,
            Kind::Vkb => DeviceArray::Vkbs,
            Kind::P9 => DeviceArray::P9s,
            Kind::Pvcallsif => DeviceArray::Pvcallsifs,
            Kind::Channel => DeviceArray::Channels,
            Kind::Console => return None,
        })
    }

    /// The frontend kind string: `/local/domain/<D>/device/<it>` and `/libxl/<D>/device/<it>`.
    pub fn xs_kind(self) -> &'static str {
        match self {
            Kind::Disk => "vbd",
            Kind::Nic => "vif",
            Kind::Vtpm => "vtpm",
            Kind::Usbctrl | Kind::Usbdev => "vusb",
            Kind::Pci => "pci",
            Kind::Vdispl => "vdispl",
            Kind::Vsnd => "vsnd",
            Kind::Vfb => "vfb",
            Kind::Vkb => "vkbd",
            Kind::P9 => "9pfs",
            Kind::Pvcallsif => "pvcalls",
            Kind::Channel | Kind::Console => "console",
        }
    }

    /// Whether libxl 4.17's retrieve filters this kind's JSON entries by xenstore (a
    /// `device_type_tbl` entry with a `compare`).
    pub fn merged_by_libxl(self) -> bool {
        matches!(
            self,
            Kind::Disk | Kind::Nic | Kind::Vtpm | Kind::Usbctrl | Kind::Usbdev | Kind::Pci | Kind::Vdispl | Kind::Vsnd
        )
    }
}

/// What `/libxl/<D>/dm-version` holds. libxl writes it for every guest (PV and PVH guests get
/// `qemu_xen`, the QEMU that serves qdisk/vfb backends); retrieve only reads it for HVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DmVersion {
    /// No node: an older toolstack, or a hand-made domain. libxl treats HVM as qemu-traditional.
    Absent,
    QemuXen,
    QemuXenTraditional,
}

impl DmVersion {
    pub fn node_value(self) -> Option<&'static str> {
        match self {
            DmVersion::Absent => None,
            DmVersion::QemuXen => Some("qemu_xen"),
            DmVersion::QemuXenTraditional => Some("qemu_xen_traditional"),
        }
    }
}

/// How the guest boots (JSON `b_info` only).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Boot {
    /// `kernel`, `cmdline`, optional `ramdisk`.
    Kernel { kernel: String, cmdline: String, ramdisk: Option<String> },
    /// `bootloader = "pygrub"` (PV only).
    Pygrub,
    /// HVM firmware (`boot = "cd"`).
    Firmware,
}

/// One guest domain: its identity, sizes and devices, as created by `xl create`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GuestSpec {
    pub domid: u32,
    /// Lowercase 8-4-4-4-12 hex; the hypervisor handle and `c_info.uuid`.
    pub uuid: String,
    pub name: String,
    pub guest_type: GuestType,
    pub dm_version: DmVersion,
    pub boot: Boot,
    pub max_vcpus: u32,
    /// The vCPUs online at creation (`vcpus = N` gives `0..N`): JSON `avail_vcpus`, xenstore
    /// `cpu/<i>/availability`, and QEMU's answer for qemu-xen HVM guests.
    pub online_vcpus: Vec<u32>,
    pub max_memkb: u64,
    pub target_memkb: u64,
    /// What `libxl__update_domain_configuration` copies into the JSON: 0 for PV/PVH, the
    /// video RAM for HVM.
    pub video_memkb: u64,
    /// The hypervisor's credit/credit2 parameters for the domain.
    pub weight: i64,
    pub cap: i64,
    /// A `cpu_weight` the user wrote in the xl config (stored in the JSON `sched_params`).
    pub configured_weight: Option<i64>,
    pub devices: Vec<DeviceSpec>,
}

impl GuestSpec {
    pub fn is_hvm(&self) -> bool {
        self.guest_type == GuestType::Hvm
    }

    /// Whether libxl asks QEMU over QMP for the online vCPUs (spec §1 step 5).
    pub fn uses_qmp(&self) -> bool {
        self.is_hvm() && self.dm_version == DmVersion::QemuXen
    }

    /// libxl's fudge between the JSON `target_memkb` and xenstore's `memory/target`
    /// (spec §1 step 10), for this guest's own JSON values.
    pub fn memory_fudge_kb(&self) -> u64 {
        let hvm_constant = if self.is_hvm() && self.max_memkb > self.target_memkb { 1024 } else { 0 };
        self.video_memkb + hvm_constant
    }

    pub fn devices_of(&self, kind: Kind) -> impl Iterator<Item = &DeviceSpec> {
        self.devices.iter().filter(move |d| d.kind() == kind)
    }
}

/// One device, with the domain that serves its backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceSpec {
    /// `B`: 0, or a driver domain (`backend = <name>` in the xl config).
    pub backend_domid: u32,
    /// The name the user gave for a driver-domain backend (`backend_domname` in the JSON).
    pub backend_domname: Option<String>,
    pub detail: Device,
}

impl DeviceSpec {
    pub fn in_dom0(detail: Device) -> DeviceSpec {
        DeviceSpec { backend_domid: 0, backend_domname: None, detail }
    }

    pub fn kind(&self) -> Kind {
        self.detail.kind()
    }
}

/// The per-kind user intent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Device {
    Disk(Disk),
    Nic(Nic),
    Vtpm(Vtpm),
    Usbctrl(Usbctrl),
    Usbdev(Usbdev),
    Pci(Pci),
    Vdispl(Vdispl),
    Vsnd(Vsnd),
    Vfb(Vfb),
    Vkb(Vkb),
    P9(P9),
    Pvcallsif(Pvcallsif),
    Channel(Channel),
    /// The primary console (devid 0), xenstore only.
    Console,
}

impl Device {
    pub fn kind(&self) -> Kind {
        match self {
            Device::Disk(_) => Kind::Disk,
            Device::Nic(_) => Kind::Nic,
            Device::Vtpm(_) => Kind::Vtpm,
            Device::Usbctrl(_) => Kind::Usbctrl,
            Device::Usbdev(_) => Kind::Usbdev,
            Device::Pci(_) => Kind::Pci,
            Device::Vdispl(_) => Kind::Vdispl,
            Device::Vsnd(_) => Kind::Vsnd,
            Device::Vfb(_) => Kind::Vfb,
            Device::Vkb(_) => Kind::Vkb,
            Device::P9(_) => Kind::P9,
            Device::Pvcallsif(_) => Kind::Pvcallsif,
            Device::Channel(_) => Kind::Channel,
            Device::Console => Kind::Console,
        }
    }
}

/// Where a disk's data lives, which decides libxl's backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DiskMedium {
    /// A block device: backend `phy`, `params` = the path, hotplug script `block`.
    Phy { path: String },
    /// An image file: backend `qdisk` (QEMU), `params` = `<fmt>:<path>`.
    Qdisk { path: String, format: ImageFormat },
    /// A removable drive with no medium (`format = empty`): qdisk, `params` = `aio:`.
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Raw,
    Qcow2,
    Vhd,
}

impl ImageFormat {
    /// The JSON spelling (`libxl_disk_format`).
    pub fn json(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Vhd => "vhd",
        }
    }

    /// The qdisk `params` prefix (`libxl__device_disk_string_of_format`).
    pub fn params_prefix(self) -> &'static str {
        match self {
            ImageFormat::Raw => "aio",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Vhd => "vhd",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Disk {
    /// `xvda`, `hdc`, `sdb`: the identity key.
    pub vdev: String,
    pub medium: DiskMedium,
    pub readwrite: bool,
    /// `devtype = cdrom`: removable, device-type cdrom.
    pub cdrom: bool,
    /// The user wrote `backendtype=qdisk` (stored as `"backend": "qdisk"`).
    pub explicit_backend: bool,
}

impl Disk {
    pub fn removable(&self) -> bool {
        self.cdrom
    }

    /// libxl's devid for the vdev (`libxl__device_disk_dev_number`), for the vdev shapes the
    /// generator produces (`xvdX`, `hdX`, `sdX`, no partition).
    pub fn devid(&self) -> u32 {
        vdev_to_devid(&self.vdev).expect("generated vdevs are valid")
    }
}

/// libxl's vdev → devid mapping for whole disks `xvdX`, `hdX`, `sdX` (spec §3.1).
pub fn vdev_to_devid(vdev: &str) -> Option<u32> {
    let letter = |s: &str| -> Option<u32> {
        let mut chars = s.chars();
        let c = chars.next()?;
        if chars.next().is_some() || !c.is_ascii_lowercase() {
            return None;
        }
        Some(c as u32 - 'a' as u32)
    };
    if let Some(rest) = vdev.strip_prefix("xvd") {
        let disk = letter(rest)?;
        return Some(if disk <= 15 { (202 << 8) | (disk << 4) } else { (1 << 28) | (disk << 8) });
    }
    if let Some(rest) = vdev.strip_prefix("hd") {
        let disk = letter(rest)?;
        let major = match disk {
            0 | 1 => 3,
            2 | 3 => 22,
            _ => return None,
        };
        return Some((major << 8) | ((disk & 1) << 6));
    }
    if let Some(rest) = vdev.strip_prefix("sd") {
        let disk = letter(rest)?;
        return (disk <= 15).then_some((8 << 8) | (disk << 4));
    }
    None
}

/// `vif` (PV netfront) or `vif_ioemu` (HVM: an emulated NIC plus a PV one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NicType {
    Vif,
    VifIoemu,
}

impl NicType {
    pub fn as_str(self) -> &'static str {
        match self {
            NicType::Vif => "vif",
            NicType::VifIoemu => "vif_ioemu",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nic {
    pub devid: u32,
    /// `xx:xx:xx:xx:xx:xx`; the user's, or the random `00:16:3e` one libxl chose (stored
    /// either way: `update_config` copies it).
    pub mac: String,
    pub bridge: Option<String>,
    pub mtu: Option<u32>,
    pub ip: Option<String>,
    /// A script name as the user wrote it (`vif-nat`); libxl stores the absolute path in xenstore.
    pub script: Option<String>,
    pub nictype: NicType,
    /// `model=e1000` (HVM).
    pub model: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Vtpm {
    pub devid: u32,
    pub uuid: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsbctrlType {
    /// usbback in the backend domain: backend kind `vusb`.
    Pv,
    /// QEMU's PV USB backend: backend kind `qusb`.
    Qusb,
    /// An emulated controller in the HVM device model: only the libxl record, no backend.
    Devicemodel,
}

impl UsbctrlType {
    pub fn as_str(self) -> &'static str {
        match self {
            UsbctrlType::Pv => "pv",
            UsbctrlType::Qusb => "qusb",
            UsbctrlType::Devicemodel => "devicemodel",
        }
    }

    pub fn backend_kind(self) -> Option<&'static str> {
        match self {
            UsbctrlType::Pv => Some("vusb"),
            UsbctrlType::Qusb => Some("qusb"),
            UsbctrlType::Devicemodel => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Usbctrl {
    pub devid: u32,
    pub ctrl_type: UsbctrlType,
    pub version: u32,
    pub ports: u32,
    /// Created by libxl for a usbdev that named no controller: it exists in xenstore only
    /// (spec §4.1, "a usbctrl created automatically for a usbdev").
    pub automatic: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Usbdev {
    /// The controller devid and port the device occupies in xenstore.
    pub ctrl: u32,
    pub port: u32,
    pub hostbus: u8,
    pub hostaddr: u8,
    /// How the JSON entry was stored. `Implicit` (an xl `usbdev=` line with neither controller
    /// nor port) keeps libxl's init values `ctrl = -1, port = 0`, the only shape libxl 4.17's
    /// retrieve keeps (spec §2.8).
    pub stored: UsbdevStored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UsbdevStored {
    /// `usbdev = ['hostbus=1,hostaddr=3']`: JSON `{}`.
    Implicit,
    /// `controller=`/`port=` given in the xl config: JSON `{"ctrl": c, "port": p}`.
    Explicit,
    /// `xl usbdev-attach`: the post-default struct, `{"ctrl", "port", "type.hostdev": {...}}`.
    HotAdded,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pci {
    pub domain: u32,
    pub bus: u32,
    pub dev: u32,
    pub func: u32,
    pub permissive: bool,
    pub msitranslate: bool,
    pub power_mgmt: bool,
    /// `strict` or `relaxed` (xl stores `strict` when none is given).
    pub rdm_policy: &'static str,
    /// The virtual slot QEMU chose for an HVM guest (`vdevfn-N`, hex); 0 for PV.
    pub vdevfn: u32,
}

impl Pci {
    /// `DDDD:BB:DD.F`, as in `dev-N`.
    pub fn bdf(&self) -> String {
        format!("{:04x}:{:02x}:{:02x}.{:01x}", self.domain, self.bus, self.dev, self.func)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Vdispl {
    pub devid: u32,
    pub be_alloc: bool,
    /// `(unique_id, width, height)`.
    pub connectors: Vec<(String, u32, u32)>,
}

/// Sound parameters shared by card, pcm and stream levels (`libxl_vsnd_params`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct VsndParams {
    pub sample_rates: Vec<u32>,
    /// `libxl_vsnd_pcm_format` spellings (`s16_le`, `u8`, …).
    pub sample_formats: Vec<&'static str>,
    pub channels_min: u32,
    pub channels_max: u32,
    pub buffer_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VsndStream {
    pub unique_id: String,
    /// `p` (playback) or `c` (capture).
    pub stream_type: &'static str,
    pub params: VsndParams,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VsndPcm {
    /// Always set by the generator: a pcm with no name, params or streams leaves no xenstore
    /// node and libxl would not count it.
    pub name: String,
    pub params: VsndParams,
    pub streams: Vec<VsndStream>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Vsnd {
    pub devid: u32,
    pub short_name: Option<String>,
    pub long_name: Option<String>,
    pub params: VsndParams,
    pub pcms: Vec<VsndPcm>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Vfb {
    pub devid: u32,
    pub vnc_listen: String,
    pub vnc_display: u32,
    pub keymap: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Vkb {
    pub devid: u32,
    /// `linux` (a PV backend) rather than QEMU's default.
    pub linux_backend: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct P9 {
    /// The xenstore devid (libxl numbers 9pfs devices by position; the JSON has none).
    pub devid: u32,
    pub tag: String,
    pub path: String,
    pub security_model: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pvcallsif {
    pub devid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChannelConnection {
    Pty,
    Socket { path: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Channel {
    /// The JSON devid (position in `channels`); its console is devid + 1.
    pub devid: u32,
    pub name: String,
    pub connection: ChannelConnection,
}

/// The xenstore devid of a device that has its own directory (`None` for usbdev, whose state
/// is a port of its controller, and PCI, which shares one backend per guest).
pub fn xs_devid(device: &Device) -> Option<u32> {
    Some(match device {
        Device::Disk(d) => d.devid(),
        Device::Nic(n) => n.devid,
        Device::Vtpm(v) => v.devid,
        Device::Usbctrl(u) => u.devid,
        Device::Vdispl(v) => v.devid,
        Device::Vsnd(v) => v.devid,
        Device::Vfb(v) => v.devid,
        Device::Vkb(v) => v.devid,
        Device::P9(p) => p.devid,
        Device::Pvcallsif(p) => p.devid,
        Device::Channel(c) => c.devid + 1,
        Device::Console => 0,
        Device::Usbdev(_) | Device::Pci(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdev_numbers_follow_libxl() {
        assert_eq!(vdev_to_devid("xvda"), Some(51712));
        assert_eq!(vdev_to_devid("xvdb"), Some(51728));
        assert_eq!(vdev_to_devid("hda"), Some(768));
        assert_eq!(vdev_to_devid("hdc"), Some(5632));
        assert_eq!(vdev_to_devid("hdd"), Some(5696));
        assert_eq!(vdev_to_devid("sdb"), Some(2064));
        assert_eq!(vdev_to_devid("xvdq"), Some((1 << 28) | (16 << 8)));
        assert_eq!(vdev_to_devid("vda"), None);
    }
}
