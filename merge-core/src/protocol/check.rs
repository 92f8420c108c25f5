//! The laws checked at every reachable state of a scenario.
//!
//! - **Crash atomicity (law 7)**, under no-loss: the retrieved configuration equals one of the
//!   scenario's intended configurations (before, or after some of its operations), or the
//!   decisions name a half-baked class and the plan, applied, leads to one of them. A device
//!   rebuilt from xenstore cannot know the fields xenstore does not hold, so a restoration is
//!   either exact or by identity: same domain fields, same devices by identity key (reported
//!   separately). Every half-baked state's plan must restore, even when its configuration is
//!   already an intended one. Before a creation the domain does not exist: no-loss retrieves
//!   no configuration ([`RetrieveError::NotConfigured`]), and that is what `before` is. A
//!   creation without its JSON cannot be finished (the template is in neither replica): no-loss
//!   names it (`noloss.domain.creation-unfinished`) and its plan destroys the half-created
//!   domain, which restores `before` like any other plan; no exception is made for it.
//! - **Convergence (law 4)**: applying the plan and reconciling again gives no half-baked
//!   decision and an empty plan.
//! - libxl 4.17's result is computed too, so tests can assert its known losses.

use super::scenario::Scenario;
use super::world::Replicas;
use crate::config::{DeviceArray, DomainConfig};
use crate::decision::Class;
use crate::plan;
use crate::reconcile::{reconcile, Inputs, JsonReplica, Outcome, Policy, RetrieveError};
use crate::rules::{json_identity, IdentityKey, IdentityRule, RULES};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// The crash-atomicity verdict of one state.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Atomicity {
    /// The configuration is this intended one, byte for byte (and if the state is half-baked,
    /// its plan restores one too).
    Equals(String),
    /// Half-baked, and the plan restores this intended configuration: exactly, or by identity
    /// (recovered devices lack what xenstore cannot hold).
    Restores { to: String, exact: bool },
    /// Law 7 does not hold.
    Violation(String),
}

impl Atomicity {
    pub fn is_violation(&self) -> bool {
        matches!(self, Atomicity::Violation(_))
    }

    /// A short name for counting (`equals before`, `restores by identity`, …).
    pub fn summary(&self) -> String {
        match self {
            Atomicity::Equals(to) => format!("equals {}", if to == "before" { "before" } else { "after" }),
            Atomicity::Restores { exact: true, .. } => "half-baked, plan restores exactly".into(),
            Atomicity::Restores { exact: false, .. } => "half-baked, plan restores by identity".into(),
            Atomicity::Violation(_) => "VIOLATION".into(),
        }
    }
}

/// Everything checked about one pair of replicas.
#[derive(Debug, Clone)]
pub struct StateCheck {
    pub noloss: Outcome,
    pub libxl: Outcome,
    /// The most telling no-loss class (for colouring).
    pub class: Class,
    pub atomicity: Atomicity,
    /// `Err` lists what is still half-baked (or planned) after the plan.
    pub convergence: Result<(), String>,
}

/// Checks states of one scenario, caching by replica content.
pub struct Checker<'a> {
    scenario: &'a Scenario,
    /// `None`: the domain does not exist (before a creation).
    accepted: Vec<(String, Option<DomainConfig>)>,
    cache: HashMap<u64, Vec<(Replicas, Arc<StateCheck>)>>,
}

/// The order in which classes colour a state: the rarest, most urgent first.
const PRIORITY: [Class; 12] = [
    Class::RetrieveFailed,
    Class::Failed,
    Class::Untrusted,
    Class::Orphan,
    Class::JsonOnly,
    Class::XenstoreOnly,
    Class::Recovered,
    Class::RecordMissing,
    Class::UnpluggedNotReaped,
    Class::Unplugging,
    Class::Plugging,
    Class::Consistent,
];

/// The class a state is coloured by.
pub fn dominant_class(outcome: &Outcome) -> Class {
    let present: BTreeSet<Class> = outcome.decisions.iter().map(|d| d.class).collect();
    PRIORITY.iter().copied().find(|c| present.contains(c)).unwrap_or(Class::Consistent)
}

const IMPLICIT_USBDEV: IdentityKey = IdentityKey::CtrlPort { ctrl: -1, port: 0 };
const ANY: &str = "*";

