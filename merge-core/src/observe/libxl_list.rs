//! libxl 4.17's `libxl__device_list` over a snapshot: the xenstore side of the merge loop.
//!
//! This reproduces, per kind, what libxl's `from_xenstore` functions read, what they accept,
//! what makes them fail (which drops every JSON device of the kind), what they log, and where
//! libxl would crash instead. The records carry every IDL field libxl recovers, so the no-loss
//! policy can rebuild a device that exists only in xenstore from the same reading.

use super::xs::{Read, XsView};
use crate::config::Object;
use crate::cparse;
use crate::libxl_log::{self as log, LogLine};
use crate::rules::{DeviceKind, IdentityKey, KindRule, ListSource};
use crate::xenstore::{concat, Decimal, Node};
use serde_json::Value;

/// One device as libxl's `from_xenstore` builds it.
#[derive(Debug, Clone, PartialEq)]
pub struct XsDevice {
    pub kind: DeviceKind,
    pub key: IdentityKey,
    /// The record libxl read (`/libxl/<D>/device/<kind>/<n>`, or the PCI backend).
    pub record_path: String,
    /// The devid libxl used (`atoi` of the directory entry; for PCI the index).
    pub nr: i32,
    /// Recovered IDL fields, in JSON form (only the ones libxl sets from xenstore).
    pub fields: Object,
    /// Disk only: `removable` and the medium, for the disk merge rule.
    pub removable: i32,
    pub pdev_path: Option<String>,
}

impl XsDevice {
    /// The disk merge rule's test (`libxl_device_disk_merge`, spec §2.2): a removable drive
    /// whose record names no medium, so the JSON's `pdev_path` and `format` are blanked.
    pub fn is_empty_drive(&self) -> bool {
        self.removable != 0 && self.pdev_path.as_deref().is_none_or(str::is_empty)
    }
}

/// The outcome of listing one kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing {
    /// libxl got a list (possibly empty: "No <kind> from xenstore").
    Devices(Vec<XsDevice>),
    /// A record failed to parse or a read failed: libxl frees the whole list, so every JSON
    /// device of this kind is dropped. `logs` is what libxl printed on the way.
    Failed { path: String, reason: String, logs: Vec<LogLine> },
    /// libxl itself would crash here (NULL dereference, undefined behaviour).
    Crash { path: String, reason: String },
    /// The kind is not listed (no compare): its JSON passes through.
    NotListed,
}

struct Fail {
    path: String,
    reason: String,
    crash: bool,
}

type R<T> = Result<T, Fail>;

struct Ctx<'a> {
    xs: &'a XsView<'a>,
    logs: Vec<LogLine>,
    /// Reused for `<dir>/<name>` lookups, so the common read allocates nothing.
    buf: String,
    /// The direct children of the record being parsed, read in one range scan: a record has
    /// a dozen nodes and libxl probes ~60 names (the nic's colo keys), mostly absent.
    local: Option<Local<'a>>,
    /// Read only toolstack-owned nodes: skip what libxl reads from the guest's frontend.
    trusted_only: bool,
}

/// A record's direct children, by name, borrowed from the snapshot: only the names read are
/// turned into values.
struct Local<'t> {
    dir: String,
    /// Sorted by length, then bytes: most names probed differ in length from the children
    /// they meet, and the search then compares two numbers instead of two strings.
    children: Vec<(&'t str, &'t Node)>,
    /// Bit `n` is set when some child's name is `n` bytes long (63 stands for 63 or more): a
    /// name of a length no child has is absent without a search, as most of the ~60 probed are.
    lengths: u64,
}

/// [`Local::lengths`]'s bit for a name.
fn length_bit(name: &str) -> u64 {
    1 << name.len().min(63)
}

