//! Issue 5's acceptance law: over the differential scenarios of the libxl-parity issue (the
//! same `testkit::host` strategy as `xs-adapter/tests/differential_libxl.rs`, every
//! perturbation kind included), the no-loss output differs from the libxl-4.17 output only
//! where a no-loss decision says why.
//!
//! Both policies are merge-core code and libxl-4.17 parity is proven against the real libxl
//! elsewhere, so this law needs no daemon. For every domain of every generated host, both
//! outcomes are compared piece by piece and each difference must be covered:
//!
//! - **Result kind**: libxl fails, would crash or returns the raw JSON while no-loss merges. The
//!   no-loss decision on the subject libxl failed at (the domain, or the field it could not
//!   read) must say that no-loss did something else than take the runtime value.
//! - **Domain-level fields** (every key of `c_info` and `b_info`): a no-loss decision on that
//!   field must give a provenance different from libxl's, or carry a rule that names the
//!   divergence.
//! - **Devices**, per array, matched by identity key: a device only in one output, or in both
//!   with different fields, needs a no-loss decision on that kind and identity whose class or
//!   rule explains that very change (dropped, recovered, merged field…). A device libxl drops
//!   with its whole kind (one record it cannot parse frees the kind's list) is explained by
//!   evidence naming the node at which libxl's own listing code fails.
//! - Anything else that prints differently (top-level keys, key order) is never explained.
//!
//! Counts (scenarios, domains, differing domains, differences by explanation) are printed for
//! the closing note. `XLSYNC_PROPTEST_CASES` raises the default case count.

use merge_core::config::{print::to_libxl_string, DeviceArray, DomainConfig};
use merge_core::decision::{Action, Class, Decision, Provenance, Subject};
use merge_core::libxl_log::{self, Site};
use merge_core::observe::libxl_list::{libxl_list, Listing};
use merge_core::observe::xs::XsView;
use merge_core::reconcile::{reconcile, Inputs, JsonReplica, Outcome, Policy, RetrieveError};
use merge_core::rules::{disk_devid, json_identity, DeviceKind, IdentityKey, KindRule, RULES};
use merge_core::testkit::{host, Generated, HostProfile};
use merge_core::xenstore::Tree;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

const REGRESSIONS: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../proptest-regressions/merge-core/noloss_vs_libxl.txt");

fn cases() -> u32 {
    std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400)
}

fn json_replica(bytes: Option<&Vec<u8>>) -> JsonReplica {
    JsonReplica::from_userdata(bytes.map(Vec::as_slice))
}

// ---------------------------------------------------------------------------------------------
// Differences

/// How libxl 4.17 ends without a merged configuration.
#[derive(Debug, Clone, PartialEq)]
enum LibxlFailure {
    /// The retrieve returns an error; the log line libxl printed at the failing step.
    Failed { reason: String, site: Option<Site> },
    /// libxl itself would crash.
    Crash { path: String, reason: String },
    /// The name node is missing: libxl returns the unmerged JSON with rc 0.
    RawJson,
}

#[derive(Debug, Clone, PartialEq)]
enum DeviceChange {
    /// In the no-loss output only (libxl dropped or ignored it).
    OnlyNoLoss,
    /// In the libxl output only (no-loss dropped or ignored it).
    OnlyLibxl,
    /// In both, with these keys different.
    Fields(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Difference {
    Result(LibxlFailure),
    /// no-loss has no configuration where libxl has one: never explained.
    NoLossFailed(String),
    /// `c_info.<key>` or `b_info.<key>` prints differently.
    Field {
        field: String,
        libxl: Option<String>,
        noloss: Option<String>,
    },
    Device {
        kind: DeviceKind,
        key: IdentityKey,
        change: DeviceChange,
    },
    /// Anything else: never explained.
    Other(String),
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Result(LibxlFailure::Failed { reason, .. }) => write!(f, "libxl fails ({reason})"),
            Difference::Result(LibxlFailure::Crash { path, reason }) => write!(f, "libxl crashes ({reason} at {path})"),
            Difference::Result(LibxlFailure::RawJson) => f.write_str("libxl returns the raw JSON"),
            Difference::NoLossFailed(e) => write!(f, "no-loss fails where libxl does not: {e}"),
            Difference::Field { field, libxl, noloss } => {
                write!(
                    f,
                    "{field}: libxl {}, no-loss {}",
                    libxl.as_deref().unwrap_or("absent"),
                    noloss.as_deref().unwrap_or("absent")
                )
            }
            Difference::Device { kind, key, change } => match change {
                DeviceChange::OnlyNoLoss => write!(f, "{kind} {key} only in no-loss"),
                DeviceChange::OnlyLibxl => write!(f, "{kind} {key} only in libxl"),
                DeviceChange::Fields(keys) => write!(f, "{kind} {key} differs in {}", keys.join(", ")),
            },
            Difference::Other(what) => f.write_str(what),
        }
    }
}

