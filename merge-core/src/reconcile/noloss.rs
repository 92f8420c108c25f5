//! The no-loss policy: every device that exists at runtime stays, every half-baked state is
//! named, nothing a guest wrote decides anything, and the repair is planned.
//!
//! Presence is decided from toolstack-owned evidence only: libxl's private record and the
//! backend (wherever it lives). The guest's frontend is status, never proof. The domain-level
//! fields follow libxl's sources (name, uuid, vcpus, memory, scheduler) but a missing or
//! guest-writable source keeps the JSON value instead of failing the whole retrieve.

use super::libxl417::{dm_version_running, DmVersion, MEMKB_DEFAULT};
use super::{Inputs, JsonReplica, Outcome, Policy, RetrieveError};
use crate::config::{set_in_order, DeviceArray, DomainConfig, DomainType, Object};
use crate::cparse;
use crate::decision::{Action, Class, Decision, Evidence, Provenance, Subject};
use crate::hypervisor::{GuestType, HypervisorDomain, RunState, Scheduler};
use crate::observe::evidence::{
    device_evidence, disk_vdev_at, guest_writable, pci_evidence, record_from_backend, usb_ports, Backend,
    DeviceEvidence, Rebuilt,
};
use crate::observe::libxl_list::{libxl_list, Listing, XsDevice};
use crate::observe::xs::XsView;
use crate::plan::{Action as Step_, Plan, Step};
use crate::rules::{
    disk_devid, json_identity, vdev_names_devid, DeviceKind, IdentityKey, IdentityRule, KindRule, ListSource,
};
use crate::xenstore::Path;
use serde_json::Value;

struct Run<'a> {
    domid: u32,
    xs: XsView<'a>,
    decisions: Vec<Decision>,
    steps: Vec<Step>,
}

pub fn reconcile(inputs: Inputs<'_>) -> Outcome {
    let domid = inputs.domid;
    let mut run = Run { domid, xs: XsView::for_domain(inputs.tree, domid), decisions: Vec::new(), steps: Vec::new() };
    let hv = inputs.host.domain(domid).cloned();
    let home = format!("/local/domain/{domid}");
    if *inputs.json == JsonReplica::Missing && !Path::new(&home).is_ok_and(|p| inputs.tree.exists(&p)) {
        return not_configured(domid, home);
    }
    let mut unfinished_creation = false;
    let mut cfg = match inputs.json {
        JsonReplica::Present(c) => c.clone(),
        other => {
            let why = match other {
                JsonReplica::Missing => "no userdata file".to_string(),
                JsonReplica::Empty => "the userdata file is empty".to_string(),
                JsonReplica::Invalid(e) => format!("the userdata file does not parse: {e}"),
                JsonReplica::Present(_) => unreachable!(),
            };
            unfinished_creation = *other == JsonReplica::Missing && creation_unfinished(&run, hv.as_ref());
            run.decisions.push(if unfinished_creation {
                Decision::new(
                    Subject::Domain,
                    "noloss.domain.creation-unfinished",
                    Class::XenstoreOnly,
                    Action::Recovered,
                    format!("{why} and the domain is paused: libxl writes the JSON last in creation (domcreate_complete), before xl unpauses the domain, so this creation never committed its configuration, and its template (kernel, cmdline, disks' formats, …) is in neither replica; the configuration shown is rebuilt from xenstore and the hypervisor, and the repair destroys the half-created domain, as libxl does when a creation fails"),
                )
                .with_evidence(vec![Evidence::new(home.clone(), run.xs.value(&home)), Evidence::new(format!("{home}/target"), None)])
            } else {
                Decision::new(
                    Subject::Domain,
                    "noloss.domain.json-missing",
                    Class::JsonOnly,
                    Action::Recovered,
                    format!("{why}: the configuration is rebuilt from xenstore and the hypervisor; template fields (kernel, disks' formats, scripts, …) are unknown"),
                )
            });
            skeleton(&run, hv.as_ref())
        }
    };
    let json = cfg.clone();
    domain_fields(
        &mut run,
        &mut cfg,
        &json,
        hv.as_ref(),
        inputs.host.pool_schedulers.get(&hv.as_ref().map_or(0, |h| h.cpupool)).copied(),
    );
    for rule in crate::rules::RULES.iter() {
        match rule.list {
            ListSource::LibxlRecords => recorded_kind(&mut run, &mut cfg, rule),
            ListSource::PciBackend => pci_kind(&mut run, &mut cfg, rule),
            ListSource::Placeholders => usbdev_kind(&mut run, &mut cfg, rule),
            ListSource::NotListed => passthrough_kind(&mut run, &cfg, rule),
        }
    }
    if unfinished_creation {
        // The domain is about to go: repairing its devices first would be wasted work.
        run.steps = vec![Step {
            subject: Subject::Domain,
            action: Step_::DestroyHalfCreatedDomain { domid },
            because: "noloss.domain.creation-unfinished",
        }];
    }
    Outcome {
        domid,
        policy: Policy::NoLoss,
        config: Ok(cfg),
        decisions: run.decisions,
        logs: Vec::new(),
        plan: Plan::ordered(run.steps),
    }
}

/// Neither replica configures the domain: no userdata file and no xenstore home. This is the
/// state before a creation, and the state a destroyed half-created domain is left in: nothing
/// to merge, nothing half-baked, nothing to repair.
fn not_configured(domid: u32, home: String) -> Outcome {
    Outcome {
        domid,
        policy: Policy::NoLoss,
        config: Err(RetrieveError::NotConfigured(domid)),
        decisions: vec![Decision::new(
            Subject::Domain,
            "noloss.domain.not-configured",
            Class::Consistent,
            Action::Failed,
            format!("no userdata file and no {home} in xenstore: neither replica configures this domain"),
        )
        .with_evidence(vec![Evidence::new(home, None)])],
        logs: Vec::new(),
        plan: Plan::default(),
    }
}

/// Whether a domain without a userdata file is one whose creation never finished. libxl
/// creates a domain paused and writes its JSON in `domcreate_complete`; xl unpauses it only
/// after that returns (`xl create -p` leaves it paused, with its JSON). So a paused domain
/// without JSON is a creation that crashed or is still running. Not dom0, nor a device-model
/// stub domain (it has a `target` node), which never get userdata files.
fn creation_unfinished(run: &Run<'_>, hv: Option<&HypervisorDomain>) -> bool {
    let stub = run.xs.value(&format!("/local/domain/{}/target", run.domid)).is_some();
    run.domid != 0 && !stub && hv.is_some_and(|h| h.state == RunState::Paused)
}