/// The order of [`Local::children`].
fn by_length(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl<'t> Local<'t> {
    fn load(xs: &XsView<'t>, dir: &str) -> Option<Local<'t>> {
        let p = crate::xenstore::Path::new(dir).ok()?;
        let prefix_len = dir.len() + 1;
        let mut children: Vec<(&'t str, &'t Node)> = xs
            .subtree(&p)
            .filter(|(k, _)| k.as_str().len() > prefix_len && !k.as_str()[prefix_len..].contains('/'))
            .map(|(k, node)| (&k.as_str()[prefix_len..], node))
            .collect();
        children.sort_unstable_by(|a, b| by_length(a.0, b.0));
        let lengths = children.iter().fold(0, |bits, (name, _)| bits | length_bit(name));
        Some(Local { dir: dir.to_string(), children, lengths })
    }

    /// `Some` when `dir` is this record: the read, answered locally. `valid` says that `name`
    /// is known to be a valid path component, so that an absent name need not be checked.
    fn read(&self, dir: &str, name: &str, valid: bool) -> Option<Read> {
        if dir != self.dir {
            return None;
        }
        let found = if self.lengths & length_bit(name) == 0 {
            None
        } else {
            self.children.binary_search_by(|(n, _)| by_length(n, name)).ok()
        };
        Some(match found {
            Some(i) => XsView::read_node(self.children[i].1),
            // A name that is not a valid path component reads as EINVAL, as from the daemon.
            None if !valid && !crate::xenstore::valid_component(name) => Read::Error(crate::libxl_log::EINVAL),
            None => Read::Absent,
        })
    }
}

impl<'a> Ctx<'a> {
    fn fail(&self, path: &str, reason: impl Into<String>) -> Fail {
        Fail { path: path.to_string(), reason: reason.into(), crash: false }
    }

    fn crash(&self, path: &str, reason: impl Into<String>) -> Fail {
        Fail { path: path.to_string(), reason: reason.into(), crash: true }
    }

    fn join(&mut self, dir: &str, name: &str) -> String {
        self.buf.clear();
        self.buf.push_str(dir);
        self.buf.push('/');
        self.buf.push_str(name);
        std::mem::take(&mut self.buf)
    }

    /// [`Local::read`] of the record being parsed, if there is one.
    fn local_read(&self, dir: &str, name: &str, valid: bool) -> Option<Read> {
        self.local.as_ref().and_then(|l| l.read(dir, name, valid))
    }

    fn read_checked_at(&mut self, dir: &str, name: &str) -> R<Option<String>> {
        self.read_checked_at_known(dir, name, false)
    }

    /// [`Ctx::read_checked_at`] for a name checked as a valid path component when compiling.
    fn read_checked_at_valid(&mut self, dir: &str, name: &'static str) -> R<Option<String>> {
        self.read_checked_at_known(dir, name, true)
    }

    fn read_checked_at_known(&mut self, dir: &str, name: &str, valid: bool) -> R<Option<String>> {
        match self.local_read(dir, name, valid) {
            Some(Read::Value(v)) => return Ok(Some(v)),
            Some(Read::Absent) => return Ok(None),
            _ => {}
        }
        let p = self.join(dir, name);
        let r = self.read_checked(&p);
        self.buf = p;
        r
    }

    fn read_plain_at(&mut self, dir: &str, name: &str) -> Option<String> {
        match self.local_read(dir, name, false) {
            Some(Read::Value(v)) => return Some(v),
            Some(_) => return None,
            None => {}
        }
        let p = self.join(dir, name);
        let r = self.read_plain(&p);
        self.buf = p;
        r
    }

    fn read_mandatory_at(&mut self, dir: &str, name: &str) -> R<String> {
        let p = self.join(dir, name);
        let r = self.read_mandatory(&p);
        self.buf = p;
        r
    }

    /// `libxl__xs_read_checked`: absent is fine (`None`), any other error fails and logs.
    fn read_checked(&mut self, path: &str) -> R<Option<String>> {
        match self.xs.read(path) {
            Read::Value(v) => Ok(Some(v)),
            Read::Absent => Ok(None),
            Read::Error(e) => {
                self.logs.push(
                    LogLine::new(log::XS_READ_CHECKED, None, format!("xenstore read failed: `{path}'")).with_errno(e),
                );
                Err(self.fail(path, format!("read failed: {e}")))
            }
        }
    }

    /// `libxl__xs_read_mandatory`: absent or unreadable fails and logs.
    fn read_mandatory(&mut self, path: &str) -> R<String> {
        match self.xs.read(path) {
            Read::Value(v) => Ok(v),
            Read::Absent | Read::Error(_) => {
                let errno = match self.xs.read(path) {
                    Read::Error(e) => e,
                    _ => log::ENOENT,
                };
                self.logs.push(
                    LogLine::new(log::XS_READ_MANDATORY, None, format!("xenstore read failed: `{path}'"))
                        .with_errno(errno),
                );
                Err(self.fail(path, "required node missing"))
            }
        }
    }

    /// Plain `xs_read`/`libxl__xs_read`: any failure is just "no value".
    fn read_plain(&self, path: &str) -> Option<String> {
        match self.xs.read(path) {
            Read::Value(v) => Some(v),
            _ => None,
        }
    }

    /// A required node whose absence libxl reports as `Missing xenstore node <dir>/<name>`.
    fn read_required(&mut self, dir: &str, name: &str, site: log::Site) -> R<String> {
        match self.read_plain_at(dir, name) {
            Some(v) => Ok(v),
            None => {
                let path = format!("{dir}/{name}");
                self.logs.push(LogLine::new(site, None, format!("Missing xenstore node {path}")));
                Err(self.fail(&path, "required node missing"))
            }
        }
    }

    /// `libxl__backendpath_parse_domid`: `sscanf(be, "/local/domain/%u%c")` with `/` after.
    fn backend_domid(&mut self, be_path: &str) -> R<u32> {
        match parse_backend_domid(be_path) {
            Some(d) => Ok(d),
            None => {
                self.logs.push(LogLine::new(
                    log::BACKEND_PATH_UNPARSEABLE,
                    None,
                    format!("internal error: backend path {be_path} unparseable!"),
                ));
                Err(self.fail(be_path, "backend path unparseable"))
            }
        }
    }
}

/// `sscanf(path, "/local/domain/%u%c", …) == 2 && c == '/'`.
pub fn parse_backend_domid(be_path: &str) -> Option<u32> {
    let rest = be_path.strip_prefix("/local/domain/")?.as_bytes();
    // %u: optional white space, optional sign, digits (strtoul semantics, 32-bit).
    let p = cparse::strtoull(rest, 10);
    if p.consumed == 0 || rest.get(p.consumed) != Some(&b'/') {
        return None;
    }
    Some(p.value as u32)
}

fn set(fields: &mut Object, key: &str, v: impl Into<Value>) {
    fields.insert(key.to_string(), v.into());
}

/// libxl's enum parsers compare case-insensitively.
fn enum_value<'v>(s: &str, values: &[&'v str]) -> Option<&'v str> {
    values.iter().copied().find(|v| v.eq_ignore_ascii_case(s))
}

