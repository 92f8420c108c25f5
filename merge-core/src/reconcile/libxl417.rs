//! `libxl_retrieve_domain_configuration` of libxl 4.17.7, step by step (spec §1).

use super::{Inputs, JsonReplica, Outcome, Policy, RetrieveError};
use crate::config::{DomainConfig, DomainType};
use crate::cparse;
use crate::decision::{Action, Class, Decision, Evidence, Provenance, Subject};
use crate::hypervisor::{HypervisorDomain, Scheduler};
use crate::libxl_log::{self as log, LogLine};
use crate::observe::libxl_list::{libxl_list, Listing, XsDevice};
use crate::observe::xs::{Read, XsView};
use crate::plan::Plan;
use crate::rules::{json_identity, DeviceKind, IdentityRule, KindRule, MergeRule};
use crate::xenstore::leading_components;
use crate::xenstore::{concat, Decimal};
use serde_json::Value;

/// `LIBXL_MEMKB_DEFAULT`: MemKB's init value, omitted on output.
pub const MEMKB_DEFAULT: u64 = u64::MAX;
/// `LIBXL_MAXMEM_CONSTANT`.
const MAXMEM_CONSTANT: u64 = 1024;

/// The running device model, as `libxl__device_model_version_running` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmVersion {
    Unknown,
    QemuXenTraditional,
    QemuXen,
    /// An unparsable `dm-version` (-1).
    Invalid,
}

pub fn dm_version_running(xs: &XsView<'_>, domid: u32, logs: &mut Vec<LogLine>) -> (DmVersion, Evidence) {
    let path = concat(&["/libxl/", Decimal::of(domid).as_str(), "/dm-version"]);
    let v = xs.value(&path);
    let ev = Evidence::new(path.clone(), v.clone());
    let Some(v) = v else { return (DmVersion::QemuXenTraditional, ev) };
    let version = match v.to_ascii_lowercase().as_str() {
        "unknown" => DmVersion::Unknown,
        "qemu_xen_traditional" => DmVersion::QemuXenTraditional,
        "qemu_xen" => DmVersion::QemuXen,
        _ => {
            logs.push(LogLine::new(
                log::DM_VERSION_WRONG,
                Some(domid),
                format!("fatal: {path} contain a wrong value ({v})"),
            ));
            DmVersion::Invalid
        }
    };
    (version, ev)
}

/// The state of one retrieve while it runs.
struct Run<'a> {
    inputs: Inputs<'a>,
    xs: XsView<'a>,
    logs: Vec<LogLine>,
    decisions: Vec<Decision>,
}

enum Stop {
    Failed(String),
    Crash { path: String, reason: String },
}

impl Run<'_> {
    fn fail(&mut self, site: log::Site, text: &str) -> Stop {
        self.logs.push(LogLine::new(site, Some(self.inputs.domid), text));
        Stop::Failed(text.to_string())
    }
}

/// The children of `/local/domain/<D>` that libxl 4.17's retrieve reads for domain D
/// (`domid` only of dom0, for PCI).
pub const HOME_PARTS_READ: &[&str] = &["name", "memory", "cpu", "domid"];

/// Whether libxl 4.17's retrieve (this policy) can read the node at `path`, for any domain:
/// all of `/libxl`, the [`HOME_PARTS_READ`] of every `/local/domain/<D>`, dom0's pci backends
/// (libxl reads PCI devices there) and `/local/domain/0/domid`, plus what three kinds' readers
/// reach through their record's pointers where libxl itself writes them: vtpm and vusb
/// backends (`uuid`; `usb-ver`, `num-ports`) in any domain, and vsnd frontends (the card's
/// names and parameters). A snapshot holding these nodes and the subtrees of
/// [`pointers_outside`] gives the same outcome as the whole store (a law in
/// `tests/libxl417_reads.rs`), so a live client need not fetch the rest.
pub fn reads(path: &str) -> bool {
    let bytes = path.as_bytes();
    // Most of a host's nodes, by a prefix compared whole: all of `/libxl/…` (a third of a
    // host's nodes) is read, and `/local/domain/…` is decided below.
    if bytes.starts_with(b"/libxl/") {
        return true;
    }
    if !bytes.starts_with(b"/local/domain/") {
        // By the first name, without splitting the rest: nothing under any other top-level
        // name (`/vm/<uuid>/…`, `/tool`) than `/libxl` and `/local` is read.
        if let Some(rest) = path.strip_prefix('/') {
            // A byte loop: the first name is a few bytes, and a char search costs more to set up.
            match &rest[..rest.bytes().position(|b| b == b'/').unwrap_or(rest.len())] {
                "libxl" => return true,
                "local" | "" => {}
                _ => return false,
            }
        }
    }
    reads_home_node(path).unwrap_or_else(|| reads_components(leading_components(path)))
}

