//! Runs the engine on the loaded inputs and renders what it concluded: the explanation (a table
//! per domain, or JSON), the repair plan as text, and the libxl output of `retrieve`.

use super::inputs::{DomainInputs, InputNote, LoadedHost};
use merge_core::decision::{Class, Decision, Subject};
use merge_core::hypervisor::HostInfo;
use merge_core::plan::Step;
use merge_core::reconcile::{reconcile, Inputs, Outcome, Policy};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// One domain's inputs and the engine's outcome.
#[derive(Debug, Clone)]
pub struct Reconciled {
    pub inputs: DomainInputs,
    pub outcome: Outcome,
}

impl Reconciled {
    /// The domain's name as the outcome (or failing that, xenstore) gives it.
    pub fn name(&self) -> Option<String> {
        if let Ok(c) = &self.outcome.config {
            if let Some(n) = c.name() {
                return Some(n.to_string());
            }
        }
        self.inputs.tree.text(&format!("/local/domain/{}/name", self.inputs.domid)).map(str::to_string)
    }

    fn decisions<'a>(&'a self, f: impl Fn(&Subject) -> bool + 'a) -> impl Iterator<Item = &'a Decision> + 'a {
        self.outcome.decisions.iter().filter(move |d| f(&d.subject))
    }

    pub fn device_decisions(&self) -> impl Iterator<Item = &Decision> {
        self.decisions(|s| matches!(s, Subject::Device { .. }))
    }

    pub fn field_decisions(&self) -> impl Iterator<Item = &Decision> {
        self.decisions(|s| matches!(s, Subject::Field(_)))
    }

    pub fn domain_decisions(&self) -> impl Iterator<Item = &Decision> {
        self.decisions(|s| matches!(s, Subject::Domain))
    }

    pub fn half_baked_count(&self) -> usize {
        self.outcome.decisions.iter().filter(|d| d.class.is_half_baked()).count()
    }

    /// The merged value of a domain-level field (`c_info.name`), if the retrieve succeeded.
    fn field_value(&self, field: &str) -> Option<&Value> {
        let config = self.outcome.config.as_ref().ok()?;
        let (section, key) = field.split_once('.')?;
        match section {
            "c_info" => config.c_info()?.get(key),
            "b_info" => config.b_info()?.get(key),
            _ => None,
        }
    }
}

/// Reconciles every loaded domain, in the order given.
///
/// Domains are independent (merge-core is pure and a snapshot is shared read-only), so a host
/// is split over the available cores; the result does not depend on how.
pub fn reconcile_all(loaded: LoadedHost) -> Vec<Reconciled> {
    let LoadedHost { policy, host, domains, .. } = loaded;
    super::par::map(domains, |inputs| reconcile_one(&host, policy, inputs))
}

/// Reconciles one domain of `host`.
pub fn reconcile_one(host: &HostInfo, policy: Policy, inputs: DomainInputs) -> Reconciled {
    let outcome = reconcile(Inputs { domid: inputs.domid, json: &inputs.json, tree: &inputs.tree, host }, policy);
    Reconciled { inputs, outcome }
}

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    pub on: bool,
}

impl Paint {
    fn wrap(self, code: &str, s: &str) -> String {
        if self.on && !s.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    pub fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }

    pub fn dim(self, s: &str) -> String {
        self.wrap("2", s)
    }

    /// A class name in the colour of its severity.
    pub fn class(self, class: Class, s: &str) -> String {
        self.wrap(Tone::of(class).ansi(), s)
    }
}

/// How a class reads: the one table behind both the terminal colours and the DOT fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// The replicas agree.
    Agreement,
    /// Under way; may settle by itself.
    Transient,
    /// Needs a repair to finish what was started.
    Unfinished,
    /// Something libxl would lose, kept.
    Kept,
    /// Lost, failed or dropped.
    Loss,
    /// Evidence a guest wrote.
    Guest,
}

impl Tone {
    pub fn of(class: Class) -> Tone {
        match class {
            Class::Consistent | Class::FromJson | Class::Overwritten => Tone::Agreement,
            Class::Plugging => Tone::Transient,
            Class::Unplugging | Class::UnpluggedNotReaped | Class::RecordMissing | Class::Orphan => Tone::Unfinished,
            Class::Recovered | Class::XenstoreOnly => Tone::Kept,
            Class::Failed | Class::JsonOnly | Class::RetrieveFailed => Tone::Loss,
            Class::Untrusted => Tone::Guest,
        }
    }

