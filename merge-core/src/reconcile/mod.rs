//! `(JSON replica, xenstore snapshot, hypervisor inputs, policy)` → [`Outcome`].
//!
//! Two policies share the observation code and the rule table:
//! - [`Policy::Libxl417`] reproduces `libxl_retrieve_domain_configuration` of libxl 4.17.7,
//!   warnings, drops and failures included (spec §1).
//! - [`Policy::NoLoss`] (the default) never loses a device that exists at runtime, classifies
//!   every half-baked state, trusts nothing a guest could have written, and plans the repair.

pub mod libxl417;
mod noloss;

use crate::config::DomainConfig;
use crate::decision::Decision;
use crate::hypervisor::HostInfo;
use crate::libxl_log::LogLine;
use crate::plan::Plan;
use crate::xenstore::Tree;

/// Which merge to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Policy {
    /// Exactly what libxl 4.17.7 does.
    Libxl417,
    /// Never lose a device that exists; explain and plan.
    #[default]
    NoLoss,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Libxl417 => "libxl-4.17",
            Policy::NoLoss => "no-loss",
        }
    }
}

/// The JSON replica as the userdata file gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonReplica {
    /// No userdata file (domain being created, dom0, a stub domain, an old toolstack).
    Missing,
    /// A zero-length file.
    Empty,
    /// A file that does not parse; the text says why.
    Invalid(String),
    Present(DomainConfig),
}

impl JsonReplica {
    /// A userdata file's bytes (`None`: no file) as libxl 4.17 takes them: a zero-length file
    /// is [`JsonReplica::Empty`]; otherwise only the syntax is checked, because libxl's parser
    /// ignores what it cannot type (what it makes of odd fields is the policy's business).
    pub fn from_userdata(bytes: Option<&[u8]>) -> JsonReplica {
        match bytes {
            None => JsonReplica::Missing,
            Some([]) => JsonReplica::Empty,
            Some(b) => match crate::config::parse_document_unvalidated(b) {
                Ok(crate::config::Document::Bare(c)) => JsonReplica::Present(c),
                Ok(crate::config::Document::Listed(_)) => {
                    JsonReplica::Invalid("an xl list -l array, not a userdata config".into())
                }
                Err(e) => JsonReplica::Invalid(e.to_string()),
            },
        }
    }
}

/// Everything one reconcile needs, as values.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub domid: u32,
    pub json: &'a JsonReplica,
    pub tree: &'a Tree,
    pub host: &'a HostInfo,
}

/// Why there is no merged configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RetrieveError {
    /// libxl's retrieve returns an error (`xl list -l` then omits the domain).
    #[error("retrieve failed: {reason}")]
    Failed { reason: String },
    /// libxl itself would crash (abort, assert or undefined behaviour) on this input; xlsync
    /// stops with this error instead.
    #[error("libxl 4.17 would crash here: {reason} (at {path})")]
    LibxlWouldCrash { path: String, reason: String },
    /// The domain is not in the hypervisor inputs.
    #[error("domain {0} is not in the hypervisor inputs")]
    NoSuchDomain(u32),
    /// No-loss: neither replica configures the domain (no userdata file, no xenstore home),
    /// as before its creation or after a half-created domain is destroyed.
    #[error("domain {0} is not configured: no userdata file and no /local/domain/{0} in xenstore")]
    NotConfigured(u32),
}

/// The result of reconciling one domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub domid: u32,
    pub policy: Policy,
    pub config: Result<DomainConfig, RetrieveError>,
    pub decisions: Vec<Decision>,
    /// What libxl would print on stderr, in order (debug lines included; see
    /// [`LogLine::printed_by_xl`]).
    pub logs: Vec<LogLine>,
    pub plan: Plan,
}

impl Outcome {
    /// Whether any decision names a half-baked state.
    pub fn is_half_baked(&self) -> bool {
        self.decisions.iter().any(|d| d.class.is_half_baked())
    }

    /// The lines xl would print on stderr. A message with an embedded newline (libxl's vtpm
    /// uuid and memory errors end their format string in `\n`) prints as several lines.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.logs
            .iter()
            .filter(|l| l.printed_by_xl())
            .flat_map(|l| l.to_string().split('\n').map(str::to_string).collect::<Vec<_>>())
            .collect()
    }
}