/// [`reads`] for a node below a domain's home (`/local/domain/<domid>/<part>…`), most of a
/// host's nodes, decided from the part (and for `device` and `backend`, the kind) in one scan
/// of the bytes, without splitting the path. Of frontends and backends libxl reads only vsnd
/// frontends, vtpm and vusb backends, and dom0's pci backends; of the other parts, the
/// [`HOME_PARTS_READ`]. `None` for anything else, or an empty component, which
/// [`reads_components`] decides.
fn reads_home_node(path: &str) -> Option<bool> {
    let rest = path.strip_prefix("/local/domain/")?.as_bytes();
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let tail = rest[digits..].strip_prefix(b"/")?;
    let component = |bytes: &[u8]| -> usize { bytes.iter().position(|&b| b == b'/').unwrap_or(bytes.len()) };
    let part = &tail[..component(tail)];
    let kind = || {
        let after = tail.get(part.len() + 1..)?;
        Some(&after[..component(after)]).filter(|k| !k.is_empty())
    };
    match part {
        b"" => None,
        b"device" => Some(kind()? == b"vsnd"),
        b"backend" => {
            let kind = kind()?;
            Some(matches!(kind, b"vtpm" | b"vusb") || kind == b"pci" && &rest[..digits] == b"0")
        }
        _ => Some(HOME_PARTS_READ.iter().any(|p| p.as_bytes() == part)),
    }
}

/// [`reads`], given the path's first six components ([`leading_components`]).
pub fn reads_components(components: [&str; 6]) -> bool {
    let is_domid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match components {
        ["libxl", ..] => true,
        ["local", "domain", "0", "backend", "pci", _] => true,
        ["local", "domain", b, "backend", "vtpm" | "vusb", _] => is_domid(b),
        ["local", "domain", d, "", _, _] => is_domid(d),
        ["local", "domain", d, "device", "vsnd", _] => is_domid(d),
        ["local", "domain", d, part, _, _] => is_domid(d) && HOME_PARTS_READ.contains(&part),
        _ => false,
    }
}

/// The record pointers libxl 4.17 follows (a vtpm's or vusb's `backend`, a vsnd's `frontend`)
/// whose targets [`reads`] does not cover: only a damaged record points elsewhere. A client
/// that fetched only [`reads`] fetches these subtrees too.
pub fn pointers_outside(tree: &crate::xenstore::Tree) -> Vec<String> {
    let mut out = Vec::new();
    // Every pointer libxl follows lives in a `/libxl` record: one range scan.
    for (path, node) in tree.subtree(&crate::xenstore::Path::new("/libxl").expect("a valid path")) {
        // Most records' nodes are neither: skip them without splitting the path.
        if !path.as_str().ends_with("/backend") && !path.as_str().ends_with("/frontend") {
            continue;
        }
        let followed = matches!(
            leading_components::<7>(path.as_str()),
            ["libxl", _, "device", "vtpm" | "vusb", _, "backend", ""]
                | ["libxl", _, "device", "vsnd", _, "frontend", ""]
        );
        if !followed {
            continue;
        }
        // As C reads it: up to the first NUL.
        let target = String::from_utf8_lossy(node.value.split(|b| *b == 0).next().unwrap_or(&[])).into_owned();
        if !reads(&target) && crate::xenstore::Path::new(&target).is_ok_and(|p| p.is_absolute()) {
            out.push(target);
        }
    }
    out.sort();
    out.dedup();
    out
}