fn failure_of(libxl: &Outcome) -> Option<LibxlFailure> {
    match &libxl.config {
        Err(RetrieveError::LibxlWouldCrash { path, reason }) => {
            Some(LibxlFailure::Crash { path: path.clone(), reason: reason.clone() })
        }
        Err(e) => {
            let site = libxl.logs.iter().map(|l| l.site).find(|s| failure_subject(*s).is_some());
            Some(LibxlFailure::Failed { reason: e.to_string(), site })
        }
        Ok(_) if libxl.decisions.iter().any(|d| d.rule == "libxl417.name.missing-returns-raw-json") => {
            Some(LibxlFailure::RawJson)
        }
        Ok(_) => None,
    }
}

/// The step libxl gave up at, as the domain-level subject whose no-loss decision must say
/// what no-loss did instead.
fn failure_subject(site: Site) -> Option<Subject> {
    const TABLE: &[(Site, &str)] = &[
        (libxl_log::GET_CONFIG_FAILED, "domain"),
        (libxl_log::QMP_CONNECT_FAILED, "b_info.avail_vcpus"),
        (libxl_log::CPU_MAP_FAILED, "b_info.avail_vcpus"),
        (libxl_log::MEMORY_FAILED, "b_info.target_memkb"),
        (libxl_log::SCHED_FAILED, "b_info.sched_params"),
        (libxl_log::NAME_FAILED, "c_info.name"),
    ];
    TABLE.iter().find(|(s, _)| *s == site).map(|(_, field)| match *field {
        "domain" => Subject::Domain,
        f => Subject::Field(f),
    })
}

fn printed(v: Option<&Value>) -> Option<String> {
    v.map(to_libxl_string)
}

/// Every difference between the two outcomes of one domain.
fn differences(libxl: &Outcome, noloss: &Outcome) -> Vec<Difference> {
    let mut out = Vec::new();
    let failure = failure_of(libxl);
    if let Some(f) = &failure {
        out.push(Difference::Result(f.clone()));
    }
    let (lc, nc) = match (&libxl.config, &noloss.config) {
        (_, Err(e)) => {
            if libxl.config.is_ok() {
                out.push(Difference::NoLossFailed(e.to_string()));
            }
            return out;
        }
        (Err(_), Ok(_)) => return out,
        (Ok(l), Ok(n)) => (l, n),
    };
    if lc.to_libxl_json() == nc.to_libxl_json() {
        return out;
    }
    let before = out.len();
    for section in ["c_info", "b_info"] {
        let empty = serde_json::Map::new();
        let (lo, no) = (
            lc.as_object().get(section).and_then(Value::as_object).unwrap_or(&empty),
            nc.as_object().get(section).and_then(Value::as_object).unwrap_or(&empty),
        );
        let keys: Vec<&String> = lo.keys().chain(no.keys().filter(|k| !lo.contains_key(*k))).collect();
        for k in keys {
            let (l, n) = (printed(lo.get(k)), printed(no.get(k)));
            if l != n {
                out.push(Difference::Field { field: format!("{section}.{k}"), libxl: l, noloss: n });
            }
        }
    }
    for array in DeviceArray::ALL {
        match RULES.iter().find(|r| r.array == Some(array)) {
            Some(rule) => device_differences(rule, lc.devices(array), nc.devices(array), &mut out),
            None if lc.devices(array) != nc.devices(array) => {
                out.push(Difference::Other(format!("{} differs (a kind without a rule)", array.key())))
            }
            None => {}
        }
    }
    let structural = |c: &DomainConfig| -> Vec<(String, Option<String>)> {
        c.as_object()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "c_info" | "b_info") && DeviceArray::from_key(k).is_none())
            .map(|(k, v)| (k.clone(), printed(Some(v))))
            .collect()
    };
    if structural(lc) != structural(nc) {
        out.push(Difference::Other("top-level keys other than c_info, b_info and devices differ".into()));
    }
    if out.len() == before {
        // The pieces agree but the documents do not: key order or layout.
        out.push(Difference::Other("the documents print differently with equal pieces (key order?)".into()));
    }
    out
}

