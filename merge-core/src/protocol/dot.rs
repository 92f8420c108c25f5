//! The explored graph as DOT, for the documentation: every state filled with the colour of
//! its dominant no-loss decision class, crash edges dashed, failure edges red, retrieve
//! observations drawn as a second border and their class in the label.

use super::check::Atomicity;
use super::explore::EdgeKind;
use super::world::Status;
use super::Analysis;
use crate::decision::Class;
use crate::plan::dot_escape;
use petgraph::visit::EdgeRef;

/// The fill colour of a class (X11 colour names, understood by graphviz).
pub fn colour(class: Class) -> &'static str {
    match class {
        Class::Consistent => "palegreen",
        Class::Plugging => "lightblue",
        Class::Unplugging => "orange",
        Class::UnpluggedNotReaped => "gold",
        Class::Failed => "tomato",
        Class::JsonOnly => "khaki",
        Class::RecordMissing => "plum",
        Class::XenstoreOnly => "violet",
        Class::Recovered => "mediumpurple1",
        Class::Untrusted => "grey70",
        Class::Orphan => "lightgrey",
        Class::RetrieveFailed => "red",
        Class::Overwritten | Class::FromJson => "white",
    }
}

impl Analysis {
    /// The graph as DOT.
    pub fn to_dot(&self) -> String {
        let g = &self.exploration.graph;
        let single = self.scenario.initial.procs.len() == 1;
        let op_prefix = |label: &str| -> String {
            match (single, label.split_once(": ")) {
                (true, Some((_, rest))) => rest.to_string(),
                _ => label.to_string(),
            }
        };
        let mut out = format!(
            "digraph \"{}\" {{\n  label=\"{} — states coloured by no-loss decision class\";\n  labelloc=t;\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fontname=\"sans-serif\", fontsize=10];\n  edge [fontname=\"sans-serif\", fontsize=8];\n",
            dot_escape(&self.scenario.name),
            dot_escape(&self.scenario.name)
        );
        let observed: std::collections::BTreeMap<usize, Class> =
            self.observations.iter().map(|(i, _, c)| (i.index(), c.class)).collect();
        for i in g.node_indices() {
            let c = &self.checks[i.index()];
            let procs: Vec<&str> = g[i]
                .procs
                .iter()
                .map(|p| match p.status {
                    Status::Running(_) => "running",
                    Status::Done => "done",
                    Status::Failed => "failed",
                    Status::Crashed => "crashed",
                })
                .collect();
            let verdict = match &c.atomicity {
                Atomicity::Equals(n) => format!("= {n}"),
                Atomicity::Restores { to, exact } => {
                    format!("plan → {to}{}", if *exact { "" } else { " (by identity)" })
                }
                Atomicity::Violation(v) => format!("VIOLATION: {v}"),
            };
            let mut label =
                format!("{}\\n{}\\n{}\\n{}", i.index(), c.class.name(), dot_escape(&verdict), procs.join(", "));
            let mut extra = String::new();
            if let Some(seen) = observed.get(&i.index()) {
                label.push_str(&format!("\\nretrieve saw: {}", seen.name()));
                extra = format!(", peripheries=2, color=\"{}\"", colour(*seen));
            }
            out.push_str(&format!("  s{} [label=\"{label}\", fillcolor=\"{}\"{extra}];\n", i.index(), colour(c.class)));
        }
        for e in g.edge_references() {
            let t = e.weight();
            let style = match t.kind {
                EdgeKind::Step => "",
                EdgeKind::Failure => ", color=red, fontcolor=red",
                EdgeKind::Crash => ", style=dashed, color=grey50, fontcolor=grey50",
            };
            let label = if t.kind == EdgeKind::Crash { "crash".to_string() } else { op_prefix(&t.label) };
            out.push_str(&format!(
                "  s{} -> s{} [label=\"{}\"{style}];\n",
                e.source().index(),
                e.target().index(),
                dot_escape(&label)
            ));
        }
        out.push_str("}\n");
        out
    }
}