pub fn retrieve(inputs: Inputs<'_>) -> Outcome {
    // Room for a domain's usual decisions (six fields, a few devices): a decision is large, and
    // a list grown one step at a time copied them again at each step.
    let decisions = Vec::with_capacity(16);
    let mut run = Run { inputs, xs: XsView::for_domain(inputs.tree, inputs.domid), logs: Vec::new(), decisions };
    let config = match run_steps(&mut run) {
        Ok(c) => Ok(c),
        Err(Stop::Failed(reason)) => {
            run.decisions.push(Decision::new(
                Subject::Domain,
                "libxl417.retrieve.failed",
                Class::RetrieveFailed,
                Action::Failed,
                reason.clone(),
            ));
            Err(RetrieveError::Failed { reason })
        }
        Err(Stop::Crash { path, reason }) => {
            run.decisions.push(Decision::new(
                Subject::Domain,
                "libxl417.retrieve.crash",
                Class::RetrieveFailed,
                Action::Failed,
                format!("libxl would crash: {reason}"),
            ));
            Err(RetrieveError::LibxlWouldCrash { path, reason })
        }
    };
    Outcome {
        domid: inputs.domid,
        policy: Policy::Libxl417,
        config,
        decisions: run.decisions,
        logs: run.logs,
        plan: Plan::default(),
    }
}

/// What libxl's own parser makes of the JSON (fields it cannot read keep their init values).
fn libxl_parse(cfg: &DomainConfig) -> Result<DomainConfig, Stop> {
    if cfg.build_type_keys() > 1 {
        return Err(Stop::Crash {
            path: "b_info".into(),
            reason: "two `type.*` keys in b_info: libxl's parser asserts".into(),
        });
    }
    crate::config::normalize_libxl_417(cfg).map_err(|e| Stop::Failed(format!("libxl cannot parse the JSON: {e}")))
}

fn run_steps(run: &mut Run<'_>) -> Result<DomainConfig, Stop> {
    let domid = run.inputs.domid;
    let Some(hv) = run.inputs.host.domain(domid).cloned() else {
        return Err(Stop::Failed(format!("domain {domid} does not exist")));
    };
    // Step 3: read the JSON. Any failure is "Fail to get domain configuration".
    let parsed = match run.inputs.json {
        JsonReplica::Present(c) => libxl_parse(c),
        JsonReplica::Missing => Err(Stop::Failed("no userdata file".into())),
        JsonReplica::Empty => Err(Stop::Failed("empty userdata file".into())),
        JsonReplica::Invalid(e) => Err(Stop::Failed(format!("unparsable userdata: {e}"))),
    };
    if matches!(run.inputs.json, JsonReplica::Empty) {
        let file = format!("/var/lib/xen/userdata-d.{domid}.{}.libxl-json", hv.uuid);
        run.logs.push(LogLine::new(log::USERDATA_EMPTY, None, format!("userdata file {file} is empty")));
    }
    let mut cfg = match parsed {
        Ok(c) => c,
        Err(Stop::Failed(_)) => return Err(run.fail(log::GET_CONFIG_FAILED, "Fail to get domain configuration")),
        Err(crash) => return Err(crash),
    };
    let json = JsonAsParsed::of(&cfg);
    let build_type = json.build_type;

    // Step 5: the QMP query, for HVM with qemu-xen only.
    let mut qemu_cpus: Option<Vec<u32>> = None;
    let mut dm_evidence = None;
    if build_type == Some(DomainType::Hvm) {
        let (version, ev) = dm_version_running(&run.xs, domid, &mut run.logs);
        dm_evidence = Some((version, ev));
        if version == DmVersion::QemuXen {
            match &hv.qemu_cpus {
                Some(cpus) => qemu_cpus = Some(cpus.clone()),
                None => {
                    run.logs.push(
                        LogLine::new(
                            log::QMP_CONNECT_FAILED,
                            Some(domid),
                            format!("Failed to connect to QMP socket /var/run/xen/qmp-libxl-{domid}"),
                        )
                        .with_errno(log::ENOENT),
                    );
                    return Err(Stop::Failed("QEMU did not answer query-cpus-fast".into()));
                }
            }
        }
    }

    // Step 7: the name. A missing node "fails" with rc 0: the raw JSON is the result.
    let name_path = concat(&["/local/domain/", Decimal::of(domid).as_str(), "/name"]);
    let Some(name) = run.xs.value(&name_path) else {
        run.logs.push(LogLine::new(log::NAME_FAILED, Some(domid), "Fail to get domain name"));
        run.decisions.push(
            Decision::new(
                Subject::Field("c_info.name"),
                "libxl417.name.missing-returns-raw-json",
                Class::RetrieveFailed,
                Action::Kept,
                "the name node is missing: libxl returns the unmerged JSON and reports success",
            )
            .with_evidence(vec![Evidence::new(name_path, None)]),
        );
        return Ok(cfg);
    };
    overwrite(
        run,
        &mut cfg,
        "c_info.name",
        Some(Value::from(name.clone())),
        Provenance::Xenstore(name_path.clone()),
        vec![Evidence::new(name_path, Some(name))],
    );

    // Step 8: the uuid, from the hypervisor's domain handle.
    let uuid = crate::observe::libxl_list::parse_uuid(&hv.uuid).filter(|u| u != "00000000-0000-0000-0000-000000000000");
    overwrite(run, &mut cfg, "c_info.uuid", uuid.map(Value::from), Provenance::Hypervisor("domain handle"), vec![]);

    // Step 9: avail_vcpus.
    avail_vcpus(run, &mut cfg, &json, dm_evidence, qemu_cpus)?;

    // Step 10: memory.
    memory(run, &mut cfg, &json)?;

    // Step 11: scheduler parameters.
    sched_params(run, &mut cfg, &hv)?;

    // Step 12: devices.
    for rule in DeviceKind::device_type_tbl() {
        if rule.identity == IdentityRule::None {
            continue;
        }
        merge_kind(run, &mut cfg, rule)?;
    }
    Ok(cfg)
}