/// Pairs the entries of one array by identity key (identical entries first, then in order)
/// and reports what is unpaired or paired with different fields.
fn device_differences(rule: &KindRule, libxl: &[Value], noloss: &[Value], out: &mut Vec<Difference>) {
    let group = |entries: &[Value]| -> BTreeMap<IdentityKey, Vec<Value>> {
        let mut m: BTreeMap<IdentityKey, Vec<Value>> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            m.entry(json_identity(rule, e, i)).or_default().push(e.clone());
        }
        m
    };
    let (mut lg, mut ng) = (group(libxl), group(noloss));
    let keys: Vec<IdentityKey> =
        lg.keys().chain(ng.keys()).cloned().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    for key in keys {
        let mut l = lg.remove(&key).unwrap_or_default();
        let mut n = ng.remove(&key).unwrap_or_default();
        // Identical entries pair up and need nothing.
        l.retain(|e| match n.iter().position(|x| x == e) {
            Some(j) => {
                n.remove(j);
                false
            }
            None => true,
        });
        let paired = l.len().min(n.len());
        for (a, b) in l.iter().zip(&n) {
            let (ao, bo) = (a.as_object(), b.as_object());
            let fields: Vec<String> = match (ao, bo) {
                (Some(ao), Some(bo)) => ao
                    .keys()
                    .chain(bo.keys().filter(|k| !ao.contains_key(*k)))
                    .filter(|k| printed(ao.get(*k)) != printed(bo.get(*k)))
                    .cloned()
                    .collect(),
                _ => vec!["(not an object)".into()],
            };
            let fields = if fields.is_empty() { vec!["(key order)".into()] } else { fields };
            out.push(Difference::Device { kind: rule.kind, key: key.clone(), change: DeviceChange::Fields(fields) });
        }
        for _ in paired..l.len() {
            out.push(Difference::Device { kind: rule.kind, key: key.clone(), change: DeviceChange::OnlyLibxl });
        }
        for _ in paired..n.len() {
            out.push(Difference::Device { kind: rule.kind, key: key.clone(), change: DeviceChange::OnlyNoLoss });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Explanations

/// Rules whose id says libxl 4.17 loses this device while no-loss keeps it.
const LIBXL_LOSES_BY_RULE: &[&str] =
    &["noloss.device.record-missing", "noloss.usbdev.placed", "noloss.usbdev.no-libxl-placeholder"];

/// Rules that say no-loss computes a domain-level field differently from libxl on purpose.
const FIELD_DIVERGENCE_RULES: &[&str] = &["noloss.field.memory-fudge"];

/// What the explanations may consult besides the two outcomes: the runtime replica.
#[derive(Clone, Copy)]
struct Replica<'a> {
    tree: &'a Tree,
    domid: u32,
}

impl Replica<'_> {
    /// The node at which libxl 4.17's listing of `kind` fails (so it drops every JSON device
    /// of the kind), computed by libxl's own listing code.
    fn libxl_listing_fails_at(&self, kind: DeviceKind) -> Option<String> {
        match libxl_list(&XsView::new(self.tree), self.domid, kind.rule()) {
            Listing::Failed { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Whether two identity keys name the same device: equal, or a disk known by `vdev` on one
/// side and by its xenstore devid on the other.
fn same_device(a: &IdentityKey, b: &IdentityKey) -> bool {
    match (a, b) {
        (IdentityKey::Vdev(Some(v)), IdentityKey::Devid(d)) | (IdentityKey::Devid(d), IdentityKey::Vdev(Some(v))) => {
            disk_devid(v) == Some(*d)
        }
        _ => a == b,
    }
}

fn label(d: &Decision) -> String {
    format!("{} ({})", d.class.name(), d.rule)
}

/// The no-loss decision that explains `diff`, as a label for counting; `Err` says why none does.
fn explain(diff: &Difference, libxl: &Outcome, noloss: &Outcome, replica: Replica<'_>) -> Result<String, String> {
    match diff {
        Difference::Result(failure) => explain_failure(failure, noloss),
        Difference::NoLossFailed(_) | Difference::Other(_) => Err("nothing explains this kind of difference".into()),
        Difference::Field { field, .. } => explain_field(field, libxl, noloss),
        Difference::Device { kind, key, change } => explain_device(*kind, key, change, noloss, replica),
    }
}

fn explain_failure(failure: &LibxlFailure, noloss: &Outcome) -> Result<String, String> {
    let subject = match failure {
        LibxlFailure::RawJson => Some(Subject::Field("c_info.name")),
        LibxlFailure::Failed { site, .. } => site.and_then(failure_subject),
        LibxlFailure::Crash { .. } => None,
    };
    let Some(subject) = subject else {
        return Err("no table entry maps this libxl failure to a subject".into());
    };
    // no-loss must have done something else than take the runtime value libxl choked on.
    noloss
        .decisions
        .iter()
        .find(|d| d.subject == subject && !matches!(d.class, Class::Consistent | Class::Overwritten))
        .map(label)
        .ok_or_else(|| format!("no no-loss decision on {subject} says what it did instead"))
}

fn field_provenance<'a>(d: &'a Decision, field: &str) -> Option<&'a Provenance> {
    d.provenance.iter().find(|(k, _)| k == field).map(|(_, p)| p)
}

fn explain_field(field: &str, libxl: &Outcome, noloss: &Outcome) -> Result<String, String> {
    let on_field = |d: &&Decision| matches!(d.subject, Subject::Field(f) if f == field);
    // Where libxl's value came from: its decision's provenance, else the JSON (the raw-JSON
    // fallback, or a field libxl never touches).
    let json = Provenance::Json(field.to_string());
    let libxl_from = libxl.decisions.iter().filter(on_field).find_map(|d| field_provenance(d, field)).unwrap_or(&json);
    let mut seen = Vec::new();
    for d in noloss.decisions.iter().filter(on_field) {
        if FIELD_DIVERGENCE_RULES.contains(&d.rule) {
            return Ok(label(d));
        }
        match field_provenance(d, field) {
            Some(p) if p != libxl_from => {
                return Ok(format!("{} from {} not {}", label(d), kind_of(p), kind_of(libxl_from)))
            }
            Some(p) => seen.push(format!("{} gives the same provenance as libxl ({p})", label(d))),
            None => seen.push(format!("{} names no provenance", label(d))),
        }
    }
    Err(if seen.is_empty() { "no no-loss decision on this field".into() } else { seen.join("; ") })
}

fn kind_of(p: &Provenance) -> &'static str {
    match p {
        Provenance::Json(_) => "json",
        Provenance::Xenstore(_) => "xenstore",
        Provenance::Hypervisor(_) => "hypervisor",
        Provenance::Qmp => "qmp",
        Provenance::Default => "default",
    }
}

fn explain_device(
    kind: DeviceKind,
    key: &IdentityKey,
    change: &DeviceChange,
    noloss: &Outcome,
    replica: Replica<'_>,
) -> Result<String, String> {
    let about: Vec<&Decision> = noloss
        .decisions
        .iter()
        .filter(|d| matches!(&d.subject, Subject::Device { kind: k, key: dk } if *k == kind && same_device(dk, key)))
        .collect();
    if about.is_empty() {
        return Err(format!("no no-loss decision on {kind} {key}"));
    }
    let listing_fails_at = match change {
        DeviceChange::OnlyNoLoss => replica.libxl_listing_fails_at(kind),
        _ => None,
    };
    let explains = |d: &Decision| match change {
        DeviceChange::OnlyLibxl => {
            matches!(d.action, Action::Dropped | Action::Ignored) && d.class != Class::Consistent
        }
        DeviceChange::OnlyNoLoss => {
            matches!(d.action, Action::Kept | Action::Merged | Action::Recovered)
                && (matches!(d.class, Class::Recovered | Class::RecordMissing)
                    || LIBXL_LOSES_BY_RULE.contains(&d.rule)
                    || listing_fails_at.as_ref().is_some_and(|at| d.evidence.iter().any(|e| e.path == *at)))
        }
        DeviceChange::Fields(fields) => {
            d.action == Action::Merged && d.provenance.iter().any(|(f, _)| fields.contains(f))
        }
    };
    let found = about.iter().find(|d| explains(d));
    let label_of = |d: &Decision| match &listing_fails_at {
        Some(at) if d.evidence.iter().any(|e| e.path == *at) => format!("{} + libxl listing failure", label(d)),
        _ => label(d),
    };
    found.map(|d| label_of(d)).ok_or_else(|| {
        let seen: Vec<String> =
            about.iter().map(|d| format!("{} / {}: {}", label(d), d.action.name(), d.reason)).collect();
        format!("decisions on it do not explain the change: {}", seen.join("; "))
    })
}

// ---------------------------------------------------------------------------------------------
// The law

#[derive(Default)]
struct Tally {
    scenarios: usize,
    domains: usize,
    /// dom0 has no userdata file: libxl fails on it and no-loss rebuilds it, every time.
    dom0: usize,
    differing_domains: usize,
    by_explanation: BTreeMap<String, usize>,
    by_difference: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn print(&self, title: &str) {
        println!(
            "{title}: {} scenarios, {} domains ({} of them dom0), {} domains where no-loss differs from libxl-4.17",
            self.scenarios, self.domains, self.dom0, self.differing_domains
        );
        for (what, n) in &self.by_difference {
            println!("  difference {what}: {n}");
        }
        for (why, n) in &self.by_explanation {
            println!("  explained by {why}: {n}");
        }
    }
}

fn difference_kind(d: &Difference) -> &'static str {
    match d {
        Difference::Result(LibxlFailure::Failed { .. }) => "libxl fails",
        Difference::Result(LibxlFailure::Crash { .. }) => "libxl crashes",
        Difference::Result(LibxlFailure::RawJson) => "libxl raw JSON",
        Difference::NoLossFailed(_) => "no-loss fails",
        Difference::Field { .. } => "domain field",
        Difference::Device { change: DeviceChange::OnlyNoLoss, .. } => "device only in no-loss",
        Difference::Device { change: DeviceChange::OnlyLibxl, .. } => "device only in libxl",
        Difference::Device { change: DeviceChange::Fields(_), .. } => "device fields",
        Difference::Other(_) => "other",
    }
}