/// A config with only what xenstore and the hypervisor can say, for a domain with no JSON.
fn skeleton(run: &Run<'_>, hv: Option<&HypervisorDomain>) -> DomainConfig {
    let ty = run
        .xs
        .value(&format!("/libxl/{}/type", run.domid))
        .and_then(|t| DomainType::parse(&t))
        .or_else(|| {
            hv.map(|h| match h.guest_type {
                GuestType::Pv => DomainType::Pv,
                GuestType::Pvh => DomainType::Pvh,
                GuestType::Hvm => DomainType::Hvm,
            })
        })
        .unwrap_or(DomainType::Pv);
    let mut cfg = DomainConfig::default();
    cfg.set_c_info("type", Some(ty.as_str().into()));
    let vcpus = run.xs.directory(&format!("/local/domain/{}/cpu", run.domid)).len();
    if vcpus > 0 {
        cfg.set_b_info("max_vcpus", Some(vcpus.into()));
    }
    cfg.set_b_info("video_memkb", Some(0.into()));
    cfg.set_b_info(&format!("type.{}", ty.as_str()), Some(Value::Object(Object::new())));
    cfg
}

/// A runtime source for a domain-level field: its value unless the guest could have written it.
fn trusted_value(run: &Run<'_>, path: &str) -> Result<Option<String>, String> {
    if guest_writable(run.xs.tree, path, run.domid) {
        return Err(format!("{path} is writable by the guest"));
    }
    Ok(run.xs.value(path))
}

fn field_decision(
    run: &mut Run<'_>,
    cfg: &mut DomainConfig,
    field: &'static str,
    value: Option<Value>,
    provenance: Provenance,
    evidence: Vec<Evidence>,
) {
    run.decisions.push(super::overwrite_field(cfg, "noloss.field.runtime", field, value, provenance, evidence));
}

fn keep_json_field(run: &mut Run<'_>, cfg: &DomainConfig, field: &'static str, why: String, evidence: Vec<Evidence>) {
    let old = super::field_value(cfg, field);
    run.decisions.push(
        Decision::new(Subject::Field(field), "noloss.field.kept-from-json", Class::FromJson, Action::Kept, why)
            .with_json(old)
            .with_evidence(evidence)
            .with_provenance(field, Provenance::Json(field.to_string())),
    );
}

fn domain_fields(
    run: &mut Run<'_>,
    cfg: &mut DomainConfig,
    json: &DomainConfig,
    hv: Option<&HypervisorDomain>,
    sched: Option<Scheduler>,
) {
    let domid = run.domid;
    // Name.
    let name_path = format!("/local/domain/{domid}/name");
    match trusted_value(run, &name_path) {
        Ok(Some(name)) => field_decision(
            run,
            cfg,
            "c_info.name",
            Some(name.clone().into()),
            Provenance::Xenstore(name_path.clone()),
            vec![Evidence::new(name_path, Some(name))],
        ),
        Ok(None) => keep_json_field(
            run,
            cfg,
            "c_info.name",
            "the name node is missing: the JSON name is kept (libxl would return the whole unmerged JSON)".into(),
            vec![Evidence::new(name_path, None)],
        ),
        Err(why) => keep_json_field(run, cfg, "c_info.name", why, vec![]),
    }
    // Uuid, from the hypervisor.
    match hv.and_then(|h| crate::observe::libxl_list::parse_uuid(&h.uuid)) {
        Some(u) => {
            let v = (u != "00000000-0000-0000-0000-000000000000").then(|| Value::from(u));
            field_decision(run, cfg, "c_info.uuid", v, Provenance::Hypervisor("domain handle"), vec![])
        }
        None => keep_json_field(
            run,
            cfg,
            "c_info.uuid",
            "the hypervisor inputs give no uuid for this domain: the JSON uuid is kept".into(),
            vec![],
        ),
    }
    // Vcpus.
    let max_vcpus = json.b_info_i64("max_vcpus").unwrap_or(0).clamp(0, 4096) as u32;
    let capacity = max_vcpus.div_ceil(8) * 8;
    let hvm = json.build_type() == Some(DomainType::Hvm);
    let qemu = hvm && {
        let mut logs = Vec::new();
        dm_version_running(&run.xs, domid, &mut logs).0 == DmVersion::QemuXen
    };
    if qemu {
        match hv.and_then(|h| h.qemu_cpus.clone()) {
            Some(cpus) => {
                let mut v: Vec<u32> = cpus.into_iter().filter(|c| *c < capacity).collect();
                v.sort_unstable();
                v.dedup();
                let value = (!v.is_empty()).then(|| Value::Array(v.into_iter().map(Value::from).collect()));
                field_decision(run, cfg, "b_info.avail_vcpus", value, Provenance::Qmp, vec![]);
            }
            None => keep_json_field(
                run,
                cfg,
                "b_info.avail_vcpus",
                "QEMU gave no vcpu list: the JSON value is kept".into(),
                vec![],
            ),
        }
    } else {
        let mut online = Vec::new();
        let mut evidence = Vec::new();
        let mut untrusted = None;
        for i in 0..max_vcpus {
            let path = format!("/local/domain/{domid}/cpu/{i}/availability");
            match trusted_value(run, &path) {
                Ok(v) => {
                    if v.as_deref() == Some("online") {
                        online.push(i);
                    }
                    evidence.push(Evidence::new(path, v));
                }
                Err(why) => {
                    untrusted = Some(why);
                    break;
                }
            }
        }
        match untrusted {
            Some(why) => keep_json_field(run, cfg, "b_info.avail_vcpus", why, vec![]),
            None => {
                let value = (!online.is_empty()).then(|| Value::Array(online.into_iter().map(Value::from).collect()));
                field_decision(
                    run,
                    cfg,
                    "b_info.avail_vcpus",
                    value,
                    Provenance::Xenstore(format!("/local/domain/{domid}/cpu")),
                    evidence,
                );
            }
        }
    }
    // Memory: libxl's inverse of what it wrote at build time, without the wrap-around when
    // the JSON has no video_memkb.
    let tpath = format!("/local/domain/{domid}/memory/target");
    let mpath = format!("/local/domain/{domid}/memory/static-max");
    let target =
        trusted_value(run, &tpath).map(|v| v.and_then(|s| cparse::strtoull_whole(s.as_bytes()).map(|n| (n, s))));
    let max = trusted_value(run, &mpath).map(|v| v.and_then(|s| cparse::strtoull_whole(s.as_bytes()).map(|n| (n, s))));
    match (target, max) {
        (Ok(Some((t, ts))), Ok(Some((m, ms)))) => {
            // libxl wrote `memory/target = target_memkb - video_memkb - (HVM && max > target ?
            // 1024 : 0)` at build time. The HVM term is decided here from the runtime values
            // (static-max above target + video means max > target at build time), not from the
            // JSON's old max/target as libxl does, so reconciling the result again is the
            // identity.
            let video = json.b_info_u64("video_memkb").filter(|v| *v != MEMKB_DEFAULT).unwrap_or(0);
            let fudge = video.saturating_add(if hvm && m > t.saturating_add(video) { 1024 } else { 0 });
            let memkb = |v: u64| (v != MEMKB_DEFAULT).then(|| Value::from(v));
            let target_memkb = memkb(t.saturating_add(fudge));
            field_decision(
                run,
                cfg,
                "b_info.target_memkb",
                target_memkb.clone(),
                Provenance::Xenstore(tpath.clone()),
                vec![Evidence::new(tpath.clone(), Some(ts))],
            );
            if let Some(why) = libxl_fudge_differs(json, hvm, t, &target_memkb) {
                if let Some(d) = run.decisions.last_mut() {
                    d.rule = "noloss.field.memory-fudge";
                    d.reason = format!("b_info.target_memkb comes from {tpath} plus the build-time fudge; {why}");
                }
            }
            field_decision(
                run,
                cfg,
                "b_info.max_memkb",
                memkb(m),
                Provenance::Xenstore(mpath.clone()),
                vec![Evidence::new(mpath, Some(ms))],
            );
        }
        (t, m) => {
            let why = |r: Result<Option<(u64, String)>, String>, p: &str| match r {
                Err(e) => e,
                Ok(None) => format!("{p} is missing or not a number"),
                Ok(Some(_)) => String::new(),
            };
            let reason =
                format!("memory nodes unusable ({}{}): the JSON values are kept", why(t, &tpath), why(m, &mpath));
            keep_json_field(run, cfg, "b_info.target_memkb", reason.clone(), vec![]);
            keep_json_field(run, cfg, "b_info.max_memkb", reason, vec![]);
        }
    }
    // Scheduler parameters, from the hypervisor.
    match (hv, sched) {
        (Some(h), Some(s @ (Scheduler::Credit | Scheduler::Credit2 | Scheduler::Rtds | Scheduler::Null))) => {
            let mut obj = Object::new();
            obj.insert("sched".into(), s.as_str().into());
            let pairs: &[(&str, i64)] = match s {
                Scheduler::Credit | Scheduler::Credit2 => &[("weight", h.weight), ("cap", h.cap)],
                Scheduler::Rtds => &[("period", h.rtds_period), ("budget", h.rtds_budget)],
                _ => &[],
            };
            for (k, v) in pairs {
                if *v != -1 {
                    obj.insert((*k).into(), (*v).into());
                }
            }
            field_decision(
                run,
                cfg,
                "b_info.sched_params",
                Some(Value::Object(obj)),
                Provenance::Hypervisor("cpupool scheduler"),
                vec![],
            );
        }
        (_, s) => keep_json_field(
            run,
            cfg,
            "b_info.sched_params",
            format!(
                "the scheduler ({}) gives no domain parameters: the JSON value is kept",
                s.map_or("unknown", Scheduler::as_str)
            ),
            vec![],
        ),
    }
}