fn overwrite(
    run: &mut Run<'_>,
    cfg: &mut DomainConfig,
    field: &'static str,
    value: Option<Value>,
    provenance: Provenance,
    evidence: Vec<Evidence>,
) {
    run.decisions.push(super::overwrite_field(cfg, "libxl417.field.overwrite", field, value, provenance, evidence));
}

/// What later steps read of the JSON as libxl parsed it, taken before any step overwrites a
/// field (copying the whole configuration for five values was a tenth of the reconcile).
struct JsonAsParsed {
    build_type: Option<DomainType>,
    max_vcpus: Option<i64>,
    video_memkb: Option<u64>,
    max_memkb: Option<u64>,
    target_memkb: Option<u64>,
}

impl JsonAsParsed {
    fn of(cfg: &DomainConfig) -> JsonAsParsed {
        JsonAsParsed {
            build_type: cfg.build_type(),
            max_vcpus: cfg.b_info_i64("max_vcpus"),
            video_memkb: cfg.b_info_u64("video_memkb"),
            max_memkb: cfg.b_info_u64("max_memkb"),
            target_memkb: cfg.b_info_u64("target_memkb"),
        }
    }
}

fn avail_vcpus(
    run: &mut Run<'_>,
    cfg: &mut DomainConfig,
    json: &JsonAsParsed,
    dm: Option<(DmVersion, Evidence)>,
    qemu_cpus: Option<Vec<u32>>,
) -> Result<(), Stop> {
    let domid = run.inputs.domid;
    let max_vcpus = json.max_vcpus.filter(|v| i32::try_from(*v).is_ok()).unwrap_or(0) as i32;
    if max_vcpus < 0 {
        return Err(Stop::Crash {
            path: "b_info.max_vcpus".into(),
            reason: format!("max_vcpus {max_vcpus} becomes a huge unsigned bitmap size"),
        });
    }
    // libxl_bitmap_alloc sizes the map in whole bytes; bits beyond are dropped.
    let capacity = (max_vcpus as u32).div_ceil(8) * 8;
    let cpu_dir = concat(&["/local/domain/", Decimal::of(domid).as_str(), "/cpu"]);
    let from_xenstore = |run: &mut Run<'_>| -> Result<(Vec<u32>, Vec<Evidence>), Stop> {
        let mut set = Vec::new();
        let mut ev = Vec::new();
        for i in 0..max_vcpus as u32 {
            let path = concat(&[&cpu_dir, "/", Decimal::of(i).as_str(), "/availability"]);
            match run.xs.read(&path) {
                Read::Value(v) => {
                    if v == "online" {
                        set.push(i);
                    }
                    ev.push(Evidence::new(path, Some(v)));
                }
                Read::Absent => ev.push(Evidence::new(path, None)),
                Read::Error(e) => {
                    run.logs.push(
                        LogLine::new(log::XS_READ_CHECKED, None, format!("xenstore read failed: `{path}'"))
                            .with_errno(e),
                    );
                    return Err(run.fail(log::CPU_MAP_FAILED, "Fail to update available cpu map"));
                }
            }
        }
        Ok((set, ev))
    };
    let (cpus, evidence, provenance) = match json.build_type {
        Some(DomainType::Hvm) => {
            let (version, dm_ev) = dm.expect("HVM reads dm-version first");
            match version {
                DmVersion::Unknown => {
                    return Err(Stop::Crash { path: dm_ev.path, reason: "dm-version `unknown`: libxl asserts".into() })
                }
                DmVersion::Invalid => {
                    return Err(Stop::Crash { path: dm_ev.path, reason: "unparsable dm-version: libxl aborts".into() })
                }
                DmVersion::QemuXen => {
                    let mut v: Vec<u32> = qemu_cpus.unwrap_or_default().into_iter().filter(|c| *c < capacity).collect();
                    v.sort_unstable();
                    v.dedup();
                    (v, vec![dm_ev], Provenance::Qmp)
                }
                DmVersion::QemuXenTraditional => {
                    let (v, mut ev) = from_xenstore(run)?;
                    ev.insert(0, dm_ev);
                    (v, ev, Provenance::Xenstore(cpu_dir))
                }
            }
        }
        Some(DomainType::Pv) | Some(DomainType::Pvh) => {
            let (v, ev) = from_xenstore(run)?;
            (v, ev, Provenance::Xenstore(cpu_dir))
        }
        _ => {
            return Err(Stop::Crash {
                path: "b_info".into(),
                reason: "no `type.*` key in b_info: libxl aborts".into(),
            });
        }
    };
    let value = if cpus.is_empty() { None } else { Some(Value::Array(cpus.into_iter().map(Value::from).collect())) };
    overwrite(run, cfg, "b_info.avail_vcpus", value, provenance, evidence);
    Ok(())
}

