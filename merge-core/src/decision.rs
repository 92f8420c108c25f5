//! Decisions: what the engine concluded for each domain-level field and each device, and why.
//!
//! Every decision names its rule, what the JSON said, the xenstore evidence (paths and values),
//! the result, and, for output fields, where each value came from. Decisions are data; the
//! adapter prints them (`xlsync explain`).

use crate::libxl_log::LogLine;
use crate::rules::{DeviceKind, IdentityKey};
use serde_json::Value;
use std::fmt;

/// What a decision is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// A domain-level field, by its JSON location (`c_info.name`, `b_info.max_memkb`, …).
    Field(&'static str),
    /// A device, by kind and identity.
    Device { kind: DeviceKind, key: IdentityKey },
    /// The domain as a whole (a failed retrieve).
    Domain,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Field(name) => f.write_str(name),
            Subject::Device { kind, key } => write!(f, "{kind} {key}"),
            Subject::Domain => f.write_str("domain"),
        }
    }
}

/// The half-baked-state classification (the rows of DESIGN.md's decision table) plus the plain
/// outcomes of domain-level fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Both replicas agree and the device is connected (or the field matches).
    Consistent,
    /// The backend is still coming up (Initialising/InitWait/Initialised) or hotplug pending.
    Plugging,
    /// Backend Closing (5) or `online = 0`: an unplug is under way or stopped half way.
    Unplugging,
    /// Backend Closed (6) and the frontend gone, but the nodes were never reaped.
    UnpluggedNotReaped,
    /// `hotplug-status = error` or an `error/` node.
    Failed,
    /// The JSON lists it and xenstore has no live trace of it.
    JsonOnly,
    /// A live, toolstack-owned device that has no `/libxl` record.
    RecordMissing,
    /// A live, toolstack-owned device missing from the JSON (libxl ignores it).
    XenstoreOnly,
    /// A live, toolstack-owned device missing from the JSON, rebuilt from xenstore.
    Recovered,
    /// Only guest-writable nodes speak for it: not trusted.
    Untrusted,
    /// Leftover nodes with no device: frontend only, backend only or `/libxl` record only.
    Orphan,
    /// A domain-level field overwritten from a runtime source.
    Overwritten,
    /// Taken from the JSON as is.
    FromJson,
    /// The whole retrieve failed, or would crash libxl.
    RetrieveFailed,
}

impl Class {
    /// Whether this class means the replicas disagree (a half-baked state).
    pub fn is_half_baked(self) -> bool {
        !matches!(self, Class::Consistent | Class::Overwritten | Class::FromJson)
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Consistent => "consistent",
            Class::Plugging => "plugging",
            Class::Unplugging => "unplugging",
            Class::UnpluggedNotReaped => "unplugged-not-reaped",
            Class::Failed => "failed",
            Class::JsonOnly => "json-only",
            Class::RecordMissing => "record-missing",
            Class::XenstoreOnly => "xenstore-only",
            Class::Recovered => "recovered",
            Class::Untrusted => "untrusted",
            Class::Orphan => "orphan",
            Class::Overwritten => "overwritten",
            Class::FromJson => "from-json",
            Class::RetrieveFailed => "retrieve-failed",
        }
    }
}

/// What happened to the subject in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// In the output as the JSON had it.
    Kept,
    /// In the output, with fields patched from xenstore.
    Merged,
    /// Removed from the output.
    Dropped,
    /// xenstore evidence not used (libxl's silent ignore, or untrusted evidence).
    Ignored,
    /// Added to the output from xenstore.
    Recovered,
    /// A domain-level field replaced.
    Overwritten,
    /// No output for the domain.
    Failed,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Kept => "kept",
            Action::Merged => "merged",
            Action::Dropped => "dropped",
            Action::Ignored => "ignored",
            Action::Recovered => "recovered",
            Action::Overwritten => "overwritten",
            Action::Failed => "failed",
        }
    }
}

/// Where an output value came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provenance {
    /// The JSON replica, at this location.
    Json(String),
    /// A xenstore node.
    Xenstore(String),
    /// A hypervisor input (`HostInfo`), named.
    Hypervisor(&'static str),
    /// QEMU over QMP.
    Qmp,
    /// A default: nothing said it.
    Default,
}

impl Provenance {
    /// Its text, `json:<at>`, `xenstore:<path>`, `hypervisor:<name>`, `qmp` or `default`, as the
    /// source's prefix and its name: a decision's message is built from them on every domain,
    /// where the formatting machinery costs several times the copy.
    pub(crate) fn text_parts(&self) -> (&'static str, &str) {
        match self {
            Provenance::Json(at) => ("json:", at),
            Provenance::Xenstore(p) => ("xenstore:", p),
            Provenance::Hypervisor(what) => ("hypervisor:", what),
            Provenance::Qmp => ("qmp", ""),
            Provenance::Default => ("default", ""),
        }
    }
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (source, name) = self.text_parts();
        f.write_str(source)?;
        f.write_str(name)
    }
}

/// One xenstore node that a decision rests on. `value` is `None` for an absent node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Evidence {
    pub path: String,
    pub value: Option<String>,
}

impl Evidence {
    pub fn new(path: impl Into<String>, value: Option<String>) -> Evidence {
        Evidence { path: path.into(), value }
    }
}

/// One decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub subject: Subject,
    /// A stable rule id, e.g. `libxl417.device.json-only`.
    pub rule: &'static str,
    pub class: Class,
    pub action: Action,
    /// What the JSON said (the device entry or the field value), if anything.
    pub json: Option<Value>,
    pub evidence: Vec<Evidence>,
    /// Provenance of each output field the decision set.
    pub provenance: Vec<(String, Provenance)>,
    /// Why, in words.
    pub reason: String,
    /// What libxl logs for it, if anything.
    pub libxl_log: Option<LogLine>,
}

impl Decision {
    pub fn new(
        subject: Subject,
        rule: &'static str,
        class: Class,
        action: Action,
        reason: impl Into<String>,
    ) -> Decision {
        Decision {
            subject,
            rule,
            class,
            action,
            json: None,
            evidence: Vec::new(),
            provenance: Vec::new(),
            reason: reason.into(),
            libxl_log: None,
        }
    }

    pub fn with_json(mut self, json: Option<Value>) -> Decision {
        self.json = json;
        self
    }

    pub fn with_evidence(mut self, evidence: Vec<Evidence>) -> Decision {
        self.evidence = evidence;
        self
    }

    pub fn with_provenance(mut self, field: impl Into<String>, p: Provenance) -> Decision {
        self.provenance.push((field.into(), p));
        self
    }

    pub fn with_log(mut self, log: LogLine) -> Decision {
        self.libxl_log = Some(log);
        self
    }
}