/// The JSON's value of a domain-level `field` (`"c_info.name"`, `"b_info.max_memkb"`).
fn field_value(cfg: &DomainConfig, field: &str) -> Option<serde_json::Value> {
    let (section, key) = field.split_once('.').expect("section.key");
    match section {
        "c_info" => cfg.c_info().and_then(|o| o.get(key)).cloned(),
        _ => cfg.b_info().and_then(|o| o.get(key)).cloned(),
    }
}

/// Sets a domain-level `field` (see [`field_value`]).
fn set_field(cfg: &mut DomainConfig, field: &str, value: Option<serde_json::Value>) {
    let (section, key) = field.split_once('.').expect("section.key");
    match section {
        "c_info" => cfg.set_c_info(key, value),
        _ => cfg.set_b_info(key, value),
    }
}

/// Sets a domain-level `field` to `value` (from `provenance`) and returns the decision that
/// says so under `rule`: consistent when the JSON already held that value, overwritten
/// otherwise. Both policies overwrite the same fields this way.
fn overwrite_field(
    cfg: &mut DomainConfig,
    rule: &'static str,
    field: &'static str,
    value: Option<serde_json::Value>,
    provenance: crate::decision::Provenance,
    evidence: Vec<crate::decision::Evidence>,
) -> Decision {
    use crate::decision::{Action, Class, Subject};
    let old = field_value(cfg, field);
    let class = if old == value { Class::Consistent } else { Class::Overwritten };
    let (source, name) = provenance.text_parts();
    let decision = Decision::new(
        Subject::Field(field),
        rule,
        class,
        Action::Overwritten,
        crate::xenstore::concat(&[field, " comes from ", source, name]),
    )
    .with_json(old)
    .with_evidence(evidence)
    .with_provenance(field, provenance);
    set_field(cfg, field, value);
    decision
}

/// Reconciles one domain under `policy`.
pub fn reconcile(inputs: Inputs<'_>, policy: Policy) -> Outcome {
    match policy {
        Policy::Libxl417 => libxl417::retrieve(inputs),
        Policy::NoLoss => noloss::reconcile(inputs),
    }
}

/// `xl list -l`'s output for the given outcomes: the array of `{"domid", "config"}` for every
/// domain whose retrieve succeeded, in the given order, printed in libxl's layout, followed by
/// the extra newline xl adds.
pub fn xl_list_json<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> String {
    let entries: Vec<String> = outcomes.into_iter().filter_map(xl_list_entry).collect();
    crate::config::print::join_xl_list(&entries)
}

/// A domain's element of [`xl_list_json`]'s array (none without a configuration), to print
/// the domains of a host apart and join them with [`crate::config::print::join_xl_list`].
pub fn xl_list_entry(outcome: &Outcome) -> Option<String> {
    let config = outcome.config.as_ref().ok()?;
    Some(crate::config::print::xl_list_entry(outcome.domid, config.as_object()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(domid: u32, config: Option<serde_json::Value>) -> Outcome {
        Outcome {
            domid,
            policy: Policy::Libxl417,
            config: match config {
                Some(v) => Ok(DomainConfig::from_object(v.as_object().unwrap().clone())),
                None => Err(RetrieveError::NoSuchDomain(domid)),
            },
            decisions: Vec::new(),
            logs: Vec::new(),
            plan: Plan::default(),
        }
    }

    /// The list printed around each config in place is the list printed as one document.
    #[test]
    fn xl_list_json_is_the_whole_document_in_libxl_layout() {
        let a = serde_json::json!({"c_info": {"name": "a\n\"b", "type": "pv"}, "disks": [], "b_info": {"avail_vcpus": [0, 1]}});
        let b = serde_json::json!({});
        for outcomes in [
            vec![],
            vec![outcome(3, None)],
            vec![outcome(1, Some(a.clone()))],
            vec![outcome(1, Some(a)), outcome(2, None), outcome(7, Some(b))],
        ] {
            let items: Vec<serde_json::Value> = outcomes
                .iter()
                .filter_map(|o| {
                    o.config.as_ref().ok().map(|c| serde_json::json!({"domid": o.domid, "config": c.as_object()}))
                })
                .collect();
            let whole = crate::config::print::to_libxl_string(&serde_json::Value::Array(items)) + "\n";
            assert_eq!(xl_list_json(&outcomes), whole);
        }
    }
}