/// Why libxl 4.17's inverse of the build-time fudge gives another `target_memkb` than
/// `ours`, if it does. libxl reads the video RAM and the HVM term from the JSON: a missing
/// `video_memkb` counts as 2^64-1 (the sum wraps to target - 1), and the HVM 1024 kB follows
/// the JSON's old max/target rather than the runtime values.
fn libxl_fudge_differs(json: &DomainConfig, hvm: bool, target: u64, ours: &Option<Value>) -> Option<String> {
    let video = json.b_info_u64("video_memkb");
    let (max, old_target) = (json.b_info_u64("max_memkb"), json.b_info_u64("target_memkb"));
    let hvm_term = hvm && max.unwrap_or(MEMKB_DEFAULT) > old_target.unwrap_or(MEMKB_DEFAULT);
    let theirs = target.wrapping_add(video.unwrap_or(MEMKB_DEFAULT).wrapping_add(if hvm_term { 1024 } else { 0 }));
    let theirs = (theirs != MEMKB_DEFAULT).then(|| Value::from(theirs));
    if theirs == *ours {
        return None;
    }
    let shown = theirs.map_or("nothing".to_string(), |v| v.to_string());
    Some(match video {
        None => format!("libxl 4.17 gives {shown}: the JSON has no video_memkb, which libxl adds as 2^64-1 (wrapping to target - 1)"),
        Some(_) => format!("libxl 4.17 gives {shown}: it decides the HVM 1024 kB term from the JSON's old max_memkb/target_memkb, no-loss from the runtime static-max and target, so that reconciling again is the identity"),
    })
}

/// Evidence as decision evidence: the nodes that speak for the device.
fn evidence_of(ev: &DeviceEvidence) -> Vec<Evidence> {
    let mut v = Vec::new();
    if let Some(r) = &ev.record {
        let status = match &r.parsed {
            Ok(_) if r.trusted => "libxl record".to_string(),
            Ok(_) => "libxl record, writable by the guest".to_string(),
            Err(e) => format!("malformed libxl record: {e}"),
        };
        v.push(Evidence::new(r.path.clone(), Some(status)));
    }
    if let Some(b) = &ev.backend {
        v.push(Evidence::new(format!("{}/state", b.path), b.state.map(|s| s.to_string())));
        if let Some(o) = &b.online {
            v.push(Evidence::new(format!("{}/online", b.path), Some(o.clone())));
        }
        if let Some(h) = &b.hotplug_status {
            v.push(Evidence::new(format!("{}/hotplug-status", b.path), Some(h.clone())));
        }
        if let Some((p, e)) = &b.error {
            v.push(Evidence::new(p.clone(), Some(e.clone())));
        }
        if !b.trusted {
            v.push(Evidence::new(b.path.clone(), Some("backend writable by the guest: not trusted".into())));
        }
    }
    if let Some(f) = &ev.frontend {
        v.push(Evidence::new(format!("{}/state", f.path), f.state.clone()));
    }
    v
}

/// The lifecycle class of a device with a trusted backend.
fn lifecycle(b: &Backend) -> (Class, &'static str) {
    if b.hotplug_status.as_deref() == Some("error") || b.error.is_some() {
        return (Class::Failed, "the hotplug script or the backend reported an error");
    }
    match b.state {
        Some(6) => {
            (Class::UnpluggedNotReaped, "backend Closed (6): the unplug finished but the nodes were never reaped")
        }
        Some(5) => (Class::Unplugging, "backend Closing (5): an unplug is under way or stopped half way"),
        _ if b.online.as_deref() == Some("0") => (Class::Unplugging, "backend online = 0: an unplug was requested"),
        Some(1..=3) | Some(0) | None => (Class::Plugging, "backend not yet Connected: the device is still plugging"),
        _ => (Class::Consistent, "backend Connected"),
    }
}

fn unplug_steps(ev: &DeviceEvidence, b: &Backend, force: bool) -> Step_ {
    Step_::FinishUnplug {
        backend: b.path.clone(),
        record: ev.record.as_ref().map(|r| r.path.clone()),
        frontend: ev.frontend.as_ref().map(|f| f.path.clone()),
        force,
    }
}

/// Which evidence devid a JSON entry of this kind refers to.
fn json_devid(rule: &KindRule, entry: &Value, index: usize) -> Option<i64> {
    match json_identity(rule, entry, index) {
        IdentityKey::Devid(d) => Some(d),
        IdentityKey::Vdev(Some(v)) => disk_devid(&v),
        _ => None,
    }
}

/// The identity xenstore gives a device (the record's, else the backend's own nodes).
fn xs_identity(run: &Run<'_>, rule: &KindRule, ev: &DeviceEvidence, dev: Option<&XsDevice>) -> IdentityKey {
    if let Some(d) = dev {
        return d.key.clone();
    }
    if rule.identity == IdentityRule::Vdev {
        // Without a trusted node naming the vdev, the disk is known by its devid only.
        let vdev = ev.trusted_backend().and_then(|b| run.xs.value(&format!("{}/dev", b.path)));
        return match vdev {
            Some(v) => IdentityKey::Vdev(Some(disk_vdev_at(ev.devid, v))),
            None => IdentityKey::Devid(ev.devid),
        };
    }
    IdentityKey::Devid(ev.devid)
}