/// Lists one kind the way libxl 4.17 does for domain `domid`.
pub fn libxl_list(xs: &XsView<'_>, domid: u32, rule: &KindRule) -> Listing {
    let mut ctx = Ctx { xs, logs: Vec::new(), buf: String::new(), local: None, trusted_only: false };
    let result = match rule.list {
        ListSource::NotListed => return Listing::NotListed,
        ListSource::LibxlRecords => list_records(&mut ctx, domid, rule),
        ListSource::PciBackend => list_pci(&mut ctx, domid),
        ListSource::Placeholders => list_usbdev_placeholders(&mut ctx, domid),
    };
    match result {
        Ok(devices) => Listing::Devices(devices),
        Err(f) if f.crash => Listing::Crash { path: f.path, reason: f.reason },
        Err(f) => Listing::Failed { path: f.path, reason: f.reason, logs: ctx.logs },
    }
}

fn list_records(ctx: &mut Ctx<'_>, domid: u32, rule: &KindRule) -> R<Vec<XsDevice>> {
    let d = Decimal::of(domid);
    let dir = if rule.kind == DeviceKind::Disk {
        // libxl__device_disk_get_path: vbd or virtio_disk, never both.
        let xen = concat(&["/libxl/", d.as_str(), "/device/vbd"]);
        let virtio = concat(&["/libxl/", d.as_str(), "/device/virtio_disk"]);
        let has_xen = ctx.read_checked(&xen)?.is_some() || ctx.xs.exists(&xen);
        let has_virtio = ctx.read_checked(&virtio)?.is_some() || ctx.xs.exists(&virtio);
        if has_xen && has_virtio {
            ctx.logs.push(LogLine::new(
                log::DISK_BOTH_PATHS,
                Some(domid),
                "Invalid configuration, both xen and virtio paths are present",
            ));
            return Err(ctx.fail(&virtio, "both vbd and virtio_disk records exist"));
        }
        if has_virtio {
            virtio
        } else {
            xen
        }
    } else {
        concat(&["/libxl/", d.as_str(), "/device/", rule.xs_kind])
    };
    let mut out = Vec::new();
    for entry in ctx.xs.directory(&dir) {
        // libxl reads `<dir>/<atoi(entry)>`, not `<dir>/<entry>`.
        let nr = cparse::atoi(entry.as_bytes());
        out.push(record_from_xenstore(ctx, rule, &concat(&[&dir, "/", Decimal::of_i32(nr).as_str()]), nr)?);
    }
    Ok(out)
}

/// Parses one `/libxl/<D>/device/<kind>/<nr>` record with the kind's `from_xenstore`.
pub fn parse_record(xs: &XsView<'_>, rule: &KindRule, path: &str, nr: i32) -> Result<XsDevice, String> {
    let mut ctx = Ctx { xs, logs: Vec::new(), buf: String::new(), local: None, trusted_only: false };
    record_from_xenstore(&mut ctx, rule, path, nr).map_err(|f| format!("{} (at {})", f.reason, f.path))
}

/// [`parse_record`] without the nodes libxl reads from the guest's frontend (vsnd's names
/// and parameters): what the toolstack alone vouches for.
pub fn parse_record_trusted(xs: &XsView<'_>, rule: &KindRule, path: &str, nr: i32) -> Result<XsDevice, String> {
    parse_record_trusted_or_where(xs, rule, path, nr).map_err(|(at, reason)| format!("{reason} (at {at})"))
}

/// [`parse_record_trusted`], failing with the node libxl's reader stopped at and why.
pub fn parse_record_trusted_or_where(
    xs: &XsView<'_>,
    rule: &KindRule,
    path: &str,
    nr: i32,
) -> Result<XsDevice, (String, String)> {
    let mut ctx = Ctx { xs, logs: Vec::new(), buf: String::new(), local: None, trusted_only: true };
    record_from_xenstore(&mut ctx, rule, path, nr).map_err(|f| (f.path, f.reason))
}

fn record_from_xenstore(ctx: &mut Ctx<'_>, rule: &KindRule, path: &str, nr: i32) -> R<XsDevice> {
    ctx.local = Local::load(ctx.xs, path);
    let mut dev = XsDevice {
        kind: rule.kind,
        key: IdentityKey::Devid(nr as i64),
        record_path: path.to_string(),
        nr,
        fields: Object::with_capacity(RECORD_FIELDS),
        removable: 0,
        pdev_path: None,
    };
    match rule.kind {
        DeviceKind::Disk => disk_from_xenstore(ctx, path, &mut dev)?,
        DeviceKind::Nic => nic_from_xenstore(ctx, path, &mut dev)?,
        DeviceKind::Vtpm => vtpm_from_xenstore(ctx, path, &mut dev)?,
        DeviceKind::Usbctrl => usbctrl_from_xenstore(ctx, path, &mut dev)?,
        DeviceKind::Vdispl => {
            set(&mut dev.fields, "devid", nr);
            let be = ctx.read_mandatory_at(path, "backend")?;
            let b = ctx.backend_domid(&be)?;
            set(&mut dev.fields, "backend_domid", b);
        }
        DeviceKind::Vsnd => vsnd_from_xenstore(ctx, path, &mut dev)?,
        other => return Err(ctx.fail(path, format!("{other} has no /libxl record reader"))),
    }
    Ok(dev)
}