/// Whether `got` and `wanted` have the same devices, an [`ANY`] on either side matching one
/// device of the other.
fn same_devices(got: &BTreeMap<&'static str, Vec<String>>, wanted: &BTreeMap<&'static str, Vec<String>>) -> bool {
    let empty = Vec::new();
    let arrays: BTreeSet<&&str> = got.keys().chain(wanted.keys()).collect();
    arrays.into_iter().all(|array| {
        let (mut g, mut w) = (got.get(*array).unwrap_or(&empty).clone(), wanted.get(*array).unwrap_or(&empty).clone());
        g.retain(|id| match w.iter().position(|x| x == id && id != ANY) {
            Some(i) => {
                w.remove(i);
                false
            }
            None => true,
        });
        let count_any = |v: &Vec<String>| v.iter().filter(|x| *x == ANY).count();
        let (g_any, w_any) = (count_any(&g), count_any(&w));
        let (g_rest, w_rest) = (g.len() - g_any, w.len() - w_any);
        // A plain leftover needs a wildcard on the other side; wildcards take anything.
        let within = g_rest <= w_any && g.len() <= w.len();
        within && g.len() == w.len() && w_rest <= g_any
    })
}

/// A config's domain fields (device arrays emptied) and its devices by identity.
fn identity_view(config: &DomainConfig) -> (String, BTreeMap<&'static str, Vec<String>>) {
    let mut bare = config.clone();
    let mut devices = BTreeMap::new();
    for array in DeviceArray::ALL {
        let rule = RULES.iter().find(|r| r.array == Some(array));
        let mut ids: Vec<String> = config
            .devices(array)
            .iter()
            .enumerate()
            .map(|(i, e)| match rule {
                // An xl `usbdev=` line without controller and port takes whichever port
                // libxl picks: it matches any placement.
                Some(r) if r.identity == IdentityRule::CtrlPort && json_identity(r, e, i) == IMPLICIT_USBDEV => {
                    ANY.to_string()
                }
                Some(r) if r.identity != IdentityRule::None => json_identity(r, e, i).to_string(),
                _ => e.to_string(),
            })
            .collect();
        ids.sort();
        devices.insert(array.key(), ids);
        bare.set_devices(array, Vec::new());
    }
    (bare.to_libxl_json(), devices)
}

