//! `(JSON replica, xenstore snapshot, hypervisor inputs, policy)` → [`Outcome`].
//!
//! Two policies share the observation code and the rule table:
//! - [`Policy::Libxl417`] reproduces `libxl_retrieve_domain_configuration` of libxl 4.17.7,
//!   warnings, drops and failures included (spec §1).
//! - [`Policy::NoLoss`] (the default) never loses a device that exists at runtime, classifies
//!   every half-baked state, trusts nothing a guest could have written, and plans the repair.

mod libxl417;
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
pub fn xl_list_json(outcomes: &[Outcome]) -> String {
    let items: Vec<serde_json::Value> = outcomes
        .iter()
        .filter_map(|o| o.config.as_ref().ok().map(|c| (o.domid, c)))
        .map(|(domid, c)| {
            let mut m = serde_json::Map::new();
            m.insert("domid".into(), domid.into());
            m.insert("config".into(), serde_json::Value::Object(c.as_object().clone()));
            serde_json::Value::Object(m)
        })
        .collect();
    // xl prints yajl's buffer (which ends in a newline) with `printf("%s\n")`.
    let mut out = crate::config::print::to_libxl_string(&serde_json::Value::Array(items));
    out.push('\n');
    out
}
