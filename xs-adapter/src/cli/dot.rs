//! `xlsync plan --dot`: the decision graph and the repair plan of every domain as one Graphviz
//! digraph. Per domain (a cluster): the domain, each decision (coloured by class), the xenstore
//! nodes each decision rests on, and the plan's steps, numbered, with their dependency edges and
//! an edge from the decision that asked for each step.

use super::report::{Reconciled, Tone};
use merge_core::decision::Subject;
use merge_core::plan::{dot_escape, Plan};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A quoted-string body: escaped, with line breaks as DOT's `\n`.
fn label(s: &str) -> String {
    dot_escape(s).replace('\n', "\\n")
}

/// The dependency edges of a plan, as `(before, after)` step indices. `Plan::to_dot` numbers
/// its nodes `n<i>` by the step's index, which is what this reads back.
fn plan_edges(plan: &Plan) -> Vec<(usize, usize)> {
    plan.to_dot()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.trim().trim_end_matches(';').split_once(" -> ")?;
            Some((a.trim().strip_prefix('n')?.parse().ok()?, b.trim().strip_prefix('n')?.parse().ok()?))
        })
        .collect()
}

/// The whole graph.
pub fn to_dot(results: &[Reconciled]) -> String {
    let mut out = String::from("digraph xlsync {\n  rankdir=LR;\n  node [fontname=\"monospace\", fontsize=10];\n");
    for r in results {
        let d = r.inputs.domid;
        let name = r.name().unwrap_or_default();
        let _ = writeln!(out, "  subgraph cluster_d{d} {{");
        let _ = writeln!(out, "    label=\"{}\";", label(&format!("domain {d} {name}")));
        let _ = writeln!(out, "    d{d} [shape=house, label=\"{}\"];", label(&format!("domain {d}\n{name}")));
        // Evidence nodes are shared between the decisions that cite them.
        let mut evidence_ids: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, dec) in r.outcome.decisions.iter().enumerate() {
            let text = format!("{}\n{} / {}\n{}", dec.subject, dec.class.name(), dec.action.name(), dec.rule);
            let shape = if matches!(dec.subject, Subject::Device { .. }) { "box" } else { "note" };
            let _ = writeln!(
                out,
                "    d{d}_dec{i} [shape={shape}, style=filled, fillcolor=\"{}\", label=\"{}\"];",
                Tone::of(dec.class).fill(),
                label(&text)
            );
            let _ = writeln!(out, "    d{d} -> d{d}_dec{i};");
            for e in &dec.evidence {
                let next = evidence_ids.len();
                let id = *evidence_ids.entry(e.path.as_str()).or_insert_with(|| {
                    let value = e.value.as_deref().unwrap_or("(absent)");
                    let _ = writeln!(
                        out,
                        "    d{d}_ev{next} [shape=ellipse, fontsize=8, label=\"{}\"];",
                        label(&format!("{}\n= {value}", e.path))
                    );
                    next
                });
                let _ = writeln!(out, "    d{d}_dec{i} -> d{d}_ev{id} [style=dashed, arrowhead=none];");
            }
        }
        let plan = &r.outcome.plan;
        for (i, step) in plan.steps.iter().enumerate() {
            let _ = writeln!(
                out,
                "    d{d}_step{i} [shape=box, style=\"rounded,bold\", label=\"{}\"];",
                label(&format!("{}. {step}", i + 1))
            );
            // The decision about the same device (or the domain) that asked for the step.
            let asked =
                r.outcome.decisions.iter().position(|dec| dec.subject == step.subject && dec.rule == step.because);
            let asked = asked.or_else(|| r.outcome.decisions.iter().position(|dec| dec.subject == step.subject));
            if let Some(j) = asked {
                let _ =
                    writeln!(out, "    d{d}_dec{j} -> d{d}_step{i} [color=\"#555555\", label=\"plans\", fontsize=8];");
            }
        }
        for (a, b) in plan_edges(plan) {
            let _ = writeln!(out, "    d{d}_step{a} -> d{d}_step{b} [penwidth=2, label=\"before\", fontsize=8];");
        }
        // Step order for steps without a dependency between them, so the picture reads in
        // plan order.
        for i in 1..plan.steps.len() {
            let _ = writeln!(out, "    d{d}_step{} -> d{d}_step{i} [style=invis];", i - 1);
        }
        let _ = writeln!(out, "  }}");
    }
    out.push_str("}\n");
    out
}
