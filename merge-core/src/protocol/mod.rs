//! A model of libxl 4.17's hotplug and unplug protocols, to check xlsync at every point where
//! a crash or a failure can stop them (feature `testkit`).
//!
//! Half-baked states come from operations interrupted between two writes. Rather than guess
//! which states can occur, this module runs the protocols libxl really runs (spec §4) on
//! merge-core's own values and enumerates every state they can reach:
//!
//! - [`world`]: a state is the pair of replicas (JSON, xenstore [`Tree`](crate::xenstore::Tree))
//!   plus the processes working on them, their program counters, registers and locks. A step
//!   is one observable write: a JSON file write, a committed transaction (atomic: a crash falls
//!   between commits, never inside one), a backend or frontend state change, a hotplug
//!   script's outcome. Failure edges and a crash edge leave every running step.
//! - [`protocols`]: the step lists of creation, generic hot-add, disk hot-add, cdrom insert
//!   and eject, generic remove, PCI attach and detach, usb controller and device add and
//!   remove; the nodes they write come from the testkit renderer.
//! - [`scenario`]: every device kind × operation, two operations at once on different devices
//!   of one domain, and an operation inside a retrieve's lock gap (§6 item 8), each with the
//!   consistent states it moves between.
//! - [`explore`]: breadth-first exploration into a petgraph graph, equal worlds merged.
//! - [`check`]: crash atomicity (law 7) and convergence (law 4) under no-loss at every
//!   reachable state and every retrieve observation, with libxl 4.17's result alongside.
//! - [`dot`]: the graph as DOT, each state coloured by its decision class.
//!
//! [`analyse`] runs exploration and checks for one scenario. Everything is pure: no IO, and
//! equal inputs give equal graphs.

pub mod check;
pub mod dot;
pub mod explore;
pub mod protocols;
pub mod scenario;
pub mod world;

use check::{Checker, StateCheck};
use explore::{explore, Exploration};
use petgraph::graph::NodeIndex;
use scenario::Scenario;
use std::sync::Arc;
use world::{Replicas, Status};

/// The most states one scenario may reach before exploration gives up.
pub const STATE_LIMIT: usize = 50_000;

/// A scenario explored and checked.
pub struct Analysis {
    pub scenario: Scenario,
    pub exploration: Exploration,
    /// The check of each node's replicas, by node index.
    pub checks: Vec<Arc<StateCheck>>,
    /// Retrieve observations (JSON of the first lock section, tree of the second): the node
    /// where the retrieve completed, what it saw, and its check.
    pub observations: Vec<(NodeIndex, Replicas, Arc<StateCheck>)>,
    /// Distinct replica pairs among states and observations.
    pub distinct_replicas: usize,
    /// The intended configurations (before, after each subset of operations).
    pub intended: Vec<String>,
}

/// Explores `scenario` and checks every state and observation.
pub fn analyse(scenario: Scenario) -> Result<Analysis, String> {
    let exploration = explore(&scenario.initial, STATE_LIMIT).map_err(|e| format!("{}: {e}", scenario.name))?;
    let (checks, observations, distinct, intended) = {
        let mut checker = Checker::new(&scenario)?;
        let checks: Vec<Arc<StateCheck>> =
            exploration.graph.node_indices().map(|i| checker.check(&exploration.graph[i].replicas)).collect();
        let mut observations = Vec::new();
        for i in exploration.graph.node_indices() {
            for p in &exploration.graph[i].procs {
                if let (Status::Done, Some(seen)) = (p.status, &p.observed) {
                    // Only where the retrieve completed, not every later node.
                    let completed_here =
                        exploration.graph.neighbors_directed(i, petgraph::Direction::Incoming).any(|from| {
                            exploration.graph[from]
                                .procs
                                .iter()
                                .any(|q| q.op.name == p.op.name && q.status.is_running())
                        });
                    if completed_here {
                        observations.push((i, seen.clone(), checker.check(seen)));
                    }
                }
            }
        }
        let intended = checker.accepted().iter().map(|(n, _)| n.clone()).collect();
        (checks, observations, checker.distinct_states(), intended)
    };
    Ok(Analysis { scenario, exploration, checks, observations, distinct_replicas: distinct, intended })
}

impl Analysis {
    /// Every law violation, with a shortest path to the state.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut report = |node: NodeIndex, what: &str, c: &StateCheck| {
            let mut problems = Vec::new();
            if let check::Atomicity::Violation(why) = &c.atomicity {
                problems.push(format!("crash atomicity: {why}"));
            }
            if let Err(why) = &c.convergence {
                problems.push(format!("convergence: {why}"));
            }
            if problems.is_empty() {
                return;
            }
            let decisions: Vec<String> = c
                .noloss
                .decisions
                .iter()
                .filter(|d| d.class.is_half_baked())
                .map(|d| format!("    {} {} ({}): {}", d.subject, d.class.name(), d.rule, d.reason))
                .collect();
            let plan: Vec<String> = c.noloss.plan.steps.iter().map(|s| format!("    {s}")).collect();
            out.push(format!(
                "{} — {what} {}:\n  {}\n  path: {}\n  decisions:\n{}\n  plan:\n{}",
                self.scenario.name,
                node.index(),
                problems.join("\n  "),
                self.exploration.path_to(node).join(" → "),
                decisions.join("\n"),
                plan.join("\n")
            ));
        };
        for i in self.exploration.graph.node_indices() {
            report(i, "state", &self.checks[i.index()]);
        }
        for (i, _, c) in &self.observations {
            report(*i, "retrieve observation at state", c);
        }
        out
    }

    /// The nodes where every process finished normally.
    pub fn completed(&self) -> Vec<NodeIndex> {
        self.exploration
            .graph
            .node_indices()
            .filter(|i| self.exploration.graph[*i].procs.iter().all(|p| p.status == Status::Done))
            .collect()
    }

    /// The nodes matching a predicate on their shortest path's labels and their world.
    pub fn find(&self, pred: impl Fn(&[String], &world::World) -> bool) -> Vec<NodeIndex> {
        self.exploration
            .graph
            .node_indices()
            .filter(|i| pred(&self.exploration.path_to(*i), &self.exploration.graph[*i]))
            .collect()
    }
}