impl<'a> Checker<'a> {
    /// Fails if an intended state is itself half-baked or fails to reconcile: the scenario
    /// would be wrong, not the engine.
    pub fn new(scenario: &'a Scenario) -> Result<Checker<'a>, String> {
        let mut accepted = Vec::new();
        for (name, r) in &scenario.intended {
            let out = run(scenario, r, Policy::NoLoss);
            if out.is_half_baked() {
                let half = half_baked(&out);
                return Err(format!("{}: intended state `{name}` is half-baked:\n{}", scenario.name, half.join("\n")));
            }
            let config = retrieved(&out)
                .map_err(|e| format!("{}: intended state `{name}` does not reconcile: {e}", scenario.name))?;
            accepted.push((name.clone(), config));
        }
        Ok(Checker { scenario, accepted, cache: HashMap::new() })
    }

    /// The intended configurations, by name (`None`: the domain does not exist).
    pub fn accepted(&self) -> &[(String, Option<DomainConfig>)] {
        &self.accepted
    }

    /// Checks one pair of replicas (cached).
    pub fn check(&mut self, r: &Replicas) -> Arc<StateCheck> {
        let fp = r.fingerprint();
        if let Some(hit) = self.cache.get(&fp).and_then(|v| v.iter().find(|(k, _)| k == r)) {
            return hit.1.clone();
        }
        let result = Arc::new(self.compute(r));
        self.cache.entry(fp).or_default().push((r.clone(), result.clone()));
        result
    }

    /// The number of distinct replica pairs checked so far.
    pub fn distinct_states(&self) -> usize {
        self.cache.values().map(Vec::len).sum()
    }

    fn compute(&self, r: &Replicas) -> StateCheck {
        let noloss = run(self.scenario, r, Policy::NoLoss);
        let libxl = run(self.scenario, r, Policy::Libxl417);
        let class = dominant_class(&noloss);
        let (atomicity, convergence) = match retrieved(&noloss) {
            Ok(config) => {
                let base = match (&r.json, &config) {
                    (JsonReplica::Present(c), _) => c.clone(),
                    // Without JSON the repair writes a new file: the rebuilt domain fields,
                    // to which the plan adds the devices (each recovered device has its
                    // add-json-entry step, so starting from the merged devices would list
                    // them twice).
                    (_, Some(merged)) => {
                        let mut c = merged.clone();
                        for array in DeviceArray::ALL {
                            c.set_devices(array, Vec::new());
                        }
                        c
                    }
                    // No domain: the plan is empty and writes no file.
                    (_, None) => DomainConfig::default(),
                };
                let (json2, tree2) = plan::apply_replicas(&noloss.plan, &base, &r.tree);
                let json2 = json2.map_or(JsonReplica::Missing, JsonReplica::Present);
                let again = run(self.scenario, &Replicas { json: json2, tree: tree2 }, Policy::NoLoss);
                let convergence = converged(&again);
                (self.atomicity(&noloss, config.as_ref(), &again), convergence)
            }
            Err(e) => (Atomicity::Violation(format!("no-loss failed: {e}")), Err(format!("no-loss failed: {e}"))),
        };
        StateCheck { noloss, libxl, class, atomicity, convergence }
    }

    /// The intended configuration printed as `text` (`None`: no domain), by name.
    fn intended_equal_to(&self, text: Option<&str>) -> Option<String> {
        self.accepted
            .iter()
            .find(|(_, c)| c.as_ref().map(DomainConfig::to_libxl_json).as_deref() == text)
            .map(|(n, _)| n.clone())
    }

    fn atomicity(&self, noloss: &Outcome, config: Option<&DomainConfig>, repaired: &Outcome) -> Atomicity {
        let equal = self.intended_equal_to(config.map(DomainConfig::to_libxl_json).as_deref());
        if !noloss.is_half_baked() {
            return match equal {
                Some(name) => Atomicity::Equals(name),
                None => Atomicity::Violation(
                    "a configuration that is neither before nor after, with no half-baked decision".into(),
                ),
            };
        }
        let after_plan = match retrieved(repaired) {
            Ok(c) => c,
            Err(e) => return Atomicity::Violation(format!("reconcile fails after the plan: {e}")),
        };
        let restored = match self.intended_equal_to(after_plan.as_ref().map(DomainConfig::to_libxl_json).as_deref()) {
            Some(name) => Some((name, true)),
            None => after_plan.as_ref().and_then(|after_plan| {
                let (fields, devices) = identity_view(after_plan);
                self.accepted
                    .iter()
                    .find(|(_, c)| {
                        c.as_ref().is_some_and(|c| {
                            let (f, d) = identity_view(c);
                            f == fields && same_devices(&devices, &d)
                        })
                    })
                    .map(|(n, _)| (n.clone(), false))
            }),
        };
        match (restored, equal) {
            (Some(_), Some(name)) => Atomicity::Equals(name),
            (Some((to, exact)), None) => Atomicity::Restores { to, exact },
            (None, _) => Atomicity::Violation(
                "half-baked, and the plan leads to a configuration that is neither before nor after".into(),
            ),
        }
    }
}

/// What no-loss retrieved: a configuration, or `None` where neither replica configures the
/// domain (the state before a creation). Any other failure is an error.
fn retrieved(o: &Outcome) -> Result<Option<DomainConfig>, String> {
    match &o.config {
        Ok(c) => Ok(Some(c.clone())),
        Err(RetrieveError::NotConfigured(_)) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The half-baked decisions of an outcome, one line each.
fn half_baked(o: &Outcome) -> Vec<String> {
    o.decisions
        .iter()
        .filter(|d| d.class.is_half_baked())
        .map(|d| format!("{} {}: {}", d.subject, d.class.name(), d.reason))
        .collect()
}

fn converged(again: &Outcome) -> Result<(), String> {
    let half = half_baked(again);
    if !half.is_empty() {
        return Err(format!("still half-baked after the plan: {}", half.join("; ")));
    }
    if !again.plan.is_empty() {
        let steps: Vec<String> = again.plan.steps.iter().map(ToString::to_string).collect();
        return Err(format!("a plan remains after the plan: {}", steps.join("; ")));
    }
    Ok(())
}

/// Reconciles the scenario's domain from these replicas.
pub fn run(scenario: &Scenario, r: &Replicas, policy: Policy) -> Outcome {
    reconcile(Inputs { domid: scenario.domid, json: &r.json, tree: &r.tree, host: &scenario.host }, policy)
}

/// A config's devices by identity, per array (for assertions about what was kept or lost).
pub fn device_identities(config: &DomainConfig) -> BTreeMap<&'static str, Vec<String>> {
    identity_view(config).1.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}