fn recorded_kind(run: &mut Run<'_>, cfg: &mut DomainConfig, rule: &'static KindRule) {
    let array = rule.array.expect("recorded kinds have a JSON array");
    let evidence = device_evidence(&run.xs, run.domid, rule);
    let entries = cfg.devices(array).to_vec();
    let libxl_unlisted = if entries.is_empty() { None } else { libxl_cannot_list(run, rule) };
    let mut used = vec![false; evidence.len()];
    let keys: Vec<IdentityKey> = entries.iter().enumerate().map(|(i, e)| json_identity(rule, e, i)).collect();
    let keeper = kept_of_identity(&entries, &keys);
    let mut kept = Vec::new();
    for (i, entry) in entries.iter().cloned().enumerate() {
        let key = keys[i].clone();
        let subject = Subject::Device { kind: rule.kind, key: key.clone() };
        if keeper[i] != i {
            drop_duplicate(run, rule, array, key, entry, &entries[keeper[i]]);
            continue;
        }
        // By directory number; else by the identity an unmatched device's nodes give, so that
        // a disk recovered under a vdev that names no devid (its directory's number, when that
        // is beyond what libxl reads as one) is recognised on the next pass.
        let found =
            json_devid(rule, &entry, i).and_then(|d| evidence.iter().position(|e| e.devid == d)).or_else(|| {
                evidence
                    .iter()
                    .enumerate()
                    .position(|(j, e)| !used[j] && e.devid >= 0 && xs_identity(run, rule, e, e.good_record()) == key)
            });
        let Some(j) = found else {
            json_only(run, rule, array, key, entry, None);
            continue;
        };
        used[j] = true;
        let ev = &evidence[j];
        if is_record_only_device(ev) {
            run.decisions.push(
                Decision::new(
                    subject,
                    "noloss.device.record-only",
                    Class::Consistent,
                    Action::Kept,
                    "a devicemodel usb controller: QEMU emulates it and libxl keeps only its record",
                )
                .with_json(Some(entry.clone()))
                .with_evidence(evidence_of(ev)),
            );
            note_unlisted_by_libxl(run, &libxl_unlisted);
            kept.push(entry);
            continue;
        }
        let Some(b) = ev.trusted_backend().cloned() else {
            json_only(run, rule, array, key, entry, Some(ev));
            continue;
        };
        if !b.domain_alive {
            json_only(run, rule, array, key, entry, Some(ev));
            continue;
        }
        let (class, why) = lifecycle(&b);
        let mut entry = entry;
        let mut d = Decision::new(subject, "noloss.device.live", class, Action::Kept, why)
            .with_json(Some(entry.clone()))
            .with_evidence(evidence_of(ev));
        match class {
            Class::Plugging => {
                d.rule = "noloss.device.plugging";
                run.steps.push(Step {
                    subject: Subject::Device { kind: rule.kind, key: key.clone() },
                    action: Step_::WaitForConnection {
                        backend: b.path.clone(),
                        frontend: ev.frontend.as_ref().map(|f| f.path.clone()),
                    },
                    because: "noloss.device.plugging",
                });
            }
            Class::Unplugging | Class::UnpluggedNotReaped | Class::Failed => {
                d.rule = match class {
                    Class::Unplugging => "noloss.device.unplugging",
                    Class::UnpluggedNotReaped => "noloss.device.unplugged-not-reaped",
                    _ => "noloss.device.failed",
                };
                let force = class != Class::UnpluggedNotReaped;
                run.steps.push(Step {
                    subject: Subject::Device { kind: rule.kind, key: key.clone() },
                    action: unplug_steps(ev, &b, force),
                    because: d.rule,
                });
                run.steps.push(Step {
                    subject: Subject::Device { kind: rule.kind, key: key.clone() },
                    action: Step_::DropJsonEntry { array, only: None },
                    because: d.rule,
                });
            }
            _ => {}
        }
        if ev.good_record().is_none() {
            d.rule = "noloss.device.record-missing";
            if class == Class::Consistent {
                d.class = Class::RecordMissing;
            }
            d.reason = format!(
                "{why}; libxl's record is {}: libxl would drop this device, no-loss keeps it",
                match &ev.record {
                    None => "missing".to_string(),
                    Some(r) if !r.trusted => "writable by the guest".to_string(),
                    Some(r) => format!("malformed ({})", r.parsed.as_ref().err().cloned().unwrap_or_default()),
                }
            );
            if matches!(class, Class::Consistent | Class::Plugging) {
                if rule.kind == DeviceKind::Vtpm {
                    restore_vtpm_uuid(run, &b, &entry, &key, &mut d);
                }
                if rule.kind == DeviceKind::Disk {
                    if let Some(named) =
                        restore_disk_dev(run, &b, ev.devid, &entry, &key, "noloss.device.record-missing")
                    {
                        d.reason.push_str(&format!(
                            "; the backend's dev {named:?} does not name its directory: the JSON's is written back"
                        ));
                    }
                }
                run.steps.push(Step {
                    subject: Subject::Device { kind: rule.kind, key: key.clone() },
                    action: Step_::RewriteRecord {
                        record: format!("/libxl/{}/device/{}/{}", run.domid, rule.xs_kind, ev.devid),
                        backend: b.path.clone(),
                        frontend: ev.frontend.as_ref().map(|f| f.path.clone()),
                    },
                    because: "noloss.device.record-missing",
                });
            }
        }
        if rule.kind == DeviceKind::Disk {
            let rebuilt = || record_from_backend(&run.xs, rule, run.domid, ev).map(|r| r.device);
            if let Some(dev) = ev.good_record().cloned().or_else(rebuilt) {
                if dev.is_empty_drive() {
                    if let Some(obj) = entry.as_object_mut() {
                        set_in_order(obj, "device_disk", "pdev_path", Value::from(""));
                        set_in_order(obj, "device_disk", "format", Value::from("empty"));
                    }
                    d.action = Action::Merged;
                    d.reason.push_str("; removable disk with no medium: pdev_path and format blanked");
                    d = d.with_provenance("pdev_path", Provenance::Xenstore(format!("{}/params", b.path)));
                }
            }
        }
        run.decisions.push(d);
        note_unlisted_by_libxl(run, &libxl_unlisted);
        kept.push(entry);
    }
    // Devices xenstore knows and the JSON does not.
    let mut recovered: Vec<(IdentityKey, Value)> = Vec::new();
    for (ev, used) in evidence.iter().zip(used) {
        if used {
            continue;
        }
        if let Some(r) = xenstore_only(run, rule, array, ev) {
            recovered.push(r);
        }
    }
    recovered.sort_by(|a, b| a.0.cmp(&b.0));
    kept.extend(recovered.into_iter().map(|(_, v)| v));
    cfg.set_devices(array, kept);
}