    /// The ANSI SGR code: green, cyan, yellow, bold green, bold red, magenta.
    pub fn ansi(self) -> &'static str {
        match self {
            Tone::Agreement => "32",
            Tone::Transient => "36",
            Tone::Unfinished => "33",
            Tone::Kept => "1;32",
            Tone::Loss => "1;31",
            Tone::Guest => "35",
        }
    }

    /// A light fill of the same hue, for Graphviz.
    pub fn fill(self) -> &'static str {
        match self {
            Tone::Agreement => "#d9f2d9",
            Tone::Transient => "#d6eef5",
            Tone::Unfinished => "#fff0c2",
            Tone::Kept => "#b9e6b9",
            Tone::Loss => "#f7c6c6",
            Tone::Guest => "#ecd0ec",
        }
    }
}

/// Pads `styled` (whose visible text is `plain`) to `width` columns.
fn pad(styled: &str, plain: &str, width: usize) -> String {
    let n = plain.chars().count();
    format!("{styled}{}", " ".repeat(width.saturating_sub(n)))
}

/// A JSON value in one short line.
fn compact(v: &Value) -> String {
    const MAX: usize = 48;
    let s = v.to_string();
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX - 1).collect();
        format!("{cut}…")
    } else {
        s
    }
}

fn status_line(r: &Reconciled) -> (Class, String) {
    if let Err(e) = &r.outcome.config {
        return (Class::RetrieveFailed, format!("no configuration: {e}"));
    }
    match r.half_baked_count() {
        0 => (Class::Consistent, "consistent".to_string()),
        n => (Class::Unplugging, format!("half-baked: {n} decision{}", if n == 1 { "" } else { "s" })),
    }
}

/// `domain 3 "mail" <middle> half-baked: 2 decisions`.
fn heading(r: &Reconciled, middle: &str, paint: Paint) -> String {
    let (status_class, status) = status_line(r);
    let name = r.name().map(|n| format!(" {n:?}")).unwrap_or_default();
    let title = paint.bold(&format!("domain {}{name}", r.inputs.domid));
    let status = paint.class(status_class, &status);
    if middle.is_empty() {
        format!("{title}: {status}")
    } else {
        format!("{title} {middle} {status}")
    }
}

fn note_source(n: &InputNote) -> String {
    if n.defaulted {
        format!("defaulted: {}", n.source)
    } else {
        n.source.clone()
    }
}

/// Rows of cells with a header, printed as aligned columns; a cell is `(styled, plain)`.
struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<(String, String)>>,
    /// Extra lines printed under a row, indented to the second column.
    notes: Vec<Vec<String>>,
}

impl Table {
    fn new(header: Vec<&'static str>) -> Table {
        Table { header, rows: Vec::new(), notes: Vec::new() }
    }

    fn row(&mut self, cells: Vec<(String, String)>, notes: Vec<String>) {
        self.rows.push(cells);
        self.notes.push(notes);
    }

    fn render(&self, out: &mut String, indent: &str, paint: Paint) {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (i, (_, plain)) in row.iter().enumerate().take(cols - 1) {
                widths[i] = widths[i].max(plain.chars().count());
            }
        }
        let mut line = String::from(indent);
        for (i, h) in self.header.iter().enumerate() {
            let cell = if i + 1 < cols { pad(&paint.bold(h), h, widths[i] + 2) } else { paint.bold(h) };
            line.push_str(&cell);
        }
        let _ = writeln!(out, "{}", line.trim_end());
        let second = indent.len() + widths[0] + 2;
        for (row, notes) in self.rows.iter().zip(&self.notes) {
            let mut line = String::from(indent);
            for (i, (styled, plain)) in row.iter().enumerate() {
                // A last cell may hold several lines (evidence): align them under it.
                if i + 1 == cols {
                    let lead = line.chars().count();
                    let mut parts = styled.split('\n');
                    line.push_str(parts.next().unwrap_or(""));
                    for p in parts {
                        let _ = writeln!(out, "{}", line.trim_end());
                        line = format!("{}{p}", " ".repeat(lead));
                    }
                } else {
                    line.push_str(&pad(styled, plain, widths[i] + 2));
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
            for n in notes {
                let _ = writeln!(out, "{}{}", " ".repeat(second), paint.dim(n));
            }
        }
    }
}

/// The human explanation of every domain.
pub fn explain_text(results: &[Reconciled], policy: Policy, paint: Paint) -> String {
    let mut out = String::new();
    if results.is_empty() {
        let _ = writeln!(out, "no guest domains in the snapshot");
    }
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        explain_domain(&mut out, r, policy, paint);
    }
    if results.len() > 1 {
        let half_baked = results.iter().filter(|r| r.outcome.is_half_baked()).count();
        let steps: usize = results.iter().map(|r| r.outcome.plan.steps.len()).sum();
        let _ = writeln!(
            out,
            "\n{} {} domains, {half_baked} half-baked, {steps} repair steps",
            paint.bold("summary:"),
            results.len()
        );
    }
    out
}