/// Room for the fields a record usually gets (a disk's dozen, a nic's without colo keys), so
/// its map does not grow, and rehash, as it is filled.
const RECORD_FIELDS: usize = 16;

const DISK_BACKENDS: &[(&str, &str)] =
    &[("phy", "phy"), ("file", "tap"), ("qdisk", "qdisk"), ("standalone", "standalone")];

fn disk_from_xenstore(ctx: &mut Ctx<'_>, p: &str, dev: &mut XsDevice) -> R<()> {
    let be = match ctx.read_checked_at(p, "backend")? {
        Some(b) => b,
        None => {
            ctx.logs.push(LogLine::new(
                log::DISK_NO_BACKEND,
                None,
                format!("disk {p} does not exist (no backend path"),
            ));
            return Err(ctx.fail(p, "no backend node"));
        }
    };
    let b = match parse_backend_domid(&be) {
        Some(b) => b,
        None => {
            ctx.backend_domid(&be).err();
            ctx.logs.push(LogLine::new(
                log::DISK_BACKEND_DOMID,
                None,
                format!("Unable to fetch device backend domid from {be}"),
            ));
            return Err(ctx.fail(p, "backend path unparseable"));
        }
    };
    set(&mut dev.fields, "backend_domid", b);
    if let Some(params) = ctx.read_plain_at(p, "params") {
        let medium = match params.find(':') {
            Some(i) => params[i + 1..].to_string(),
            None => params,
        };
        set(&mut dev.fields, "pdev_path", medium.clone());
        dev.pdev_path = Some(medium);
    }
    if let Some(host) = ctx.read_plain_at(p, "colo-host") {
        set(&mut dev.fields, "colo_enable", "True");
        set(&mut dev.fields, "colo_host", host);
        let port = ctx.read_required(p, "colo-port", log::DISK_NO_COLO_PORT)?;
        set(&mut dev.fields, "colo_port", cparse::atoi(port.as_bytes()));
        for (node, field) in
            [("colo-export", "colo_export"), ("active-disk", "active_disk"), ("hidden-disk", "hidden_disk")]
        {
            let v = ctx.read_required(p, node, log::DISK_NO_COLO_PARAM)?;
            set(&mut dev.fields, field, v);
        }
    } else {
        set(&mut dev.fields, "colo_enable", "False");
    }
    let ty = ctx.read_required(p, "type", log::DISK_NO_TYPE)?;
    // libxl_string_to_backend: exact, case-sensitive; anything else leaves UNKNOWN (its error
    // return is ignored).
    if let Some((_, b)) = DISK_BACKENDS.iter().find(|(s, _)| *s == ty) {
        set(&mut dev.fields, "backend", *b);
    }
    let spec = match ctx.read_plain_at(p, "specification") {
        None => "xen",
        Some(s) => match enum_value(&s, &["unknown", "xen", "virtio"]) {
            Some(v) => v,
            None => {
                ctx.logs.push(LogLine::new(
                    log::DISK_BAD_SPECIFICATION,
                    None,
                    format!("Unable to parse xenstore node {p}/specification"),
                ));
                return Err(ctx.fail(p, "invalid specification"));
            }
        },
    };
    set(&mut dev.fields, "specification", spec);
    if spec == "virtio" {
        let t = ctx.read_required(p, "transport", log::DISK_NO_TRANSPORT)?;
        match enum_value(&t, &["unknown", "mmio"]) {
            Some("mmio") => set(&mut dev.fields, "transport", "mmio"),
            Some(_) => {
                ctx.logs.push(LogLine::new(
                    log::DISK_TRANSPORT_NOT_MMIO,
                    None,
                    "Only transport mmio is expected for specification virtio",
                ));
                return Err(ctx.fail(p, "transport is not mmio"));
            }
            None => {
                ctx.logs.push(LogLine::new(
                    log::DISK_BAD_TRANSPORT,
                    None,
                    format!("Unable to parse xenstore node {p}/transport"),
                ));
                return Err(ctx.fail(p, "invalid transport"));
            }
        }
        let base = ctx.read_required(p, "base", log::DISK_NO_BASE)?;
        set(&mut dev.fields, "base", cparse::strtoull(base.as_bytes(), 10).value);
        let irq = ctx.read_required(p, "irq", log::DISK_NO_IRQ)?;
        set(&mut dev.fields, "irq", cparse::strtoull(irq.as_bytes(), 10).value as u32);
    }
    let vdev = ctx.read_required(p, "dev", log::DISK_NO_DEV)?;
    set(&mut dev.fields, "vdev", vdev.clone());
    dev.key = IdentityKey::Vdev(Some(vdev));
    let removable = ctx.read_required(p, "removable", log::DISK_NO_REMOVABLE)?;
    dev.removable = cparse::atoi(removable.as_bytes());
    set(&mut dev.fields, "removable", dev.removable);
    let mode = ctx.read_required(p, "mode", log::DISK_NO_MODE)?;
    set(&mut dev.fields, "readwrite", i32::from(mode == "w"));
    let dt = ctx.read_required(p, "device-type", log::DISK_NO_DEVICE_TYPE)?;
    set(&mut dev.fields, "is_cdrom", i32::from(dt == "cdrom"));
    Ok(())
}