/// Where libxl 4.17's listing of this kind fails, if it does: one record that does not parse
/// (or an unreadable kind directory) makes libxl free the whole list and drop every JSON
/// device of the kind (the decision table's "malformed record of another device" row).
fn libxl_cannot_list(run: &Run<'_>, rule: &KindRule) -> Option<Evidence> {
    match libxl_list(&run.xs, run.domid, rule) {
        Listing::Failed { path, reason, .. } => {
            Some(Evidence::new(path, Some(format!("libxl 4.17 cannot list any {}: {reason}", rule.kind))))
        }
        _ => None,
    }
}

/// libxl's vtpm reader takes the uuid from the backend, so a rewritten record would still be
/// rejected while the backend's uuid is not one: plan to write back the JSON's, when it has a
/// valid one, before the record is rewritten.
fn restore_vtpm_uuid(run: &mut Run<'_>, b: &Backend, entry: &Value, key: &IdentityKey, d: &mut Decision) {
    use crate::observe::libxl_list::parse_uuid;
    let uuid_path = format!("{}/uuid", b.path);
    let rejected = run.xs.value(&uuid_path).is_some_and(|u| parse_uuid(&u).is_none());
    let known = entry.get("uuid").and_then(Value::as_str).filter(|u| parse_uuid(u).is_some());
    if let (true, Some(uuid)) = (rejected, known) {
        d.reason.push_str("; the backend's uuid is restored from the JSON");
        run.steps.push(Step {
            subject: Subject::Device { kind: DeviceKind::Vtpm, key: key.clone() },
            action: Step_::RestoreBackendNode { path: uuid_path, value: uuid.to_string() },
            because: "noloss.device.record-missing",
        });
    }
}

/// A rewritten record copies the backend's `dev`: when that does not name the disk's
/// directory, the record would be rejected again on the next pass. Plans to write the disk's
/// JSON `entry`'s vdev back first, if that names the directory, and returns the value it
/// replaces.
fn restore_disk_dev(
    run: &mut Run<'_>,
    b: &Backend,
    devid: i64,
    entry: &Value,
    key: &IdentityKey,
    because: &'static str,
) -> Option<String> {
    let vdev = entry.get("vdev").and_then(Value::as_str).unwrap_or("");
    let path = format!("{}/dev", b.path);
    let named = run.xs.value(&path)?;
    if vdev_names_devid(&named, devid) || !vdev_names_devid(vdev, devid) {
        return None;
    }
    run.steps.push(Step {
        subject: Subject::Device { kind: DeviceKind::Disk, key: key.clone() },
        action: Step_::RestoreBackendNode { path, value: vdev.to_string() },
        because,
    });
    Some(named)
}

/// The device just decided on is kept, but libxl 4.17 drops it with its whole kind: say so
/// and name the node that makes libxl fail.
fn note_unlisted_by_libxl(run: &mut Run<'_>, unlisted: &Option<Evidence>) {
    let (Some(failure), Some(d)) = (unlisted, run.decisions.last_mut()) else { return };
    d.reason.push_str(&format!(
        "; libxl 4.17 drops it with every {} because its listing fails at {}",
        match &d.subject {
            Subject::Device { kind, .. } => kind.name(),
            _ => "device",
        },
        failure.path
    ));
    d.evidence.push(failure.clone());
}

/// A device whose only xenstore evidence is libxl's record by design: a devicemodel usb
/// controller (backend kind NONE, spec §3.1). Without this, no-loss would drop a live
/// controller that libxl 4.17 keeps, and reap the record of one missing from the JSON.
fn is_record_only_device(ev: &DeviceEvidence) -> bool {
    ev.kind == DeviceKind::Usbctrl
        && ev.backend.is_none()
        && ev.good_record().is_some_and(|d| d.fields.get("type").and_then(Value::as_str) == Some("devicemodel"))
}

fn json_only(
    run: &mut Run<'_>,
    rule: &KindRule,
    array: DeviceArray,
    key: IdentityKey,
    entry: Value,
    ev: Option<&DeviceEvidence>,
) {
    let (reason, mut steps) = match ev {
        None => ("no record, no backend, no frontend: the add never committed, or a remove finished (libxl never prunes the JSON on remove)".to_string(), vec![]),
        Some(ev) => {
            let mut steps = Vec::new();
            let reason = match &ev.backend {
                Some(b) if !b.trusted => "only guest-writable nodes speak for it: not trusted".to_string(),
                Some(b) if !b.domain_alive => format!("its backend domain {} is gone", b.domid),
                _ => "no live backend: the add never completed or a remove finished".to_string(),
            };
            let reap: Vec<String> = ev.record.iter().map(|r| r.path.clone()).chain(ev.backend.iter().filter(|b| b.trusted).map(|b| b.path.clone())).collect();
            if !reap.is_empty() {
                steps.push(Step_::ReapNodes { paths: reap });
            }
            if let Some(f) = &ev.frontend {
                steps.push(Step_::RemoveStaleFrontend { path: f.path.clone() });
            }
            (reason, steps)
        }
    };
    steps.push(Step_::DropJsonEntry { array, only: None });
    for a in steps {
        run.steps.push(Step {
            subject: Subject::Device { kind: rule.kind, key: key.clone() },
            action: a,
            because: "noloss.device.json-only",
        });
    }
    run.decisions.push(
        Decision::new(
            Subject::Device { kind: rule.kind, key },
            "noloss.device.json-only",
            Class::JsonOnly,
            Action::Dropped,
            reason,
        )
        .with_json(Some(entry))
        .with_evidence(ev.map(evidence_of).unwrap_or_default()),
    );
}

/// Builds a JSON entry in IDL order from recovered fields.
fn entry_from_fields(rule: &KindRule, fields: &Object) -> Value {
    let struct_name = rule.array.map_or("", DeviceArray::element_struct);
    let mut obj = Object::new();
    for (k, v) in fields {
        set_in_order(&mut obj, struct_name, k, v.clone());
    }
    // libxl omits init values; the readers set some of them explicitly.
    obj.retain(|k, v| {
        let default_domid = k == "backend_domid" && v.as_u64() == Some(0);
        let colo_off = k == "colo_enable" && v.as_str() == Some("False");
        !(default_domid || colo_off)
    });
    Value::Object(obj)
}