fn explain_domain(out: &mut String, r: &Reconciled, policy: Policy, paint: Paint) {
    let _ = writeln!(out, "{}", heading(r, &paint.dim(&format!("({})", policy.name())), paint));
    for d in r.domain_decisions() {
        let _ = writeln!(out, "  {} {}", paint.class(d.class, d.class.name()), d.reason);
    }

    let _ = writeln!(out, "  {}", paint.bold("inputs"));
    let mut t = Table::new(vec!["INPUT", "VALUE", "SOURCE"]);
    for n in &r.inputs.notes {
        let source = note_source(n);
        let styled = if n.defaulted { paint.class(Class::Unplugging, &source) } else { source.clone() };
        t.row(
            vec![(n.input.to_string(), n.input.to_string()), (n.value.clone(), n.value.clone()), (styled, source)],
            vec![],
        );
    }
    t.render(out, "    ", paint);

    let fields: Vec<&Decision> = r.field_decisions().collect();
    if !fields.is_empty() {
        let _ = writeln!(out, "  {}", paint.bold("fields"));
        let mut t = Table::new(vec!["FIELD", "VALUE", "CLASS", "SOURCE"]);
        for d in fields {
            let field = d.subject.to_string();
            let value = r.field_value(&field).map(compact).unwrap_or_else(|| "(absent)".to_string());
            let source = if d.provenance.is_empty() {
                d.rule.to_string()
            } else {
                d.provenance.iter().map(|(_, p)| p.to_string()).collect::<Vec<_>>().join(", ")
            };
            let notes = if d.class.is_half_baked() || d.class == Class::FromJson {
                vec![format!("why: {}", d.reason)]
            } else {
                vec![]
            };
            t.row(
                vec![
                    (field.clone(), field),
                    (value.clone(), value),
                    (paint.class(d.class, d.class.name()), d.class.name().to_string()),
                    (source.clone(), source),
                ],
                notes,
            );
        }
        t.render(out, "    ", paint);
    }

    let devices: Vec<&Decision> = r.device_decisions().collect();
    let _ = writeln!(out, "  {}", paint.bold("devices"));
    if devices.is_empty() {
        let _ = writeln!(out, "    (none)");
    } else {
        let mut t = Table::new(vec!["DEVICE", "CLASS", "ACTION", "EVIDENCE"]);
        for d in devices {
            let subject = d.subject.to_string();
            let evidence = if d.evidence.is_empty() {
                "(no xenstore evidence)".to_string()
            } else {
                d.evidence
                    .iter()
                    .map(|e| match &e.value {
                        Some(v) => format!("{} = {v}", e.path),
                        None => format!("{} (absent)", e.path),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            // "backend Connected" on every healthy device is noise; anything else is the point.
            let mut notes = if d.class == Class::Consistent { vec![] } else { vec![format!("why: {}", d.reason)] };
            if let Some(log) = &d.libxl_log {
                notes.push(format!("libxl logs: {log}"));
            }
            t.row(
                vec![
                    (subject.clone(), subject),
                    (paint.class(d.class, d.class.name()), d.class.name().to_string()),
                    (d.action.name().to_string(), d.action.name().to_string()),
                    (evidence.clone(), evidence),
                ],
                notes,
            );
        }
        t.render(out, "    ", paint);
    }

    if !r.outcome.plan.is_empty() {
        let _ = writeln!(out, "  {}", paint.bold("repair plan"));
        out.push_str(&plan_lines(&r.outcome.plan.steps, "    "));
    }
    let logs = r.outcome.stderr_lines();
    if !logs.is_empty() {
        let _ = writeln!(out, "  {}", paint.bold("libxl 4.17 would log"));
        for l in logs {
            let _ = writeln!(out, "    {l}");
        }
    }
}

/// Numbered plan steps, one per line.
pub fn plan_lines(steps: &[Step], indent: &str) -> String {
    let mut out = String::new();
    for (i, s) in steps.iter().enumerate() {
        let _ = writeln!(out, "{indent}{}. {s}", i + 1);
    }
    out
}

/// The repair plan of every domain (what `check` and `plan` print).
pub fn plan_text(results: &[Reconciled], paint: Paint) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(out, "{}", heading(r, "", paint));
        for d in r.outcome.decisions.iter().filter(|d| d.class.is_half_baked()) {
            let _ = writeln!(out, "  {} {}: {}", paint.class(d.class, d.class.name()), d.subject, d.reason);
        }
        if r.outcome.plan.is_empty() {
            let _ = writeln!(out, "  no repair needed");
        } else {
            let _ = writeln!(out, "  repair plan:");
            out.push_str(&plan_lines(&r.outcome.plan.steps, "    "));
        }
    }
    if results.is_empty() {
        let _ = writeln!(out, "no guest domains in the snapshot");
    }
    out
}

fn decision_json(d: &Decision) -> Value {
    let mut v = json!({
        "subject": d.subject.to_string(),
        "rule": d.rule,
        "class": d.class.name(),
        "half_baked": d.class.is_half_baked(),
        "action": d.action.name(),
        "reason": d.reason,
        "json": d.json,
        "evidence": d.evidence.iter().map(|e| json!({"path": e.path, "value": e.value})).collect::<Vec<_>>(),
        "provenance": d.provenance.iter().map(|(f, p)| json!({"field": f, "source": p.to_string()})).collect::<Vec<_>>(),
        "libxl_log": d.libxl_log.as_ref().map(|l| l.to_string()),
    });
    match &d.subject {
        Subject::Device { kind, key } => {
            v["kind"] = json!(kind.name());
            v["key"] = json!(key.to_string());
        }
        Subject::Field(f) => v["field"] = json!(f),
        Subject::Domain => {}
    }
    v
}

/// One plan step: its subject as text, and for a device its kind and key as in [`decision_json`].
fn step_json(number: usize, s: &Step) -> Value {
    let mut v = json!({
        "step": number,
        "action": s.action.name(),
        "subject": s.subject.to_string(),
        "because": s.because,
        "text": s.to_string(),
    });
    if let Subject::Device { kind, key } = &s.subject {
        v["kind"] = json!(kind.name());
        v["key"] = json!(key.to_string());
    }
    v
}

/// The explanation as one JSON document (`explain --format json`).
pub fn explain_json(results: &[Reconciled], policy: Policy) -> String {
    let domains: Vec<Value> = results
        .iter()
        .map(|r| {
            json!({
                "domid": r.inputs.domid,
                "name": r.name(),
                "retrieved": r.outcome.config.is_ok(),
                "error": r.outcome.config.as_ref().err().map(|e| e.to_string()),
                "half_baked": r.outcome.is_half_baked(),
                "inputs": r.inputs.notes.iter().map(|n| json!({
                    "input": n.input, "value": n.value, "source": n.source, "defaulted": n.defaulted,
                })).collect::<Vec<_>>(),
                "domain": r.domain_decisions().map(decision_json).collect::<Vec<_>>(),
                "fields": r.field_decisions().map(|d| {
                    let mut v = decision_json(d);
                    v["value"] = r.field_value(&d.subject.to_string()).cloned().unwrap_or(Value::Null);
                    v
                }).collect::<Vec<_>>(),
                "devices": r.device_decisions().map(decision_json).collect::<Vec<_>>(),
                "plan": r.outcome.plan.steps.iter().enumerate().map(|(i, s)| step_json(i + 1, s)).collect::<Vec<_>>(),
                "libxl_log": r.outcome.stderr_lines(),
            })
        })
        .collect();
    let doc = json!({ "xlsync": "explain", "version": 1, "policy": policy.name(), "domains": domains });
    let mut s = serde_json::to_string_pretty(&doc).expect("JSON values always serialise");
    s.push('\n');
    s
}