/// The nic string nodes libxl copies verbatim: (xenstore node, IDL field).
const NIC_STRINGS: &[(&str, &str)] = &[
    ("ip", "ip"),
    ("bridge", "bridge"),
    ("script", "script"),
    ("forwarddev", "coloft_forwarddev"),
    ("colo_sock_mirror_id", "colo_sock_mirror_id"),
    ("colo_sock_mirror_ip", "colo_sock_mirror_ip"),
    ("colo_sock_mirror_port", "colo_sock_mirror_port"),
    ("colo_sock_compare_pri_in_id", "colo_sock_compare_pri_in_id"),
    ("colo_sock_compare_pri_in_ip", "colo_sock_compare_pri_in_ip"),
    ("colo_sock_compare_pri_in_port", "colo_sock_compare_pri_in_port"),
    ("colo_sock_compare_sec_in_id", "colo_sock_compare_sec_in_id"),
    ("colo_sock_compare_sec_in_ip", "colo_sock_compare_sec_in_ip"),
    ("colo_sock_compare_sec_in_port", "colo_sock_compare_sec_in_port"),
    ("colo_sock_compare_notify_id", "colo_sock_compare_notify_id"),
    ("colo_sock_compare_notify_ip", "colo_sock_compare_notify_ip"),
    ("colo_sock_compare_notify_port", "colo_sock_compare_notify_port"),
    ("colo_sock_redirector0_id", "colo_sock_redirector0_id"),
    ("colo_sock_redirector0_ip", "colo_sock_redirector0_ip"),
    ("colo_sock_redirector0_port", "colo_sock_redirector0_port"),
    ("colo_sock_redirector1_id", "colo_sock_redirector1_id"),
    ("colo_sock_redirector1_ip", "colo_sock_redirector1_ip"),
    ("colo_sock_redirector1_port", "colo_sock_redirector1_port"),
    ("colo_sock_redirector2_id", "colo_sock_redirector2_id"),
    ("colo_sock_redirector2_ip", "colo_sock_redirector2_ip"),
    ("colo_sock_redirector2_port", "colo_sock_redirector2_port"),
    ("colo_filter_mirror_queue", "colo_filter_mirror_queue"),
    ("colo_filter_mirror_outdev", "colo_filter_mirror_outdev"),
    ("colo_filter_redirector0_queue", "colo_filter_redirector0_queue"),
    ("colo_filter_redirector0_indev", "colo_filter_redirector0_indev"),
    ("colo_filter_redirector0_outdev", "colo_filter_redirector0_outdev"),
    ("colo_filter_redirector1_queue", "colo_filter_redirector1_queue"),
    ("colo_filter_redirector1_indev", "colo_filter_redirector1_indev"),
    ("colo_filter_redirector1_outdev", "colo_filter_redirector1_outdev"),
    ("colo_compare_pri_in", "colo_compare_pri_in"),
    ("colo_compare_sec_in", "colo_compare_sec_in"),
    ("colo_compare_out", "colo_compare_out"),
    ("colo_compare_notify_dev", "colo_compare_notify_dev"),
    ("colo_sock_sec_redirector0_id", "colo_sock_sec_redirector0_id"),
    ("colo_sock_sec_redirector0_ip", "colo_sock_sec_redirector0_ip"),
    ("colo_sock_sec_redirector0_port", "colo_sock_sec_redirector0_port"),
    ("colo_sock_sec_redirector1_id", "colo_sock_sec_redirector1_id"),
    ("colo_sock_sec_redirector1_ip", "colo_sock_sec_redirector1_ip"),
    ("colo_sock_sec_redirector1_port", "colo_sock_sec_redirector1_port"),
    ("colo_filter_sec_redirector0_queue", "colo_filter_sec_redirector0_queue"),
    ("colo_filter_sec_redirector0_indev", "colo_filter_sec_redirector0_indev"),
    ("colo_filter_sec_redirector0_outdev", "colo_filter_sec_redirector0_outdev"),
    ("colo_filter_sec_redirector1_queue", "colo_filter_sec_redirector1_queue"),
    ("colo_filter_sec_redirector1_indev", "colo_filter_sec_redirector1_indev"),
    ("colo_filter_sec_redirector1_outdev", "colo_filter_sec_redirector1_outdev"),
    ("colo_filter_sec_rewriter0_queue", "colo_filter_sec_rewriter0_queue"),
    ("colo_checkpoint_host", "colo_checkpoint_host"),
    ("colo_checkpoint_port", "colo_checkpoint_port"),
];

// Every node name above is a valid path component, checked when compiling: the reader probes
// all of them for every nic, most absent, and need not check each name again each time.
const _: () = {
    let mut i = 0;
    while i < NIC_STRINGS.len() {
        assert!(crate::xenstore::valid_component(NIC_STRINGS[i].0));
        i += 1;
    }
};

/// `libxl__parse_mac`: six 2-character `strtol(…, 16)` groups separated by `:`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let b = s.as_bytes();
    let mut mac = [0u8; 6];
    let mut pos = 0;
    let mut i = 0;
    while pos < b.len() && i < 6 {
        let p = cparse::strtol(&b[pos..], 16);
        if p.consumed != 2 {
            return None;
        }
        let end = pos + 2;
        if end < b.len() && b[end] != b':' {
            return None;
        }
        mac[i] = p.value as u8;
        pos = if end < b.len() { end + 1 } else { end };
        i += 1;
    }
    if i == 6 {
        Some(mac)
    } else {
        None
    }
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(mac.len() * 3);
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            text.push(':');
        }
        text.push(HEX[usize::from(b >> 4)] as char);
        text.push(HEX[usize::from(b & 15)] as char);
    }
    text
}