fn xenstore_only(
    run: &mut Run<'_>,
    rule: &KindRule,
    array: DeviceArray,
    ev: &DeviceEvidence,
) -> Option<(IdentityKey, Value)> {
    let record = ev.good_record().cloned();
    let key = xs_identity(run, rule, ev, record.as_ref());
    let subject = Subject::Device { kind: rule.kind, key: key.clone() };
    let push_step = |run: &mut Run<'_>, action: Step_, because: &'static str| {
        run.steps.push(Step { subject: Subject::Device { kind: rule.kind, key: key.clone() }, action, because })
    };
    if let (true, Some(dev)) = (is_record_only_device(ev), &record) {
        let entry = entry_from_fields(rule, &dev.fields);
        run.decisions.push(
            Decision::new(
                subject,
                "noloss.device.recovered",
                Class::Recovered,
                Action::Recovered,
                "a devicemodel usb controller missing from the JSON, rebuilt from libxl's record",
            )
            .with_json(None)
            .with_evidence(evidence_of(ev)),
        );
        push_step(run, Step_::AddJsonEntry { array, entry: entry.clone() }, "noloss.device.recovered");
        return Some((key, entry));
    }
    match ev.trusted_backend().filter(|b| b.domain_alive) {
        Some(b) if !b.closed() => {
            let rebuilt = match &record {
                Some(dev) => Some(Rebuilt { device: dev.clone(), rejected: Vec::new(), vdev_replaced: None }),
                None => record_from_backend(&run.xs, rule, run.domid, ev),
            };
            let Some(Rebuilt { device: dev, rejected, vdev_replaced }) = rebuilt else {
                run.decisions.push(
                    Decision::new(
                        subject,
                        "noloss.device.unreadable-backend",
                        Class::Orphan,
                        Action::Ignored,
                        "a live backend whose nodes cannot be read as a device: nothing is recovered",
                    )
                    .with_evidence(evidence_of(ev)),
                );
                return None;
            };
            let mut fields = dev.fields.clone();
            if rule.kind == DeviceKind::Disk {
                recover_disk_extras(run, b, &mut fields);
                // An empty drive, decided from the same record as for a live JSON entry (the
                // disk media rule), so the recovered entry is already what a second pass gives.
                if dev.is_empty_drive() {
                    fields.insert("pdev_path".into(), "".into());
                    fields.insert("format".into(), "empty".into());
                }
            }
            // The device is the one at this directory number: a backend whose copy of it
            // (a nic's `handle`) reads otherwise must not make it another device's duplicate.
            if rule.identity == IdentityRule::Devid {
                fields.insert("devid".into(), ev.devid.into());
            }
            let entry = entry_from_fields(rule, &fields);
            let unknown: Vec<&str> = rule.unrecoverable.iter().copied().filter(|f| !fields.contains_key(*f)).collect();
            let (class, why) = lifecycle(b);
            let mut reason = format!(
                "a live toolstack-owned device missing from the JSON ({why}); rebuilt from {}; unknown: {}",
                if record.is_some() { "libxl's record" } else { "its backend (no usable libxl record)" },
                if unknown.is_empty() { "nothing".to_string() } else { unknown.join(", ") }
            );
            if let Some(named) = &vdev_replaced {
                reason.push_str(&format!(
                    "; its backend's dev {named:?} does not name its directory: it goes by the directory's number, {}, which is written back",
                    ev.devid
                ));
            }
            for (node, why) in &rejected {
                reason.push_str(&format!(
                    "; {node} is left out and removed: libxl's reader rejects it ({why}), and nothing says what it should be"
                ));
            }
            let mut d = Decision::new(subject, "noloss.device.recovered", Class::Recovered, Action::Recovered, reason)
                .with_json(None)
                .with_evidence(evidence_of(ev));
            for k in fields.keys() {
                d = d.with_provenance(k.clone(), Provenance::Xenstore(dev.record_path.clone()));
            }
            run.decisions.push(d);
            let record_path = format!("/libxl/{}/device/{}/{}", run.domid, rule.xs_kind, ev.devid);
            if record.is_none() {
                if rule.kind == DeviceKind::Disk {
                    restore_disk_dev(run, b, ev.devid, &entry, &key, "noloss.device.recovered");
                }
                push_step(
                    run,
                    Step_::RewriteRecord {
                        record: record_path.clone(),
                        backend: b.path.clone(),
                        frontend: ev.frontend.as_ref().map(|f| f.path.clone()),
                    },
                    "noloss.device.recovered",
                );
            }
            if !rejected.is_empty() {
                // The rejected values go from the backend and from the record's copy of it
                // (rewritten first), so that libxl can list the kind again.
                let paths = rejected
                    .iter()
                    .flat_map(|(node, _)| {
                        let copy = node.strip_prefix(b.path.as_str()).map(|rel| format!("{record_path}{rel}"));
                        std::iter::once(node.clone()).chain(copy)
                    })
                    .collect();
                push_step(run, Step_::ReapNodes { paths }, "noloss.device.recovered");
            }
            match class {
                Class::Plugging => push_step(
                    run,
                    Step_::WaitForConnection {
                        backend: b.path.clone(),
                        frontend: ev.frontend.as_ref().map(|f| f.path.clone()),
                    },
                    "noloss.device.recovered",
                ),
                Class::Unplugging | Class::Failed => {
                    // Finishing the unplug forgets it: nothing to add to the JSON.
                    push_step(run, unplug_steps(ev, b, true), "noloss.device.recovered");
                    return Some((key, entry));
                }
                _ => {}
            }
            push_step(run, Step_::AddJsonEntry { array, entry: entry.clone() }, "noloss.device.recovered");
            Some((key, entry))
        }
        Some(b) => {
            run.decisions.push(
                Decision::new(
                    subject,
                    "noloss.device.orphan-closed",
                    Class::Orphan,
                    Action::Ignored,
                    "backend Closed (6) and no JSON entry: leftovers of a finished unplug",
                )
                .with_evidence(evidence_of(ev)),
            );
            push_step(run, unplug_steps(ev, b, false), "noloss.device.orphan-closed");
            None
        }
        None => {
            let (class, rule_id, why) = match (&ev.record, &ev.backend) {
                (Some(r), _) if r.trusted => (
                    Class::Orphan,
                    "noloss.device.orphan-record",
                    "a libxl record with no live backend and no JSON entry",
                ),
                (None, Some(b)) if b.trusted => {
                    (Class::Orphan, "noloss.device.orphan-backend", "a backend whose domain is gone")
                }
                _ => (
                    Class::Untrusted,
                    "noloss.device.untrusted",
                    "only nodes the guest can write speak for it: a guest cannot add a device to its own config",
                ),
            };
            run.decisions
                .push(Decision::new(subject, rule_id, class, Action::Ignored, why).with_evidence(evidence_of(ev)));
            let reap: Vec<String> = ev
                .record
                .iter()
                .filter(|r| r.trusted)
                .map(|r| r.path.clone())
                .chain(ev.backend.iter().filter(|b| b.trusted).map(|b| b.path.clone()))
                .collect();
            if !reap.is_empty() {
                push_step(run, Step_::ReapNodes { paths: reap }, rule_id);
            }
            if let Some(f) = &ev.frontend {
                push_step(run, Step_::RemoveStaleFrontend { path: f.path.clone() }, rule_id);
            }
            None
        }
    }
}

/// What libxl drops but the backend still says: the qdisk format prefix and the script.
fn recover_disk_extras(run: &Run<'_>, b: &Backend, fields: &mut Object) {
    if let Some(params) = run.xs.value(&format!("{}/params", b.path)) {
        let format = match params.split_once(':').map(|(f, _)| f) {
            Some("aio") | Some("raw") => Some("raw"),
            Some("qcow") => Some("qcow"),
            Some("qcow2") => Some("qcow2"),
            Some("vhd") => Some("vhd"),
            Some("qed") => Some("qed"),
            _ if b.kind == "vbd" => Some("raw"),
            _ => None,
        };
        if let Some(f) = format {
            fields.insert("format".into(), f.into());
        }
    }
    if let Some(s) = run.xs.value(&format!("{}/script", b.path)) {
        fields.insert("script".into(), s.into());
    }
}