fn memory(run: &mut Run<'_>, cfg: &mut DomainConfig, json: &JsonAsParsed) -> Result<(), Stop> {
    let domid = run.inputs.domid;
    let dompath = concat(&["/local/domain/", Decimal::of(domid).as_str()]);
    let target_path = concat(&[&dompath, "/memory/target"]);
    let max_path = concat(&[&dompath, "/memory/static-max"]);
    let errno_of = |r: &Read| match r {
        Read::Error(e) => *e,
        _ => log::ENOENT,
    };
    let t = run.xs.read(&target_path);
    let m = run.xs.read(&max_path);
    let (target, max) = match (&t, &m) {
        (Read::Value(t), Read::Value(m)) => (t.clone(), m.clone()),
        (Read::Value(_), _) => {
            run.logs.push(
                LogLine::new(
                    log::MEM_NO_STATIC_MAX,
                    Some(domid),
                    format!("Cannot get target memory info from {dompath}/memory/static-max"),
                )
                .with_errno(errno_of(&m)),
            );
            return Err(run.fail(log::MEMORY_FAILED, "Fail to get memory target"));
        }
        _ => {
            run.logs.push(
                LogLine::new(
                    log::MEM_NO_TARGET,
                    Some(domid),
                    format!("Cannot get target memory info from {dompath}/memory/target"),
                )
                .with_errno(errno_of(&t)),
            );
            return Err(run.fail(log::MEMORY_FAILED, "Fail to get memory target"));
        }
    };
    let Some(target_kb) = cparse::strtoull_whole(target.as_bytes()) else {
        run.logs.push(
            LogLine::new(
                log::MEM_BAD_TARGET,
                Some(domid),
                format!("Invalid memory target {target} from {dompath}/memory/target\n"),
            )
            .with_errno("Success"),
        );
        return Err(run.fail(log::MEMORY_FAILED, "Fail to get memory target"));
    };
    let Some(max_kb) = cparse::strtoull_whole(max.as_bytes()) else {
        run.logs.push(
            LogLine::new(
                log::MEM_BAD_STATIC_MAX,
                Some(domid),
                format!("Invalid memory target {max} from {dompath}/memory/static-max\n"),
            )
            .with_errno("Success"),
        );
        return Err(run.fail(log::MEMORY_FAILED, "Fail to get memory target"));
    };
    // The fudge uses the JSON's values, before max_memkb is overwritten; unsigned 64-bit.
    let video = json.video_memkb.unwrap_or(MEMKB_DEFAULT);
    let json_max = json.max_memkb.unwrap_or(MEMKB_DEFAULT);
    let json_target = json.target_memkb.unwrap_or(MEMKB_DEFAULT);
    let hvm_term = if json.build_type == Some(DomainType::Hvm) && json_max > json_target { MAXMEM_CONSTANT } else { 0 };
    let fudge = video.wrapping_add(hvm_term);
    let new_target = target_kb.wrapping_add(fudge);
    let memkb = |v: u64| if v == MEMKB_DEFAULT { None } else { Some(Value::from(v)) };
    let mut ev_target = vec![Evidence::new(target_path.clone(), Some(target))];
    if json.video_memkb.is_none() {
        ev_target.push(Evidence::new("json:b_info.video_memkb (absent: libxl adds 2^64-1)", None));
    }
    overwrite(run, cfg, "b_info.target_memkb", memkb(new_target), Provenance::Xenstore(target_path), ev_target);
    overwrite(
        run,
        cfg,
        "b_info.max_memkb",
        memkb(max_kb),
        Provenance::Xenstore(max_path.clone()),
        vec![Evidence::new(max_path, Some(max))],
    );
    Ok(())
}