fn nic_from_xenstore(ctx: &mut Ctx<'_>, p: &str, dev: &mut XsDevice) -> R<()> {
    let devid = match ctx.read_checked_at(p, "handle")? {
        Some(h) => cparse::atoi(h.as_bytes()),
        None => 0,
    };
    dev.key = IdentityKey::Devid(devid as i64);
    set(&mut dev.fields, "devid", devid);
    let Some(be) = ctx.read_checked_at(p, "backend")? else {
        ctx.logs.push(LogLine::new(log::NIC_NO_BACKEND, None, format!("nic {p} does not exist (no backend path)")));
        return Err(ctx.fail(p, "no backend node"));
    };
    let b = ctx.backend_domid(&be)?;
    set(&mut dev.fields, "backend_domid", b);
    match ctx.read_checked_at(p, "mtu")? {
        Some(m) => match cparse::strtol_whole(m.as_bytes()) {
            Some(v) => set(&mut dev.fields, "mtu", v as i32),
            None => return Err(ctx.fail(&format!("{p}/mtu"), format!("mtu {m:?} is not a number"))),
        },
        None => set(&mut dev.fields, "mtu", 1500),
    }
    if let Some(m) = ctx.read_checked_at(p, "mac")? {
        match parse_mac(&m) {
            Some(mac) => set(&mut dev.fields, "mac", format_mac(&mac)),
            None => return Err(ctx.fail(&format!("{p}/mac"), format!("mac {m:?} is malformed"))),
        }
    }
    for (node, field) in NIC_STRINGS {
        if let Some(v) = ctx.read_checked_at_valid(p, node)? {
            set(&mut dev.fields, field, v);
        }
    }
    match ctx.read_checked_at(p, "type")? {
        Some(t) => match enum_value(&t, &["unknown", "vif_ioemu", "vif"]) {
            Some(v) => set(&mut dev.fields, "nictype", v),
            None => return Err(ctx.fail(&format!("{p}/type"), format!("nic type {t:?} is invalid"))),
        },
        None => set(&mut dev.fields, "nictype", "vif"),
    }
    Ok(())
}

/// `libxl_uuid_from_string`: 36 characters, hex with dashes at 8, 13, 18, 23.
pub fn parse_uuid(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    for (i, c) in b.iter().enumerate() {
        let ok = if [8, 13, 18, 23].contains(&i) { *c == b'-' } else { c.is_ascii_hexdigit() };
        if !ok {
            return None;
        }
    }
    Some(s.to_ascii_lowercase())
}

fn vtpm_from_xenstore(ctx: &mut Ctx<'_>, p: &str, dev: &mut XsDevice) -> R<()> {
    set(&mut dev.fields, "devid", dev.nr);
    let be = ctx.read_mandatory_at(p, "backend")?;
    let b = ctx.backend_domid(&be)?;
    set(&mut dev.fields, "backend_domid", b);
    if let Some(u) = ctx.read_plain_at(&be, "uuid") {
        match parse_uuid(&u) {
            Some(uuid) => set(&mut dev.fields, "uuid", uuid),
            None => {
                ctx.logs.push(LogLine::new(
                    log::VTPM_BAD_UUID,
                    Some(b),
                    format!("{be}/uuid is a malformed uuid?? ({u}) Probably a bug!!\n"),
                ));
                return Err(ctx.fail(&format!("{be}/uuid"), "malformed uuid"));
            }
        }
    }
    Ok(())
}

fn usbctrl_from_xenstore(ctx: &mut Ctx<'_>, p: &str, dev: &mut XsDevice) -> R<()> {
    set(&mut dev.fields, "devid", dev.nr);
    let ty = ctx.read_checked_at(p, "type")?;
    let Some(ty) = ty else {
        // libxl_usbctrl_type_from_string(NULL, …): strcasecmp on NULL.
        return Err(ctx.crash(&format!("{p}/type"), "usbctrl record without `type`: libxl dereferences NULL"));
    };
    // An unknown spelling leaves the type at its init value (the return value is ignored).
    let ty = enum_value(&ty, &["auto", "pv", "devicemodel", "qusb"]);
    if let Some(t) = ty {
        set(&mut dev.fields, "type", t);
    }
    let be_path = if ty == Some("devicemodel") {
        // libxl__get_domid: the domid of the domain running libxl, from its own `domid` node.
        let own = ctx.read_plain("/local/domain/0/domid").map(|d| cparse::atoi(d.as_bytes())).unwrap_or(0);
        if own != 0 {
            set(&mut dev.fields, "backend_domid", own);
        }
        p.to_string()
    } else {
        let Some(be) = ctx.read_checked_at(p, "backend")? else {
            // Returns 0 with a partial record.
            return Ok(());
        };
        let b = ctx.backend_domid(&be)?;
        if b != 0 {
            set(&mut dev.fields, "backend_domid", b);
        }
        be
    };
    let version = ctx.read_checked_at(&be_path, "usb-ver")?.map_or(-1, |v| cparse::atoi(v.as_bytes()));
    let ports = ctx.read_checked_at(&be_path, "num-ports")?.map_or(-1, |v| cparse::atoi(v.as_bytes()));
    set(&mut dev.fields, "version", version);
    set(&mut dev.fields, "ports", ports);
    Ok(())
}

