//! Renders a [`GuestSpec`] into both replicas, the way libxl 4.17 leaves them after `xl create`.
//!
//! * The JSON (spec §5.4): the user's pre-default config plus what `update_config` adds (nic
//!   devid, nictype and mac; vtpm devid and uuid; vdispl devid and be_alloc; vsnd devid),
//!   `c_info.uuid`, `b_info.video_memkb` and `arch_x86.msr_relaxed`. Shapes follow the real
//!   `xl -N create` output (`usbdevs: [{}]` for an implicit usbdev, `vfunc_mask: 1` on PCI…).
//! * xenstore (spec §3.1–§3.3): frontend, backend and the `/libxl` copy of the backend keys as
//!   written at add time (so the copy keeps `state = 1`), the PCI backend of §3.2, and the
//!   domain-level nodes of §3.3. Backends are shown Connected (state 4) with their hotplug
//!   scripts done, as on a running host.
//!
//! Permissions follow libxl: the guest owns its frontend (the backend domain may read), the
//! backend domain owns the backend, `/libxl` and `/vm` belong to dom0.

use super::model::*;
use crate::config::{set_in_order, DeviceArray, DomainConfig, Object};
use crate::hypervisor::{GuestType, HypervisorDomain};
use crate::xenstore::{Access, Node, Path, Perm, Perms, Tree};
use serde_json::{json, Value};

/// The hotplug script directory of Debian's xen-utils.
pub const SCRIPT_DIR: &str = "/etc/xen/scripts";

/// Builds a JSON object whose keys follow the IDL order of `struct_name`.
fn idl_object(struct_name: &str, pairs: Vec<(&str, Value)>) -> Value {
    let mut obj = Object::new();
    for (k, v) in pairs {
        set_in_order(&mut obj, struct_name, k, v);
    }
    Value::Object(obj)
}