/// The unexplained differences of one domain, each with why nothing explains it.
fn unexplained(libxl: &Outcome, noloss: &Outcome, replica: Replica<'_>, tally: Option<&mut Tally>) -> Vec<String> {
    let diffs = differences(libxl, noloss);
    let mut bad = Vec::new();
    let mut counted = Vec::new();
    for d in &diffs {
        match explain(d, libxl, noloss, replica) {
            Ok(why) => counted.push((difference_kind(d), why)),
            Err(why) => bad.push(format!("{d}: {why}")),
        }
    }
    if let Some(t) = tally {
        t.domains += 1;
        if !diffs.is_empty() {
            t.differing_domains += 1;
        }
        for (kind, why) in counted {
            *t.by_difference.entry(kind).or_default() += 1;
            *t.by_explanation.entry(why).or_default() += 1;
        }
    }
    bad
}

fn check_host(g: &Generated, tally: &mut Tally) -> Result<(), TestCaseError> {
    tally.scenarios += 1;
    for domid in g.scenario.host.domains.keys().copied() {
        let json = json_replica(g.scenario.userdata.get(&domid));
        let inputs = Inputs { domid, json: &json, tree: &g.scenario.tree, host: &g.scenario.host };
        let (libxl, noloss) = (reconcile(inputs, Policy::Libxl417), reconcile(inputs, Policy::NoLoss));
        tally.dom0 += usize::from(domid == 0);
        let bad = unexplained(&libxl, &noloss, Replica { tree: &g.scenario.tree, domid }, Some(tally));
        if !bad.is_empty() {
            return Err(TestCaseError::fail(format!(
                "dom {domid}: no-loss differs from libxl-4.17 where no decision says why:\n  {}\n{}",
                bad.join("\n  "),
                g.describe()
            )));
        }
    }
    Ok(())
}