fn pci_kind(run: &mut Run<'_>, cfg: &mut DomainConfig, rule: &'static KindRule) {
    let array = DeviceArray::Pcidevs;
    let found = pci_evidence(&run.xs, run.domid);
    let entries = cfg.devices(array).to_vec();
    let mut used = vec![false; found.len()];
    let keys: Vec<IdentityKey> = entries.iter().enumerate().map(|(i, e)| json_identity(rule, e, i)).collect();
    let keeper = kept_of_identity(&entries, &keys);
    let mut kept = Vec::new();
    for (i, entry) in entries.iter().cloned().enumerate() {
        let key = keys[i].clone();
        let subject = Subject::Device { kind: rule.kind, key: key.clone() };
        if keeper[i] != i {
            drop_duplicate(run, rule, array, key, entry, &entries[keeper[i]]);
            continue;
        }
        match found.iter().position(|p| p.device.key == key && p.backend.trusted) {
            Some(j) => {
                used[j] = true;
                let p = &found[j];
                let ev = vec![
                    Evidence::new(format!("{}/dev-{}", p.backend.path, p.index), None),
                    Evidence::new(format!("{}/state-{}", p.backend.path, p.index), p.state.map(|s| s.to_string())),
                ];
                let (class, why) = match p.state {
                    Some(5) | Some(6) => {
                        (Class::Unplugging, "the function's state is Closing/Closed: a detach stopped half way")
                    }
                    _ => (Class::Consistent, "assigned in the pci backend"),
                };
                let why = match p.via_stubdom {
                    Some(s) => format!("{why} of stub domain {s} (libxl 4.17 drops every pcidev of a stubdom guest)"),
                    None => why.to_string(),
                };
                if class == Class::Unplugging {
                    run.steps.push(Step {
                        subject: Subject::Device { kind: rule.kind, key: key.clone() },
                        action: Step_::RemovePciFunction { backend: p.backend.path.clone(), index: p.index },
                        because: "noloss.pci.unplugging",
                    });
                    run.steps.push(Step {
                        subject: Subject::Device { kind: rule.kind, key: key.clone() },
                        action: Step_::DropJsonEntry { array, only: None },
                        because: "noloss.pci.unplugging",
                    });
                }
                run.decisions.push(
                    Decision::new(subject, "noloss.pci.live", class, Action::Kept, why)
                        .with_json(Some(entry.clone()))
                        .with_evidence(ev),
                );
                kept.push(entry);
            }
            None => {
                run.steps.push(Step {
                    subject: Subject::Device { kind: rule.kind, key: key.clone() },
                    action: Step_::DropJsonEntry { array, only: None },
                    because: "noloss.device.json-only",
                });
                run.decisions.push(
                    Decision::new(
                        subject,
                        "noloss.device.json-only",
                        Class::JsonOnly,
                        Action::Dropped,
                        "no pci backend assigns this function: the attach never committed or a detach finished",
                    )
                    .with_json(Some(entry)),
                );
            }
        }
    }
    // A function the JSON names is not recovered again, even if its entry went as a duplicate.
    let mut seen = keys;
    let mut recovered = Vec::new();
    for (p, used) in found.iter().zip(used) {
        if used || !p.backend.trusted || seen.contains(&p.device.key) {
            continue;
        }
        seen.push(p.device.key.clone());
        let entry = entry_from_fields(rule, &p.device.fields);
        let subject = Subject::Device { kind: rule.kind, key: p.device.key.clone() };
        run.decisions.push(
            Decision::new(
                subject,
                "noloss.device.recovered",
                Class::Recovered,
                Action::Recovered,
                "assigned in a pci backend but missing from the JSON; unknown: vfunc_mask, seize",
            )
            .with_evidence(vec![Evidence::new(format!("{}/dev-{}", p.backend.path, p.index), None)]),
        );
        run.steps.push(Step {
            subject: Subject::Device { kind: rule.kind, key: p.device.key.clone() },
            action: Step_::AddJsonEntry { array, entry: entry.clone() },
            because: "noloss.device.recovered",
        });
        recovered.push((p.device.key.clone(), entry));
    }
    recovered.sort_by(|a, b| a.0.cmp(&b.0));
    kept.extend(recovered.into_iter().map(|(_, e)| e));
    cfg.set_devices(array, kept);
}

