//! Crash atomicity (law 7) and convergence (law 4) at every state the protocol model reaches.

use merge_core::protocol::{analyse, scenario};

#[test]
fn every_crash_point_is_atomic_and_converges() {
    let mut all = Vec::new();
    for s in scenario::all() {
        let name = s.name.clone();
        let a = analyse(s).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{name}: {} states, {} crash points, {} observations",
            a.exploration.graph.node_count(),
            a.exploration.crash_points(),
            a.observations.len()
        );
        all.extend(a.violations());
    }
    for v in all.iter().take(30) {
        eprintln!("{v}\n");
    }
    assert!(all.is_empty(), "{} violations", all.len());
}