#[test]
fn noloss_differs_from_libxl_only_where_a_decision_says_why() {
    let config = Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..Config::default()
    };
    let tally = RefCell::new(Tally::default());
    let mut runner = TestRunner::new(config);
    let result = runner.run(&host(HostProfile::default()), |g| check_host(&g, &mut tally.borrow_mut()));
    tally.borrow().print("noloss_vs_libxl");
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Non-vacuity: hand-built differences, and the checker reporting them once the explaining
// decision is gone.

mod hand_built {
    use super::*;
    use merge_core::hypervisor::Scheduler;
    use merge_core::protocol::scenario::base_pv;
    use merge_core::testkit;
    use merge_core::xenstore::{Node, Path};

    /// The protocol model's guest: a PV guest with a console, disk xvda and nic 0.
    fn domid() -> u32 {
        base_pv().domid
    }

    /// One domain's replicas, damaged by `damage`, and both outcomes.
    struct Case {
        gen: Generated,
        libxl: Outcome,
        noloss: Outcome,
    }

    impl Case {
        fn new(damage: impl FnOnce(&mut Tree, &mut Option<DomainConfig>)) -> Case {
            let mut gen = testkit::assemble(vec![base_pv()], Scheduler::Credit2, &[]);
            let mut config = gen.configs[&domid()].clone();
            damage(&mut gen.scenario.tree, &mut config);
            let json = match config {
                Some(c) => JsonReplica::Present(c),
                None => JsonReplica::Missing,
            };
            let inputs = Inputs { domid: domid(), json: &json, tree: &gen.scenario.tree, host: &gen.scenario.host };
            let (libxl, noloss) = (reconcile(inputs, Policy::Libxl417), reconcile(inputs, Policy::NoLoss));
            Case { gen, libxl, noloss }
        }