/// A JSON object in the given key order (nested structs the schema table does not list).
fn ordered(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn opt<T: Into<Value>>(key: &'static str, v: Option<T>) -> Option<(&'static str, Value)> {
    v.map(|v| (key, v.into()))
}

fn backend_name(spec: &DeviceSpec) -> Option<(&'static str, Value)> {
    opt("backend_domname", spec.backend_domname.clone())
}

fn vsnd_params_json(p: &VsndParams) -> Value {
    let mut pairs = Vec::new();
    if !p.sample_rates.is_empty() {
        pairs.push(("sample_rates", json!(p.sample_rates)));
    }
    if !p.sample_formats.is_empty() {
        pairs.push(("sample_formats", json!(p.sample_formats)));
    }
    for (key, v) in [("channels_min", p.channels_min), ("channels_max", p.channels_max), ("buffer_size", p.buffer_size)]
    {
        if v != 0 {
            pairs.push((key, json!(v)));
        }
    }
    ordered(pairs)
}

/// The JSON entry libxl stores for one device (`None` for the console, which is never stored,
/// and for an automatically created usb controller).
pub fn device_json(spec: &DeviceSpec) -> Option<Value> {
    let kind = spec.kind();
    let struct_name = kind.array()?.element_struct();
    let mut pairs: Vec<Option<(&str, Value)>> = vec![backend_name(spec)];
    match &spec.detail {
        Device::Disk(d) => {
            let (path, format, backend) = match &d.medium {
                DiskMedium::Phy { path } => (path.clone(), "raw", d.explicit_backend.then_some("phy")),
                DiskMedium::Qdisk { path, format } => {
                    (path.clone(), format.json(), d.explicit_backend.then_some("qdisk"))
                }
                DiskMedium::Empty => (String::new(), "empty", None),
            };
            pairs.extend([
                Some(("pdev_path", json!(path))),
                Some(("vdev", json!(d.vdev))),
                opt("backend", backend),
                Some(("format", json!(format))),
                d.removable().then(|| ("removable", json!(1))),
                d.readwrite.then(|| ("readwrite", json!(1))),
                d.cdrom.then(|| ("is_cdrom", json!(1))),
            ]);
        }
        Device::Nic(n) => pairs.extend([
            Some(("devid", json!(n.devid))),
            opt("mtu", n.mtu),
            opt("model", n.model.clone()),
            Some(("mac", json!(n.mac))),
            opt("ip", n.ip.clone()),
            opt("bridge", n.bridge.clone()),
            opt("script", n.script.clone()),
            Some(("nictype", json!(n.nictype.as_str()))),
        ]),
        Device::Vtpm(v) => pairs.extend([Some(("devid", json!(v.devid))), Some(("uuid", json!(v.uuid)))]),
        Device::Usbctrl(u) => {
            if u.automatic {
                return None;
            }
            pairs.extend([
                Some(("type", json!(u.ctrl_type.as_str()))),
                Some(("devid", json!(u.devid))),
                Some(("version", json!(u.version))),
                Some(("ports", json!(u.ports))),
            ]);
        }
        Device::Usbdev(u) => match u.stored {
            UsbdevStored::Implicit => {}
            UsbdevStored::Explicit => pairs.extend([Some(("ctrl", json!(u.ctrl))), Some(("port", json!(u.port)))]),
            UsbdevStored::HotAdded => pairs.extend([
                Some(("ctrl", json!(u.ctrl))),
                Some(("port", json!(u.port))),
                Some(("type.hostdev", ordered(vec![("hostbus", json!(u.hostbus)), ("hostaddr", json!(u.hostaddr))]))),
            ]),
        },
        Device::Pci(p) => pairs.extend([
            (p.func != 0).then(|| ("func", json!(p.func))),
            (p.dev != 0).then(|| ("dev", json!(p.dev))),
            (p.bus != 0).then(|| ("bus", json!(p.bus))),
            (p.domain != 0).then(|| ("domain", json!(p.domain))),
            Some(("vfunc_mask", json!(1))),
            p.msitranslate.then(|| ("msitranslate", json!(true))),
            p.power_mgmt.then(|| ("power_mgmt", json!(true))),
            p.permissive.then(|| ("permissive", json!(true))),
            Some(("rdm_policy", json!(p.rdm_policy))),
        ]),
        Device::Vdispl(v) => {
            let connectors: Vec<Value> = v
                .connectors
                .iter()
                .map(|(id, w, h)| ordered(vec![("unique_id", json!(id)), ("width", json!(w)), ("height", json!(h))]))
                .collect();
            pairs.extend([
                Some(("devid", json!(v.devid))),
                v.be_alloc.then(|| ("be_alloc", json!(true))),
                Some(("connectors", Value::Array(connectors))),
            ]);
        }
        Device::Vsnd(v) => {
            let pcms: Vec<Value> = v
                .pcms
                .iter()
                .map(|pcm| {
                    let streams: Vec<Value> = pcm
                        .streams
                        .iter()
                        .map(|s| {
                            ordered(vec![
                                ("unique_id", json!(s.unique_id)),
                                ("type", json!(s.stream_type)),
                                ("params", vsnd_params_json(&s.params)),
                            ])
                        })
                        .collect();
                    let mut p = vec![("name", json!(pcm.name)), ("params", vsnd_params_json(&pcm.params))];
                    if !streams.is_empty() {
                        p.push(("streams", Value::Array(streams)));
                    }
                    ordered(p)
                })
                .collect();
            pairs.extend([
                Some(("devid", json!(v.devid))),
                opt("short_name", v.short_name.clone()),
                opt("long_name", v.long_name.clone()),
                Some(("params", vsnd_params_json(&v.params))),
                (!pcms.is_empty()).then(|| ("pcms", Value::Array(pcms))),
            ]);
        }
        Device::Vfb(v) => pairs.extend([
            Some(("devid", json!(v.devid))),
            Some((
                "vnc",
                // An integer equal to 0 is default and never emitted by libxl's generator.
                ordered(
                    [("enable", json!("True")), ("listen", json!(v.vnc_listen))]
                        .into_iter()
                        .chain((v.vnc_display != 0).then(|| ("display", json!(v.vnc_display))))
                        .collect(),
                ),
            )),
            Some(("sdl", ordered(vec![]))),
            opt("keymap", v.keymap.clone()),
        ]),
        Device::Vkb(v) => {
            pairs.extend([Some(("devid", json!(v.devid))), v.linux_backend.then(|| ("backend_type", json!("linux")))])
        }
        Device::P9(p) => pairs.extend([
            Some(("tag", json!(p.tag))),
            Some(("path", json!(p.path))),
            Some(("security_model", json!(p.security_model))),
        ]),
        Device::Pvcallsif(p) => pairs.push(Some(("devid", json!(p.devid)))),
        Device::Channel(c) => {
            let connection = match &c.connection {
                ChannelConnection::Pty => ("connection.pty", ordered(vec![])),
                ChannelConnection::Socket { path } => ("connection.socket", ordered(vec![("path", json!(path))])),
            };
            pairs.extend([Some(("devid", json!(c.devid))), Some(("name", json!(c.name))), Some(connection)]);
        }
        Device::Console => return None,
    }
    Some(idl_object(struct_name, pairs.into_iter().flatten().collect()))
}

/// The userdata `libxl_domain_config` of a guest, as `domcreate_complete` stores it.
pub fn domain_json(g: &GuestSpec) -> DomainConfig {
    let c_info = idl_object(
        "domain_create_info",
        vec![
            ("type", json!(g.guest_type.as_str())),
            ("name", json!(g.name)),
            ("uuid", json!(g.uuid)),
            ("run_hotplug_scripts", json!("True")),
        ],
    );
    let mut b: Vec<(&str, Value)> = vec![
        ("max_vcpus", json!(g.max_vcpus)),
        ("max_memkb", json!(g.max_memkb)),
        ("target_memkb", json!(g.target_memkb)),
        ("video_memkb", json!(g.video_memkb)),
        ("sched_params", ordered(g.configured_weight.map(|w| ("weight", json!(w))).into_iter().collect())),
        ("claim_mode", json!("True")),
        ("arch_arm", ordered(vec![])),
        ("arch_x86", ordered(vec![("msr_relaxed", json!("False"))])),
    ];
    if !g.online_vcpus.is_empty() {
        b.push(("avail_vcpus", json!(g.online_vcpus)));
    }
    if g.is_hvm() && g.dm_version == DmVersion::QemuXenTraditional {
        b.push(("device_model_version", json!("qemu_xen_traditional")));
    }
    match &g.boot {
        Boot::Kernel { kernel, cmdline, ramdisk } => {
            b.push(("kernel", json!(kernel)));
            b.push(("cmdline", json!(cmdline)));
            if let Some(r) = ramdisk {
                b.push(("ramdisk", json!(r)));
            }
        }
        Boot::Pygrub => b.push(("bootloader", json!("pygrub"))),
        Boot::Firmware => {}
    }
    let type_member = match g.guest_type {
        GuestType::Pv => {
            // xl turns on e820_host for a PV guest with PCI passthrough.
            let e820 = g.devices_of(Kind::Pci).next().is_some();
            ("type.pv", ordered(e820.then(|| ("e820_host", json!("True"))).into_iter().collect()))
        }
        GuestType::Pvh => ("type.pvh", ordered(vec![])),
        GuestType::Hvm => {
            let mut hvm = vec![
                ("vga", ordered(vec![])),
                ("vnc", ordered(vec![])),
                ("sdl", ordered(vec![])),
                ("spice", ordered(vec![])),
            ];
            if g.boot == Boot::Firmware {
                hvm.push(("boot", json!("cd")));
            }
            hvm.push(("rdm", ordered(vec![])));
            ("type.hvm", ordered(hvm))
        }
    };
    b.push(type_member);
    let b_info = idl_object("domain_build_info", b);

    let mut config = DomainConfig::from_object(Object::new());
    config.set_top("c_info", Some(c_info));
    config.set_top("b_info", Some(b_info));
    for array in DeviceArray::ALL {
        let entries: Vec<Value> =
            g.devices.iter().filter(|d| d.kind().array() == Some(array)).filter_map(device_json).collect();
        config.set_devices(array, entries);
    }
    config.set_top("on_reboot", Some(json!("restart")));
    config.set_top("on_soft_reset", Some(json!("soft_reset")));
    config
}

/// The userdata file bytes: libxl's JSON text plus the trailing NUL libxl stores (spec §5.1).
pub fn userdata_bytes(config: &DomainConfig) -> Vec<u8> {
    let mut bytes = config.to_libxl_json().into_bytes();
    bytes.push(0);
    bytes
}

/// Permission list helper: `(owner, others' access)` then extra entries.
pub fn perms(owner: u32, others: Access, extra: &[(u32, Access)]) -> Perms {
    let mut v = vec![Perm { access: others, domid: owner }];
    v.extend(extra.iter().map(|&(domid, access)| Perm { access, domid }));
    Perms::new(v).expect("non-empty")
}

/// Writes `value` at `path`, creating missing ancestors with the same permissions.
pub fn put(tree: &mut Tree, path: &str, value: &str, p: &Perms) {
    let path = Path::new(path).unwrap_or_else(|e| panic!("generated an invalid xenstore path {path:?}: {e}"));
    tree.insert_with_parents(path, Node::new(value.as_bytes().to_vec()).with_perms(Some(p.clone())), Some(p.clone()));
}

/// Where the nodes of one device live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePaths {
    pub frontend: String,
    /// `None` for a device with only a libxl record (devicemodel usbctrl).
    pub backend: Option<String>,
    pub record: String,
}