fn sched_params(run: &mut Run<'_>, cfg: &mut DomainConfig, hv: &HypervisorDomain) -> Result<(), Stop> {
    let domid = run.inputs.domid;
    let Some(sched) = run.inputs.host.pool_schedulers.get(&hv.cpupool).copied() else {
        run.logs.push(LogLine::new(log::SCHED_UNKNOWN, Some(domid), "Unknown scheduler"));
        return Err(run.fail(log::SCHED_FAILED, "Fail to get scheduler parameters"));
    };
    let mut obj = serde_json::Map::new();
    obj.insert("sched".into(), sched.as_str().into());
    let mut put = |k: &str, v: i64| {
        if v != -1 {
            obj.insert(k.into(), v.into());
        }
    };
    match sched {
        Scheduler::Credit | Scheduler::Credit2 => {
            put("weight", hv.weight);
            put("cap", hv.cap);
        }
        Scheduler::Rtds => {
            put("period", hv.rtds_period);
            put("budget", hv.rtds_budget);
        }
        Scheduler::Null => {}
        Scheduler::Sedf => {
            run.logs.push(LogLine::new(log::SCHED_SEDF, Some(domid), "SEDF scheduler no longer available"));
            return Err(run.fail(log::SCHED_FAILED, "Fail to get scheduler parameters"));
        }
        Scheduler::Arinc653 => {
            run.logs.push(LogLine::new(log::SCHED_UNKNOWN, Some(domid), "Unknown scheduler"));
            return Err(run.fail(log::SCHED_FAILED, "Fail to get scheduler parameters"));
        }
    }
    overwrite(
        run,
        cfg,
        "b_info.sched_params",
        Some(Value::Object(obj)),
        Provenance::Hypervisor("cpupool scheduler"),
        vec![],
    );
    Ok(())
}