        fn unexplained(&self) -> Vec<String> {
            unexplained(&self.libxl, &self.noloss, Replica { tree: &self.gen.scenario.tree, domid: domid() }, None)
        }

        /// The differences, as text: the case must have the one it was built for.
        fn assert_differs(&self, wanted: &str) {
            let diffs: Vec<String> = differences(&self.libxl, &self.noloss).iter().map(ToString::to_string).collect();
            assert!(diffs.iter().any(|d| d.contains(wanted)), "expected a difference {wanted:?}, got {diffs:?}");
            assert_eq!(self.unexplained(), Vec::<String>::new(), "the untouched decisions must explain {diffs:?}");
        }

        /// Applies `edit` to the no-loss decisions and returns what the checker then reports.
        fn without(&self, edit: impl FnOnce(&mut Vec<Decision>)) -> Vec<String> {
            let mut noloss = self.noloss.clone();
            edit(&mut noloss.decisions);
            unexplained(&self.libxl, &noloss, Replica { tree: &self.gen.scenario.tree, domid: domid() }, None)
        }
    }

    fn is_device(d: &Decision, kind: DeviceKind, key: &IdentityKey) -> bool {
        matches!(&d.subject, Subject::Device { kind: k, key: dk } if *k == kind && dk == key)
    }

    fn reports(unexplained: &[String], wanted: &str) -> bool {
        unexplained.iter().any(|u| u.contains(wanted))
    }

    fn set(tree: &mut Tree, at: &str, value: &str) {
        tree.insert(Path::new(at).unwrap(), Node::new(value.as_bytes().to_vec()));
    }

    /// A nic missing from the JSON: libxl ignores it, no-loss recovers it. Stripping the
    /// decision, moving it to another identity or making it a plain "consistent" one leaves
    /// the difference unexplained.
    #[test]
    fn a_recovered_device_needs_its_own_decision() {
        let case = Case::new(|_, c| {
            let c = c.as_mut().unwrap();
            c.set_devices(DeviceArray::Nics, Vec::new());
        });
        case.assert_differs("nic devid 0 only in no-loss");
        let nic0 = IdentityKey::Devid(0);
        let stripped = case.without(|ds| ds.retain(|d| !is_device(d, DeviceKind::Nic, &nic0)));
        assert!(reports(&stripped, "nic devid 0 only in no-loss: no no-loss decision on nic devid 0"), "{stripped:?}");
        let moved = case.without(|ds| {
            for d in ds.iter_mut().filter(|d| is_device(d, DeviceKind::Nic, &nic0)) {
                d.subject = Subject::Device { kind: DeviceKind::Nic, key: IdentityKey::Devid(7) };
            }
        });
        assert!(reports(&moved, "nic devid 0 only in no-loss"), "{moved:?}");
        let other_kind = case.without(|ds| {
            for d in ds.iter_mut().filter(|d| is_device(d, DeviceKind::Nic, &nic0)) {
                d.subject = Subject::Device { kind: DeviceKind::Vtpm, key: nic0.clone() };
            }
        });
        assert!(reports(&other_kind, "nic devid 0 only in no-loss"), "{other_kind:?}");
        let plain = case.without(|ds| {
            for d in ds.iter_mut().filter(|d| is_device(d, DeviceKind::Nic, &nic0)) {
                (d.class, d.rule, d.action) = (Class::Consistent, "noloss.device.live", Action::Kept);
            }
        });
        assert!(reports(&plain, "do not explain the change"), "{plain:?}");
    }