const PCM_FORMATS: &[&str] = &[
    "s8",
    "u8",
    "s16_le",
    "s16_be",
    "u16_le",
    "u16_be",
    "s24_le",
    "s24_be",
    "u24_le",
    "u24_be",
    "s32_le",
    "s32_be",
    "u32_le",
    "u32_be",
    "a_law",
    "mu_law",
    "f32_le",
    "f32_be",
    "f64_le",
    "f64_be",
    "iec958_subframe_le",
    "iec958_subframe_be",
    "imu_law",
    "ima_adpcm",
    "mpeg",
    "gsm",
];

/// `libxl__params_from_xenstore` on `path`.
fn vsnd_params(ctx: &mut Ctx<'_>, path: &str) -> R<Object> {
    let mut params = Object::new();
    if let Some(rates) = ctx.read_checked_at(path, "sample-rates")? {
        let v: Vec<Value> = rates
            .split([' ', ','])
            .filter(|t| !t.is_empty())
            .map(|t| Value::from(cparse::strtoull(t.as_bytes(), 0).value as u32))
            .collect();
        if !v.is_empty() {
            params.insert("sample_rates".into(), Value::Array(v));
        }
    }
    if let Some(formats) = ctx.read_checked_at(path, "sample-formats")? {
        let mut v = Vec::new();
        for t in formats.split([' ', ',']).filter(|t| !t.is_empty()) {
            match enum_value(t, PCM_FORMATS) {
                Some(f) => v.push(Value::from(f)),
                None => return Err(ctx.fail(&format!("{path}/sample-formats"), format!("unknown sample format {t:?}"))),
            }
        }
        if !v.is_empty() {
            params.insert("sample_formats".into(), Value::Array(v));
        }
    }
    for (node, field) in
        [("channels-min", "channels_min"), ("channels-max", "channels_max"), ("buffer-size", "buffer_size")]
    {
        if let Some(x) = ctx.read_checked_at(path, node)? {
            let n = cparse::strtoull(x.as_bytes(), 0).value as u32;
            if n != 0 {
                params.insert(field.into(), Value::from(n));
            }
        }
    }
    Ok(params)
}

fn vsnd_from_xenstore(ctx: &mut Ctx<'_>, p: &str, dev: &mut XsDevice) -> R<()> {
    set(&mut dev.fields, "devid", dev.nr);
    let be = ctx.read_mandatory_at(p, "backend")?;
    let b = ctx.backend_domid(&be)?;
    set(&mut dev.fields, "backend_domid", b);
    if ctx.trusted_only {
        // Everything else libxl reads here comes from the guest-writable frontend.
        return Ok(());
    }
    let fe = ctx.read_mandatory_at(p, "frontend")?;
    if let Some(s) = ctx.read_plain_at(&fe, "short-name") {
        set(&mut dev.fields, "short_name", s);
    }
    if let Some(s) = ctx.read_plain_at(&fe, "long-name") {
        set(&mut dev.fields, "long_name", s);
    }
    let params = vsnd_params(ctx, &fe)?;
    set(&mut dev.fields, "params", Value::Object(params));
    let mut pcms = Vec::new();
    loop {
        let pcm_path = format!("{fe}/{}", pcms.len());
        if ctx.read_checked(&pcm_path)?.is_none() {
            break;
        }
        let mut pcm = Object::new();
        if let Some(n) = ctx.read_plain_at(&pcm_path, "name") {
            pcm.insert("name".into(), n.into());
        }
        pcm.insert("params".into(), Value::Object(vsnd_params(ctx, &pcm_path)?));
        let mut streams = Vec::new();
        loop {
            let sp = format!("{pcm_path}/{}", streams.len());
            if ctx.read_checked(&sp)?.is_none() {
                break;
            }
            let mut s = Object::new();
            if let Some(u) = ctx.read_plain_at(&sp, "unique-id") {
                s.insert("unique_id".into(), u.into());
            }
            if let Some(t) = ctx.read_checked_at(&sp, "type")? {
                match enum_value(&t, &["p", "c"]) {
                    Some(v) => {
                        s.insert("type".into(), v.into());
                    }
                    None => return Err(ctx.fail(&format!("{sp}/type"), format!("unknown stream type {t:?}"))),
                }
            }
            s.insert("params".into(), Value::Object(vsnd_params(ctx, &sp)?));
            streams.push(Value::Object(s));
        }
        if !streams.is_empty() {
            pcm.insert("streams".into(), Value::Array(streams));
        }
        pcms.push(Value::Object(pcm));
    }
    if !pcms.is_empty() {
        set(&mut dev.fields, "pcms", Value::Array(pcms));
    }
    Ok(())
}

fn list_pci(ctx: &mut Ctx<'_>, domid: u32) -> R<Vec<XsDevice>> {
    list_pci_at(ctx, &concat(&["/local/domain/0/backend/pci/", Decimal::of(domid).as_str(), "/0"]))
}