fn usbdev_kind(run: &mut Run<'_>, cfg: &mut DomainConfig, rule: &'static KindRule) {
    let array = DeviceArray::Usbdevs;
    let ports = usb_ports(&run.xs, run.domid);
    let entries = cfg.devices(array).to_vec();
    let default_key = IdentityKey::CtrlPort { ctrl: -1, port: 0 };
    // libxl 4.17 lists one (ctrl -1, port 0) placeholder per usb controller record, and
    // matches JSON usbdevs against those only.
    let libxl_has_placeholders =
        entries.is_empty() || matches!(libxl_list(&run.xs, run.domid, rule), Listing::Devices(ref v) if !v.is_empty());
    // A usbdev placed by libxl (no controller or port in the JSON) is identified by its whole
    // entry (its host bus and address); an explicit one by its controller and port.
    let identities: Vec<(IdentityKey, Option<&Value>)> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let key = json_identity(rule, e, i);
            let whole = (key == default_key).then_some(e);
            (key, whole)
        })
        .collect();
    let keeper = kept_of_identity(&entries, &identities);
    let duplicate_of = |i: usize| keeper[i] != i;
    // Explicit placements first, so a default-placed entry only takes a port nobody named.
    let mut used = vec![false; ports.len()];
    let mut verdict: Vec<Option<usize>> = vec![None; entries.len()];
    let mut order: Vec<usize> = (0..entries.len()).filter(|i| !duplicate_of(*i)).collect();
    order.sort_by_key(|&i| identities[i].0 == default_key);
    for &i in &order {
        let IdentityKey::CtrlPort { ctrl, port } = identities[i].0 else { continue };
        let pick = if ctrl == -1 {
            (0..ports.len()).find(|j| !used[*j])
        } else {
            ports.iter().position(|p| p.ctrl == ctrl && p.port == port)
        };
        if let Some(j) = pick {
            used[j] = true;
            verdict[i] = Some(j);
        }
    }
    let mut kept = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let key = identities[i].0.clone();
        let only = (key == default_key).then(|| entry.clone());
        let subject = Subject::Device { kind: rule.kind, key: key.clone() };
        if duplicate_of(i) {
            drop_duplicate(run, rule, array, key, entry.clone(), &entries[keeper[i]]);
            continue;
        }
        match verdict[i] {
            Some(j) => {
                let p = &ports[j];
                // An unplugging controller takes its ports with it; where libxl also drops the
                // entry, the rule says why.
                let (class, state, own_rule) = if p.controller_leaving {
                    (
                        Class::Unplugging,
                        ", but the controller is being unplugged",
                        "noloss.usbdev.controller-unplugging",
                    )
                } else {
                    (Class::Consistent, "", "noloss.usbdev.live")
                };
                let (rule_id, libxl_note) =
                    usbdev_libxl_divergence(key != default_key, libxl_has_placeholders).unwrap_or((own_rule, ""));
                run.decisions.push(
                    Decision::new(
                        subject,
                        rule_id,
                        class,
                        Action::Kept,
                        format!(
                            "host device {} is attached at controller {} port {}{state}{libxl_note}",
                            p.busid, p.ctrl, p.port
                        ),
                    )
                    .with_json(Some(entry.clone()))
                    .with_evidence(vec![Evidence::new(p.path.clone(), Some(p.busid.clone()))]),
                );
                if p.controller_leaving {
                    run.steps.push(Step {
                        subject: Subject::Device { kind: rule.kind, key: key.clone() },
                        action: Step_::DropJsonEntry { array, only },
                        because: rule_id,
                    });
                }
                kept.push(entry.clone());
            }
            None => {
                run.steps.push(Step {
                    subject: Subject::Device { kind: rule.kind, key: key.clone() },
                    action: Step_::DropJsonEntry { array, only },
                    because: "noloss.device.json-only",
                });
                run.decisions.push(
                    Decision::new(
                        subject,
                        "noloss.device.json-only",
                        Class::JsonOnly,
                        Action::Dropped,
                        "no usb port holds it: the attach failed or a detach finished",
                    )
                    .with_json(Some(entry.clone())),
                );
            }
        }
    }
    for (p, used) in ports.iter().zip(used) {
        if used {
            continue;
        }
        let key = IdentityKey::CtrlPort { ctrl: p.ctrl, port: p.port };
        if p.controller_leaving {
            run.decisions.push(
                Decision::new(
                    Subject::Device { kind: rule.kind, key },
                    "noloss.usbdev.orphan-port",
                    Class::Orphan,
                    Action::Ignored,
                    format!("host device {} sits on a controller that is being unplugged: it goes with it", p.busid),
                )
                .with_evidence(vec![Evidence::new(p.path.clone(), Some(p.busid.clone()))]),
            );
            continue;
        }
        let mut obj = Object::new();
        obj.insert("ctrl".into(), p.ctrl.into());
        obj.insert("port".into(), p.port.into());
        obj.insert("type.hostdev".into(), Value::Object(Object::new()));
        let entry = Value::Object(obj);
        run.decisions.push(
            Decision::new(Subject::Device { kind: rule.kind, key: key.clone() }, "noloss.device.recovered", Class::Recovered, Action::Recovered, format!("host device {} is attached but missing from the JSON; unknown: hostbus, hostaddr (they live in the host's sysfs)", p.busid))
                .with_evidence(vec![Evidence::new(p.path.clone(), Some(p.busid.clone()))]),
        );
        run.steps.push(Step {
            subject: Subject::Device { kind: rule.kind, key },
            action: Step_::AddJsonEntry { array, entry: entry.clone() },
            because: "noloss.device.recovered",
        });
        kept.push(entry);
    }
    cfg.set_devices(array, kept);
}

fn passthrough_kind(run: &mut Run<'_>, cfg: &DomainConfig, rule: &'static KindRule) {
    let Some(array) = rule.array else { return };
    for (i, entry) in cfg.devices(array).iter().enumerate() {
        run.decisions.push(
            Decision::new(
                Subject::Device { kind: rule.kind, key: IdentityKey::Index(i) },
                "noloss.device.passthrough",
                Class::FromJson,
                Action::Kept,
                "a kind libxl does not merge: the JSON entry passes through",
            )
            .with_json(Some(entry.clone())),
        );
    }
}

/// For each JSON entry, the entry kept of those sharing its identity (`keys`, one per entry;
/// itself when it is the one): the one that says the most (the most values, nested ones
/// counted), then the least by its JSON text, then the first. Never just the first: that would
/// make the outcome depend on the order of the JSON's devices (law 2), when copies of one
/// device differ (a usbdev stored as `xl usbdev-attach` stores it, and as the config file named
/// it). Each group of entries is ranked once, when its first entry is met.
fn kept_of_identity<K: PartialEq>(entries: &[Value], keys: &[K]) -> Vec<usize> {
    fn values_in(v: &Value) -> usize {
        match v {
            Value::Object(m) => m.values().map(values_in).sum(),
            Value::Array(a) => a.iter().map(values_in).sum(),
            _ => 1,
        }
    }
    let mut keeper: Vec<Option<usize>> = vec![None; entries.len()];
    for i in 0..entries.len() {
        if keeper[i].is_some() {
            continue;
        }
        // An entry before `i` with this identity would have placed `i` in its group.
        let group: Vec<usize> = (i..entries.len()).filter(|&j| keys[j] == keys[i]).collect();
        let rank = |&j: &usize| (std::cmp::Reverse(values_in(&entries[j])), entries[j].to_string(), j);
        let kept = if group.len() == 1 { i } else { group.iter().copied().min_by_key(rank).unwrap_or(i) };
        for j in group {
            keeper[j] = Some(kept);
        }
    }
    keeper.into_iter().enumerate().map(|(i, k)| k.unwrap_or(i)).collect()
}

/// Drops a JSON entry that another entry of the same identity, `kept`, stands for.
fn drop_duplicate(
    run: &mut Run<'_>,
    rule: &KindRule,
    array: DeviceArray,
    key: IdentityKey,
    entry: Value,
    kept: &Value,
) {
    let (why, action) = if entry == *kept {
        (
            format!("a second identical JSON entry with {key}: one is kept"),
            Step_::DedupJsonEntries { array, only: Some(entry.clone()) },
        )
    } else {
        (
            format!(
                "another JSON entry with {key} is kept: of entries sharing an identity, the one with the most values"
            ),
            Step_::DropJsonEntry { array, only: Some(entry.clone()) },
        )
    };
    let subject = Subject::Device { kind: rule.kind, key: key.clone() };
    run.decisions.push(
        Decision::new(subject, "noloss.device.duplicate-identity", Class::JsonOnly, Action::Dropped, why)
            .with_json(Some(entry)),
    );
    run.steps.push(Step {
        subject: Subject::Device { kind: rule.kind, key },
        action,
        because: "noloss.device.duplicate-identity",
    });
}

/// Why libxl 4.17 drops a usbdev that no-loss keeps, if it does: the rule id and a clause for
/// the decision's reason. libxl lists usbdevs only as `(ctrl -1, port 0)` placeholders, one per
/// usb controller record, and matches JSON entries against them.
fn usbdev_libxl_divergence(placed: bool, libxl_has_placeholders: bool) -> Option<(&'static str, &'static str)> {
    if placed {
        Some((
            "noloss.usbdev.placed",
            "; libxl 4.17 lists usbdevs only as (ctrl -1, port 0) placeholders, so it drops one stored with its controller and port",
        ))
    } else if !libxl_has_placeholders {
        Some((
            "noloss.usbdev.no-libxl-placeholder",
            "; libxl 4.17 lists one (ctrl -1, port 0) placeholder per usb controller record and this domain has none, so it drops every usbdev",
        ))
    } else {
        None
    }
}