/// The xenstore side of one generic device (everything but PCI and usbdev).
struct XsDevice {
    backend_kind: Option<&'static str>,
    devid: u32,
    /// Guest-writable frontend keys.
    front: Vec<(String, String)>,
    /// Frontend keys the guest may only read.
    ro_front: Vec<(String, String)>,
    /// Backend keys written at add time (copied into the libxl record).
    back: Vec<(String, String)>,
    /// Backend keys that appear later (hotplug scripts, the backend driver).
    back_runtime: Vec<(String, String)>,
    /// The primary console's frontend is `/local/domain/<D>/console`.
    frontend_override: Option<String>,
}

fn kv(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn vsnd_params_xs(prefix: &str, p: &VsndParams, out: &mut Vec<(String, String)>) {
    let join = |v: Vec<String>| v.join(",");
    if !p.sample_rates.is_empty() {
        out.push((format!("{prefix}sample-rates"), join(p.sample_rates.iter().map(u32::to_string).collect())));
    }
    if !p.sample_formats.is_empty() {
        out.push((format!("{prefix}sample-formats"), join(p.sample_formats.iter().map(|s| s.to_string()).collect())));
    }
    for (key, v) in [("channels-min", p.channels_min), ("channels-max", p.channels_max), ("buffer-size", p.buffer_size)]
    {
        if v != 0 {
            out.push((format!("{prefix}{key}"), v.to_string()));
        }
    }
}

/// The per-kind keys of §3.1 (generic ones — `frontend-id`, `online`, `state`, the
/// cross-pointers — are added by [`write_device`]).
fn xs_device(g: &GuestSpec, spec: &DeviceSpec) -> Option<XsDevice> {
    let devid = xs_devid(&spec.detail)?;
    let mut d = XsDevice {
        backend_kind: None,
        devid,
        front: Vec::new(),
        ro_front: Vec::new(),
        back: Vec::new(),
        back_runtime: Vec::new(),
        frontend_override: None,
    };
    let s = |v: &str| v.to_string();
    match &spec.detail {
        Device::Disk(disk) => {
            let (kind, params, script) = match &disk.medium {
                DiskMedium::Phy { path } => ("vbd", path.clone(), Some(format!("{SCRIPT_DIR}/block"))),
                DiskMedium::Qdisk { path, format } => ("qdisk", format!("{}:{path}", format.params_prefix()), None),
                DiskMedium::Empty => ("qdisk", s("aio:"), None),
            };
            d.backend_kind = Some(kind);
            let device_type = if disk.cdrom { "cdrom" } else { "disk" };
            d.back = kv(&[("params", params)]);
            if let Some(script) = script {
                d.back.push((s("script"), script));
                d.back_runtime = kv(&[("physical-device", s("fe:3")), ("hotplug-status", s("connected"))]);
            }
            d.back.extend(kv(&[
                ("removable", s(if disk.removable() { "1" } else { "0" })),
                ("bootable", s("1")),
                ("dev", disk.vdev.clone()),
                ("type", s(if kind == "vbd" { "phy" } else { "qdisk" })),
                ("mode", s(if disk.readwrite { "w" } else { "r" })),
                ("device-type", s(device_type)),
                ("discard-enable", s(if disk.readwrite { "1" } else { "0" })),
                ("specification", s("xen")),
            ]));
            d.front =
                kv(&[("virtual-device", devid.to_string()), ("device-type", s(device_type)), ("trusted", s("1"))]);
            if g.guest_type == GuestType::Pv {
                d.front.push((s("protocol"), s("x86_64-abi")));
            }
        }
        Device::Nic(n) => {
            d.backend_kind = Some("vif");
            let script = n.script.clone().unwrap_or_else(|| s("vif-bridge"));
            let script = if script.starts_with('/') { script } else { format!("{SCRIPT_DIR}/{script}") };
            d.back = kv(&[("script", script), ("mac", n.mac.clone())]);
            if let Some(ip) = &n.ip {
                d.back.push((s("ip"), ip.clone()));
            }
            let mtu = n.mtu.unwrap_or(1500);
            if mtu != 1500 {
                d.back.push((s("mtu"), mtu.to_string()));
            }
            d.back.extend(kv(&[
                ("bridge", n.bridge.clone().unwrap_or_else(|| s("xenbr0"))),
                ("handle", n.devid.to_string()),
                ("type", s(n.nictype.as_str())),
                ("hotplug-status", String::new()),
            ]));
            // The vif hotplug script replaces the empty hotplug-status once it ran.
            d.back_runtime =
                kv(&[("hotplug-status", s("connected")), ("feature-sg", s("1")), ("feature-rx-copy", s("1"))]);
            d.front = kv(&[("handle", n.devid.to_string()), ("mac", n.mac.clone()), ("trusted", s("1"))]);
            d.ro_front = kv(&[("mtu", mtu.to_string())]);
        }
        Device::Vtpm(v) => {
            d.backend_kind = Some("vtpm");
            d.back = kv(&[("handle", v.devid.to_string()), ("uuid", v.uuid.clone()), ("resume", s("False"))]);
            d.front = kv(&[("handle", v.devid.to_string())]);
        }
        Device::Usbctrl(u) => {
            d.backend_kind = u.ctrl_type.backend_kind();
            d.back = kv(&[
                ("type", s(u.ctrl_type.as_str())),
                ("usb-ver", u.version.to_string()),
                ("num-ports", u.ports.to_string()),
                ("port", String::new()),
            ]);
            for p in 1..=u.ports {
                d.back.push((format!("port/{p}"), String::new()));
            }
        }
        Device::Vdispl(v) => {
            d.backend_kind = Some("vdispl");
            d.ro_front = kv(&[("be-alloc", s(if v.be_alloc { "1" } else { "0" }))]);
            for (i, (id, w, h)) in v.connectors.iter().enumerate() {
                d.ro_front.push((format!("{i}/resolution"), format!("{w}x{h}")));
                d.ro_front.push((format!("{i}/unique-id"), id.clone()));
            }
        }
        Device::Vsnd(v) => {
            d.backend_kind = Some("vsnd");
            if let Some(l) = &v.long_name {
                d.front.push((s("long-name"), l.clone()));
            }
            if let Some(sn) = &v.short_name {
                d.front.push((s("short-name"), sn.clone()));
            }
            vsnd_params_xs("", &v.params, &mut d.front);
            for (i, pcm) in v.pcms.iter().enumerate() {
                d.front.push((format!("{i}/name"), pcm.name.clone()));
                vsnd_params_xs(&format!("{i}/"), &pcm.params, &mut d.front);
                for (j, st) in pcm.streams.iter().enumerate() {
                    d.front.push((format!("{i}/{j}/unique-id"), st.unique_id.clone()));
                    d.front.push((format!("{i}/{j}/type"), s(st.stream_type)));
                    vsnd_params_xs(&format!("{i}/{j}/"), &st.params, &mut d.front);
                }
            }
        }
        Device::Vfb(v) => {
            d.backend_kind = Some("vfb");
            d.back = kv(&[
                ("vnc", s("1")),
                ("vnclisten", v.vnc_listen.clone()),
                ("vncdisplay", v.vnc_display.to_string()),
                ("vncunused", s("1")),
                ("sdl", s("0")),
                ("opengl", s("0")),
            ]);
            if let Some(k) = &v.keymap {
                d.back.push((s("keymap"), k.clone()));
            }
        }
        Device::Vkb(v) => {
            d.backend_kind = Some("vkbd");
            if v.linux_backend {
                d.back = kv(&[("backend-type", s("linux"))]);
            }
        }
        Device::P9(p) => {
            d.backend_kind = Some("9pfs");
            d.back = kv(&[("path", p.path.clone()), ("security_model", s(p.security_model))]);
            d.front = kv(&[("tag", p.tag.clone())]);
        }
        Device::Pvcallsif(_) => d.backend_kind = Some("pvcalls"),
        Device::Channel(c) => {
            d.backend_kind = Some("console");
            let (connection, path) = match &c.connection {
                ChannelConnection::Pty => ("pty", None),
                ChannelConnection::Socket { path } => ("socket", Some(path.clone())),
            };
            d.back = kv(&[("protocol", s("vt100")), ("name", c.name.clone()), ("connection", s(connection))]);
            if let Some(p) = path {
                d.back.push((s("path"), p));
            }
            d.ro_front =
                kv(&[("name", c.name.clone()), ("limit", s("1048576")), ("type", s("ioemu")), ("output", s("pty"))]);
        }
        Device::Console => {
            d.backend_kind = Some("console");
            d.frontend_override = Some(format!("/local/domain/{}/console", g.domid));
            d.back = kv(&[("protocol", s("vt100"))]);
            let pv = g.guest_type != GuestType::Hvm;
            d.ro_front = kv(&[
                ("limit", s("1048576")),
                ("type", s(if pv { "xenconsoled" } else { "ioemu" })),
                ("output", s("pty")),
            ]);
            if pv {
                d.ro_front.extend(kv(&[("port", s("2")), ("ring-ref", s("1001"))]));
            }
        }
        Device::Usbdev(_) | Device::Pci(_) => return None,
    }
    Some(d)
}

/// The paths of a generic device (`None` for usbdev and PCI).
pub fn device_paths(g: &GuestSpec, spec: &DeviceSpec) -> Option<DevicePaths> {
    let d = xs_device(g, spec)?;
    let kind = spec.kind().xs_kind();
    Some(DevicePaths {
        frontend: d
            .frontend_override
            .clone()
            .unwrap_or_else(|| format!("/local/domain/{}/device/{kind}/{}", g.domid, d.devid)),
        backend: d
            .backend_kind
            .map(|bk| format!("/local/domain/{}/backend/{bk}/{}/{}", spec.backend_domid, g.domid, d.devid)),
        record: format!("/libxl/{}/device/{kind}/{}", g.domid, d.devid),
    })
}

/// Xenbus Connected.
const CONNECTED: &str = "4";

fn write_device(tree: &mut Tree, g: &GuestSpec, spec: &DeviceSpec) {
    let (Some(d), Some(paths)) = (xs_device(g, spec), device_paths(g, spec)) else { return };
    let (dom, be_dom) = (g.domid, spec.backend_domid);
    let dom0 = perms(0, Access::None, &[]);
    let guest_rw = perms(dom, Access::None, &[(be_dom, Access::Read)]);
    let guest_ro = perms(be_dom, Access::None, &[(dom, Access::Read)]);
    let backend_perms = perms(be_dom, Access::None, &[(dom, Access::Read)]);
    let fe = &paths.frontend;
    let rec = &paths.record;

    if let Some(be) = &paths.backend {
        put(tree, &format!("{rec}/frontend"), fe, &dom0);
        put(tree, &format!("{rec}/backend"), be, &dom0);
        // The copy of the backend keys, as written at add time: never refreshed.
        for (k, v) in [("frontend-id", dom.to_string()), ("online", "1".into()), ("state", "1".into())] {
            put(tree, &format!("{rec}/{k}"), &v, &dom0);
        }
        let fe_perms = if d.frontend_override.is_some() { &guest_ro } else { &guest_rw };
        put(tree, &format!("{fe}/backend"), be, fe_perms);
        put(tree, &format!("{fe}/backend-id"), &be_dom.to_string(), fe_perms);
        put(tree, &format!("{fe}/state"), CONNECTED, fe_perms);
        for (k, v) in &d.front {
            put(tree, &format!("{fe}/{k}"), v, &guest_rw);
        }
        for (k, v) in &d.ro_front {
            put(tree, &format!("{fe}/{k}"), v, &guest_ro);
        }
        put(tree, &format!("{be}/frontend"), fe, &backend_perms);
        put(tree, &format!("{be}/frontend-id"), &dom.to_string(), &backend_perms);
        put(tree, &format!("{be}/online"), "1", &backend_perms);
        put(tree, &format!("{be}/state"), CONNECTED, &backend_perms);
        for (k, v) in d.back.iter().chain(&d.back_runtime) {
            put(tree, &format!("{be}/{k}"), v, &backend_perms);
        }
    }
    for (k, v) in &d.back {
        put(tree, &format!("{rec}/{k}"), v, &dom0);
    }
}

/// `/local/domain/0/backend/pci/<D>/0` (§3.2), for all of a guest's PCI devices.
pub fn pci_backend_path(domid: u32) -> String {
    format!("/local/domain/0/backend/pci/{domid}/0")
}

fn pci_opts(p: &Pci) -> String {
    format!(
        "msitranslate={},power_mgmt={},permissive={},rdm_policy={}",
        p.msitranslate as u8, p.power_mgmt as u8, p.permissive as u8, p.rdm_policy
    )
}

/// Writes the `N` keys of one PCI device into the guest's PCI backend.
pub fn write_pci_slot(tree: &mut Tree, domid: u32, n: usize, p: &Pci) {
    let be = pci_backend_path(domid);
    let bp = perms(0, Access::None, &[(domid, Access::Read)]);
    put(tree, &format!("{be}/key-{n}"), &p.bdf(), &bp);
    put(tree, &format!("{be}/dev-{n}"), &p.bdf(), &bp);
    if p.vdevfn != 0 {
        put(tree, &format!("{be}/vdevfn-{n}"), &format!("{:x}", p.vdevfn), &bp);
    }
    put(tree, &format!("{be}/opts-{n}"), &pci_opts(p), &bp);
    put(tree, &format!("{be}/state-{n}"), "1", &bp);
}

fn write_pci(tree: &mut Tree, g: &GuestSpec) {
    let devs: Vec<&Pci> =
        g.devices.iter().filter_map(|d| if let Device::Pci(p) = &d.detail { Some(p) } else { None }).collect();
    if devs.is_empty() {
        return;
    }
    let dom = g.domid;
    let be = pci_backend_path(dom);
    let fe = format!("/local/domain/{dom}/device/pci/0");
    let bp = perms(0, Access::None, &[(dom, Access::Read)]);
    let fp = perms(dom, Access::None, &[(0, Access::Read)]);
    for (k, v) in [
        ("frontend", fe.clone()),
        ("frontend-id", dom.to_string()),
        ("online", "1".into()),
        ("state", CONNECTED.into()),
        ("domain", g.name.clone()),
        ("num_devs", devs.len().to_string()),
    ] {
        put(tree, &format!("{be}/{k}"), &v, &bp);
    }
    for (n, p) in devs.iter().enumerate() {
        write_pci_slot(tree, dom, n, p);
        let host = format!("/libxl/pci/{:04x}-{:02x}-{:02x}-{:01x}/domid", p.domain, p.bus, p.dev, p.func);
        put(tree, &host, &dom.to_string(), &perms(0, Access::None, &[]));
    }
    for (k, v) in [("backend", be), ("backend-id", "0".into()), ("state", CONNECTED.into())] {
        put(tree, &format!("{fe}/{k}"), &v, &fp);
    }
}

/// The node a usbdev's host busid is written to (spec §3.1, vusb).
pub fn usbdev_port_path(g: &GuestSpec, u: &Usbdev) -> Option<String> {
    let ctrl = g.devices.iter().find_map(|d| match &d.detail {
        Device::Usbctrl(c) if c.devid == u.ctrl => Some((d, c)),
        _ => None,
    })?;
    Some(match ctrl.1.ctrl_type.backend_kind() {
        // vusb_get_port_path hard-codes domain 0.
        Some(bk) => format!("/local/domain/0/backend/{bk}/{}/{}/port/{}", g.domid, u.ctrl, u.port),
        None => format!("/libxl/{}/device/vusb/{}/port/{}", g.domid, u.ctrl, u.port),
    })
}

/// The busid libxl writes for a host device (`<bus>-<port>`).
pub fn usb_busid(u: &Usbdev) -> String {
    format!("{}-{}", u.hostbus, u.hostaddr)
}

/// Writes every xenstore node of a guest: domain-level nodes (§3.3) and all devices.
pub fn write_guest(tree: &mut Tree, g: &GuestSpec) {
    let dom = g.domid;
    let dom0 = perms(0, Access::None, &[]);
    let readable = perms(0, Access::None, &[(dom, Access::Read)]);
    let guest_rw = perms(dom, Access::None, &[]);
    let ld = format!("/local/domain/{dom}");
    let vm = format!("/vm/{}", g.uuid);
    let fudge = g.memory_fudge_kb();

    put(tree, &ld, "", &readable);
    for (k, v) in [
        ("vm", vm.clone()),
        ("name", g.name.clone()),
        ("domid", dom.to_string()),
        ("memory/static-max", g.max_memkb.to_string()),
        ("memory/target", g.target_memkb.saturating_sub(fudge).to_string()),
        ("memory/videoram", g.video_memkb.to_string()),
        ("store/port", "1".into()),
        ("store/ring-ref", "1000".into()),
        ("control/platform-feature-multiprocessor-suspend", "1".into()),
        ("control/platform-feature-xs_reset_watches", "1".into()),
    ] {
        put(tree, &format!("{ld}/{k}"), &v, &readable);
    }
    for i in 0..g.max_vcpus {
        let state = if g.online_vcpus.contains(&i) { "online" } else { "offline" };
        put(tree, &format!("{ld}/cpu/{i}/availability"), state, &readable);
    }
    put(tree, &format!("{ld}/control/shutdown"), "", &guest_rw);
    put(tree, &format!("{ld}/data"), "", &guest_rw);
    put(tree, &format!("{ld}/device"), "", &readable);
    if g.is_hvm() {
        put(tree, &format!("{ld}/hvmloader/allow-memory-relocate"), "1", &readable);
        put(tree, &format!("{ld}/platform/acpi"), "1", &readable);
        put(tree, &format!("{ld}/platform/acpi_s3"), "1", &readable);
        put(tree, &format!("{ld}/platform/acpi_s4"), "1", &readable);
    }

    let ostype = match g.guest_type {
        GuestType::Hvm => "hvm",
        _ => "linux",
    };
    for (k, v) in [
        ("uuid", g.uuid.clone()),
        ("name", g.name.clone()),
        ("start_time", format!("{}.{:02}", 1_732_600_000 + dom, dom % 100)),
        ("image/ostype", ostype.to_string()),
        ("memory", (g.target_memkb / 1024).to_string()),
    ] {
        put(tree, &format!("{vm}/{k}"), &v, &readable);
    }
    if let Boot::Kernel { kernel, .. } = &g.boot {
        put(tree, &format!("{vm}/image/kernel"), kernel, &readable);
    }
    if g.is_hvm() {
        put(tree, &format!("{vm}/rtc/timeoffset"), "0", &readable);
    }

    put(tree, &format!("/libxl/{dom}/type"), g.guest_type.as_str(), &dom0);
    if let Some(v) = g.dm_version.node_value() {
        put(tree, &format!("/libxl/{dom}/dm-version"), v, &dom0);
    }
    put(tree, &format!("/libxl/{dom}/device"), "", &dom0);

    for d in &g.devices {
        write_device(tree, g, d);
    }
    write_pci(tree, g);
    for d in &g.devices {
        if let Device::Usbdev(u) = &d.detail {
            if let Some(port) = usbdev_port_path(g, u) {
                let owner = if port.starts_with("/libxl/") { 0 } else { d.backend_domid };
                put(tree, &port, &usb_busid(u), &perms(owner, Access::None, &[(dom, Access::Read)]));
            }
        }
    }
}

/// What `xen-init-dom0` writes (libxl needs the pool name to resolve the scheduler).
pub fn write_dom0(tree: &mut Tree) {
    let dom0 = perms(0, Access::None, &[]);
    put(tree, "/local/domain/0/domid", "0", &dom0);
    put(tree, "/local/domain/0/name", "Domain-0", &dom0);
    put(tree, "/local/pool/0/name", "Pool-0", &dom0);
}

/// The hypervisor's view of a guest.
pub fn hypervisor_domain(g: &GuestSpec) -> HypervisorDomain {
    let mut d = HypervisorDomain::new(g.domid, g.uuid.clone(), g.guest_type);
    // Xen's max_pages carry LIBXL_MAXMEM_CONSTANT of slack over static-max.
    d.max_memkb = g.max_memkb + 1024;
    d.tot_memkb = g.target_memkb;
    d.vcpus = g.online_vcpus.len().max(1) as u32;
    d.weight = g.weight;
    d.cap = g.cap;
    d.qemu_cpus = g.uses_qmp().then(|| g.online_vcpus.clone());
    d
}

/// Domain-0 as the hypervisor reports it.
pub fn hypervisor_dom0() -> HypervisorDomain {
    let mut d = HypervisorDomain::new(0, "00000000-0000-0000-0000-000000000000", GuestType::Pv);
    d.max_memkb = 4_194_304;
    d.tot_memkb = 4_194_304;
    d.vcpus = 4;
    d
}