/// The PCI devices of the backend at `be` (any backend domain, any devid), read as libxl
/// reads `/local/domain/0/backend/pci/<D>/0`.
pub fn pci_devices_at(xs: &XsView<'_>, be: &str) -> Result<Vec<XsDevice>, String> {
    let mut ctx = Ctx { xs, logs: Vec::new(), buf: String::new(), local: None, trusted_only: false };
    list_pci_at(&mut ctx, be).map_err(|f| format!("{} (at {})", f.reason, f.path))
}

fn list_pci_at(ctx: &mut Ctx<'_>, be: &str) -> R<Vec<XsDevice>> {
    let be = be.to_string();
    let Some(num) = ctx.read_plain_at(&be, "num_devs") else {
        return Err(ctx.fail(&format!("{be}/num_devs"), "no num_devs node"));
    };
    let n = cparse::atoi(num.as_bytes()) as u32;
    let mut out = Vec::new();
    for nr in 0..n {
        let Some(s) = ctx.read_plain(&format!("{be}/dev-{nr}")) else {
            // sscanf(NULL, …): libxl crashes (also for a num_devs larger than the records).
            return Err(ctx.crash(
                &format!("{be}/dev-{nr}"),
                "num_devs names a dev-N node that is missing: libxl passes NULL to sscanf",
            ));
        };
        let [domain, bus, devn, func] = cparse::scan_pci_bdf(s.as_bytes());
        let mut fields = Object::new();
        set(&mut fields, "func", func as u8);
        set(&mut fields, "dev", devn as u8);
        set(&mut fields, "bus", bus as u8);
        set(&mut fields, "domain", domain as i32);
        if let Some(v) = ctx.read_plain(&format!("{be}/vdevfn-{nr}")) {
            set(&mut fields, "vdevfn", cparse::strtol(v.as_bytes(), 16).value as u32);
        }
        if let Some(opts) = ctx.read_plain(&format!("{be}/opts-{nr}")) {
            pci_opts(ctx, &format!("{be}/opts-{nr}"), &opts, &mut fields)?;
        }
        if let Some(name) = ctx.read_plain(&format!("{be}/name-{nr}")) {
            set(&mut fields, "name", name);
        }
        out.push(XsDevice {
            kind: DeviceKind::Pci,
            key: IdentityKey::Bdf { domain: domain as i64, bus: bus as i64, dev: devn as i64, func: func as i64 },
            record_path: be.clone(),
            nr: nr as i32,
            fields,
            removable: 0,
            pdev_path: None,
        });
    }
    Ok(out)
}

/// The `strtok_r(",=")` walk over `opts-N`. libxl dereferences the token without a NULL check,
/// so an empty or delimiter-only value, or a key with no value after it, crashes it.
fn pci_opts(ctx: &Ctx<'_>, path: &str, opts: &str, fields: &mut Object) -> R<()> {
    let mut toks = opts.split([',', '=']).filter(|t| !t.is_empty());
    let mut tok = toks.next();
    if tok.is_none() {
        return Err(ctx.crash(path, "empty opts: libxl dereferences a NULL token"));
    }
    while let Some(t) = tok {
        let key = t.trim_start_matches(' ');
        let field = match key {
            "msitranslate" | "power_mgmt" | "permissive" | "rdm_policy" => key,
            _ => {
                tok = toks.next();
                continue;
            }
        };
        let Some(v) = toks.next() else {
            return Err(ctx.crash(path, format!("`{field}` without a value: libxl dereferences a NULL token")));
        };
        if field == "rdm_policy" {
            if let Some(p) = enum_value(v, &["invalid", "strict", "relaxed"]) {
                set(fields, "rdm_policy", p);
            }
        } else {
            let n = cparse::atoi(v.as_bytes());
            fields.insert(field.to_string(), Value::Bool(n != 0));
        }
        tok = toks.next();
    }
    Ok(())
}

fn list_usbdev_placeholders(ctx: &mut Ctx<'_>, domid: u32) -> R<Vec<XsDevice>> {
    let dir = format!("/libxl/{domid}/device/vusb");
    Ok(ctx
        .xs
        .directory(&dir)
        .into_iter()
        .map(|entry| XsDevice {
            kind: DeviceKind::Usbdev,
            key: IdentityKey::CtrlPort { ctrl: -1, port: 0 },
            record_path: format!("{dir}/{entry}"),
            nr: cparse::atoi(entry.as_bytes()),
            fields: Object::new(),
            removable: 0,
            pdev_path: None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_like_libxl() {
        assert_eq!(parse_mac("00:16:3e:11:22:33"), Some([0, 0x16, 0x3e, 0x11, 0x22, 0x33]));
        assert_eq!(parse_mac("00:16:3e:11:22"), None);
        assert_eq!(parse_mac("0:16:3e:11:22:33"), None);
        assert_eq!(parse_mac("00-16-3e-11-22-33"), None);
        assert_eq!(parse_mac("00:16:3e:11:22:33:44"), Some([0, 0x16, 0x3e, 0x11, 0x22, 0x33]));
    }

    #[test]
    fn backend_domid_like_sscanf() {
        assert_eq!(parse_backend_domid("/local/domain/0/backend/vbd/1/51712"), Some(0));
        assert_eq!(parse_backend_domid("/local/domain/12/backend"), Some(12));
        assert_eq!(parse_backend_domid("/local/domain/x/backend"), None);
        assert_eq!(parse_backend_domid("/local/domain/3"), None);
    }
}