    /// A disk whose JSON entry is duplicated: libxl keeps both, no-loss drops the second.
    #[test]
    fn a_dropped_duplicate_needs_a_dropping_decision() {
        let case = Case::new(|_, c| {
            let c = c.as_mut().unwrap();
            let mut disks = c.devices(DeviceArray::Disks).to_vec();
            disks.push(disks[0].clone());
            c.set_devices(DeviceArray::Disks, disks);
        });
        case.assert_differs("disk vdev xvda only in libxl");
        let xvda = IdentityKey::Vdev(Some("xvda".into()));
        let stripped =
            case.without(|ds| ds.retain(|d| !(is_device(d, DeviceKind::Disk, &xvda) && d.action == Action::Dropped)));
        assert!(reports(&stripped, "disk vdev xvda only in libxl: decisions on it do not explain"), "{stripped:?}");
    }

    /// `/libxl/<D>/device/virtio_disk` next to `vbd`: libxl cannot list any disk and drops
    /// them; no-loss keeps them and names the node. Without that evidence, unexplained.
    #[test]
    fn a_kind_libxl_cannot_list_needs_the_failing_node() {
        let case = Case::new(|tree, _| set(tree, &format!("/libxl/{}/device/virtio_disk", domid()), ""));
        case.assert_differs("disk vdev xvda only in no-loss");
        let at = format!("/libxl/{}/device/virtio_disk", domid());
        let stripped = case.without(|ds| {
            for d in ds.iter_mut() {
                d.evidence.retain(|e| e.path != at);
            }
        });
        assert!(reports(&stripped, "disk vdev xvda only in no-loss"), "{stripped:?}");
    }

    /// No `video_memkb` in the JSON: libxl's fudge wraps to target - 1. The decision naming
    /// the divergence explains it; the generic runtime rule (same provenance as libxl) does not.
    #[test]
    fn a_field_difference_needs_another_provenance_or_a_divergence_rule() {
        let case = Case::new(|_, c| {
            let c = c.as_mut().unwrap();
            c.set_b_info("video_memkb", None);
        });
        case.assert_differs("b_info.target_memkb");
        let generic = case.without(|ds| {
            for d in ds.iter_mut().filter(|d| d.subject == Subject::Field("b_info.target_memkb")) {
                d.rule = "noloss.field.runtime";
            }
        });
        assert!(reports(&generic, "gives the same provenance as libxl"), "{generic:?}");
        let stripped = case.without(|ds| ds.retain(|d| d.subject != Subject::Field("b_info.target_memkb")));
        assert!(reports(&stripped, "b_info.target_memkb: libxl"), "{stripped:?}");
    }

    /// No userdata file: libxl fails, no-loss rebuilds; the decision on the domain must say so.
    /// The missing name node (libxl's raw-JSON fallback) likewise needs the name's decision.
    #[test]
    fn a_libxl_failure_needs_the_decision_on_what_it_failed_at() {
        let case = Case::new(|_, c| *c = None);
        case.assert_differs("libxl fails");
        let stripped = case.without(|ds| ds.retain(|d| d.subject != Subject::Domain));
        assert!(reports(&stripped, "no no-loss decision on domain"), "{stripped:?}");

        let case = Case::new(|tree, _| {
            tree.remove_subtree(&Path::new(&format!("/local/domain/{}/name", domid())).unwrap());
        });
        case.assert_differs("libxl returns the raw JSON");
        let stripped = case.without(|ds| ds.retain(|d| d.subject != Subject::Field("c_info.name")));
        assert!(reports(&stripped, "no no-loss decision on c_info.name"), "{stripped:?}");
    }

    /// A change no decision could own (a key no-loss made up) is always reported.
    #[test]
    fn an_undecided_change_is_always_reported() {
        let mut case = Case::new(|_, _| {});
        assert!(differences(&case.libxl, &case.noloss).is_empty(), "a clean host must agree byte for byte");
        if let Ok(c) = case.noloss.config.as_mut() {
            c.set_c_info("pool_name", Some("invented".into()));
            c.set_top("on_crash", Some("preserve".into()));
        }
        let found = case.unexplained();
        assert!(reports(&found, "c_info.pool_name"), "{found:?}");
        assert!(reports(&found, "top-level keys"), "{found:?}");
    }
}
