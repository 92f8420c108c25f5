//! Exhaustive exploration of a scenario's worlds into a petgraph state graph.
//!
//! Breadth first from the scenario's starting world; equal worlds (same replicas, same
//! processes at the same steps with the same registers, same lock holders) are one node, so
//! interleavings that commute meet again. Edges are protocol steps, failures and crashes.

use super::world::{Choice, Move, MoveError, World};
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{HashMap, VecDeque};

/// What an edge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    Step,
    Failure,
    Crash,
}

/// One edge: a move and its label (`<operation>: <step>`).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub mv: Move,
    pub kind: EdgeKind,
    pub label: String,
}

/// The explored graph.
#[derive(Debug, Clone)]
pub struct Exploration {
    pub graph: DiGraph<World, Transition>,
    pub root: NodeIndex,
}

/// Why an exploration stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExploreError {
    #[error("more than {0} states: the scenario is too large to explore exhaustively")]
    TooLarge(usize),
    #[error("a move listed as possible could not be applied: {0}")]
    Move(#[from] MoveError),
}

/// The label of a move from `world`.
pub fn label(world: &World, mv: Move) -> (EdgeKind, String) {
    let p = &world.procs[mv.proc];
    let step = p.step();
    let step_label = step.map_or("?", |s| s.label.as_str());
    match mv.choice {
        Choice::Step => (EdgeKind::Step, format!("{}: {step_label}", p.op.name)),
        Choice::Fail(k) => {
            let alt = step.and_then(|s| s.alternatives.get(k)).map_or("?", |a| a.label.as_str());
            (EdgeKind::Failure, format!("{}: {alt}", p.op.name))
        }
        Choice::Crash => (EdgeKind::Crash, format!("{}: crash before \"{step_label}\"", p.op.name)),
    }
}

/// Explores every world reachable from `initial`, up to `limit` states.
pub fn explore(initial: &World, limit: usize) -> Result<Exploration, ExploreError> {
    let mut graph = DiGraph::new();
    let mut index: HashMap<u64, Vec<NodeIndex>> = HashMap::new();
    let root = graph.add_node(initial.clone());
    index.entry(initial.fingerprint()).or_default().push(root);
    let mut queue = VecDeque::from([root]);
    while let Some(at) = queue.pop_front() {
        let world = graph[at].clone();
        for mv in world.moves() {
            let (next, _) = world.apply(mv)?;
            let (kind, text) = label(&world, mv);
            let fp = next.fingerprint();
            let known = index.get(&fp).and_then(|c| c.iter().copied().find(|i| graph[*i] == next));
            let to = match known {
                Some(i) => i,
                None => {
                    if graph.node_count() >= limit {
                        return Err(ExploreError::TooLarge(limit));
                    }
                    let i = graph.add_node(next);
                    index.entry(fp).or_default().push(i);
                    queue.push_back(i);
                    i
                }
            };
            graph.add_edge(at, to, Transition { mv, kind, label: text });
        }
    }
    Ok(Exploration { graph, root })
}

impl Exploration {
    /// The moves of a shortest path from the root to `node` (by breadth-first parent links).
    pub fn path_to(&self, node: NodeIndex) -> Vec<String> {
        let mut parent: HashMap<NodeIndex, (NodeIndex, String)> = HashMap::new();
        let mut queue = VecDeque::from([self.root]);
        let mut seen = std::collections::HashSet::from([self.root]);
        while let Some(at) = queue.pop_front() {
            if at == node {
                break;
            }
            for e in self.graph.edges(at) {
                use petgraph::visit::EdgeRef;
                if seen.insert(e.target()) {
                    parent.insert(e.target(), (at, e.weight().label.clone()));
                    queue.push_back(e.target());
                }
            }
        }
        let mut out = Vec::new();
        let mut at = node;
        while let Some((p, l)) = parent.get(&at) {
            out.push(l.clone());
            at = *p;
        }
        out.reverse();
        out
    }

    /// The number of crash edges (crash points).
    pub fn crash_points(&self) -> usize {
        self.graph.edge_weights().filter(|t| t.kind == EdgeKind::Crash).count()
    }

    /// The number of failure edges.
    pub fn failure_edges(&self) -> usize {
        self.graph.edge_weights().filter(|t| t.kind == EdgeKind::Failure).count()
    }
}