/// The MERGE loop for one kind: keep JSON entries whose identity libxl finds in xenstore,
/// drop the rest with a warning, ignore xenstore-only devices silently.
fn merge_kind(run: &mut Run<'_>, cfg: &mut DomainConfig, rule: &'static KindRule) -> Result<(), Stop> {
    let domid = run.inputs.domid;
    let array = rule.array.expect("table kinds have a JSON array");
    let listing = libxl_list(&run.xs, domid, rule);
    let (xs_devices, failure): (Vec<XsDevice>, Option<(String, String)>) = match listing {
        Listing::Devices(d) => (d, None),
        Listing::Failed { path, reason, logs } => {
            run.logs.extend(logs);
            (Vec::new(), Some((path, reason)))
        }
        Listing::Crash { path, reason } => return Err(Stop::Crash { path, reason }),
        Listing::NotListed => return Ok(()),
    };
    if xs_devices.is_empty() {
        run.logs.push(LogLine::new(
            log::NO_DEVICES_FROM_XENSTORE,
            Some(domid),
            concat(&["No ", rule.xs_kind, " from xenstore"]),
        ));
    }
    let entries = cfg.take_devices(array);
    let mut kept = Vec::with_capacity(entries.len());
    let mut matched = vec![false; xs_devices.len()];
    for (i, entry) in entries.into_iter().enumerate() {
        let key = json_identity(rule, &entry, i);
        if rule.identity == IdentityRule::Vdev && key == crate::rules::IdentityKey::Vdev(None) && !xs_devices.is_empty()
        {
            return Err(Stop::Crash {
                path: format!("{}[{i}]", array.key()),
                reason: "a disk without vdev: libxl strcmp()s a NULL pointer".into(),
            });
        }
        let found = xs_devices.iter().position(|d| d.key == key);
        let subject = Subject::Device { kind: rule.kind, key: key.clone() };
        match found {
            Some(j) => {
                matched[j] = true;
                let dev = &xs_devices[j];
                let mut entry = entry;
                let mut action = Action::Kept;
                let mut d = Decision::new(
                    subject,
                    "libxl417.device.found",
                    Class::Consistent,
                    Action::Kept,
                    concat(&["found in xenstore at ", &dev.record_path]),
                )
                .with_json(Some(entry.clone()))
                .with_evidence(vec![Evidence::new(dev.record_path.clone(), None)]);
                if rule.merge == MergeRule::DiskMedia && dev.is_empty_drive() {
                    if let Some(obj) = entry.as_object_mut() {
                        crate::config::set_in_order(obj, "device_disk", "pdev_path", Value::from(""));
                        crate::config::set_in_order(obj, "device_disk", "format", Value::from("empty"));
                    }
                    action = Action::Merged;
                    d.reason = "removable disk with no medium in xenstore: pdev_path and format blanked".into();
                    d = d.with_provenance("pdev_path", Provenance::Xenstore(format!("{}/params", dev.record_path)));
                }
                d.action = action;
                run.decisions.push(d);
                kept.push(entry);
            }
            None => {
                let line = LogLine::new(
                    log::JSON_ONLY_DEVICE,
                    Some(domid),
                    "Device present in JSON but not in xenstore, ignored",
                );
                run.logs.push(line.clone());
                let reason = match &failure {
                    Some((p, why)) => format!("libxl could not list any {} from xenstore ({why} at {p})", rule.kind),
                    None => "no xenstore record with this identity".into(),
                };
                run.decisions.push(
                    Decision::new(
                        subject,
                        "libxl417.device.json-only-dropped",
                        Class::JsonOnly,
                        Action::Dropped,
                        reason,
                    )
                    .with_json(Some(entry))
                    .with_log(line),
                );
            }
        }
    }
    for (dev, m) in xs_devices.iter().zip(matched) {
        if !m && rule.kind != DeviceKind::Usbdev {
            run.decisions.push(
                Decision::new(
                    Subject::Device { kind: rule.kind, key: dev.key.clone() },
                    "libxl417.device.xenstore-only-ignored",
                    Class::XenstoreOnly,
                    Action::Ignored,
                    "present in xenstore but not in the JSON: libxl ignores it silently",
                )
                .with_evidence(vec![Evidence::new(dev.record_path.clone(), None)]),
            );
        }
    }
    cfg.set_devices(array, kept);
    Ok(())
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    /// The rule the shortcuts of [`super::reads`] must agree with: the first six components.
    fn general(path: &str) -> bool {
        super::reads_components(crate::xenstore::leading_components(path))
    }

    /// The home-node shortcut decides every path it decides as the general rule does.
    #[test]
    fn the_home_node_shortcut_agrees_with_the_general_rule() {
        let mut decided = 0;
        for path in crate::testkit::odd_home_paths() {
            if let Some(fast) = super::reads_home_node(&path) {
                decided += 1;
                assert_eq!(fast, general(&path), "{path}");
            }
        }
        assert!(decided > 300, "the shortcut decided {decided} paths");
    }

    /// `reads` with all its shortcuts is the general rule, on odd paths and on every top-level
    /// name.
    #[test]
    fn reads_agrees_with_the_general_rule() {
        let tops = ["/vm/3a9f/name", "/vm", "/tool/xenstored", "//vm/x", "vm/x", "/localx/domain/1/name", "/libxlx/1"];
        let more = ["/local", "/local/", "//local/domain/1/name", "/libxl", "/libxl/1/device", "libxl/1", "/", ""];
        let prefixes = ["/libxl/", "/libxl//1", "/local/domain/", "/local/domain//name", "/local/domain/1"];
        let more = more.into_iter().chain(prefixes);
        let paths = crate::testkit::odd_home_paths().into_iter().chain(tops.into_iter().chain(more).map(String::from));
        for path in paths {
            assert_eq!(super::reads(&path), general(&path), "{path}");
        }
    }
}
