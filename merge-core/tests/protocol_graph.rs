//! The protocol graphs as DOT for the documentation (`docs/protocol/`), each state coloured
//! by its no-loss decision class.
//!
//! By default the DOT of a few representative operations is built and, when graphviz is
//! installed, rendered to SVG in a temporary directory to prove it is valid. With
//! `XLSYNC_PROTOCOL_DOCS=<dir>` (see `scripts/protocol-graph`) the `.dot` files, and the `.svg`
//! files when `dot` exists, are written to `<dir>`.

#![cfg(feature = "testkit")]

use merge_core::protocol::{analyse, scenario};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Small enough to read, and covering add, remove, PCI, a concurrent pair, the lock gap and a
/// creation (undone by destroying the half-created domain wherever its JSON is missing).
const DOCUMENTED: [&str; 6] = [
    "nic 1 create",
    "nic 1 hot-add",
    "disk xvdb remove",
    "pci 0000:03:00.0 hot-add",
    "usbdev 0.1 hot-add ‖ retrieve",
    "cdrom hdc insert",
];

fn slug(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-")
}

fn graphviz() -> bool {
    Command::new("dot").arg("-V").output().is_ok_and(|o| o.status.success())
}

fn render_svg(dot: &Path, svg: &Path) {
    let out = Command::new("dot").arg("-Tsvg").arg(dot).arg("-o").arg(svg).output().expect("run dot");
    assert!(out.status.success(), "dot failed on {}: {}", dot.display(), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn protocol_graphs_as_dot() {
    let target: Option<PathBuf> = std::env::var_os("XLSYNC_PROTOCOL_DOCS").map(PathBuf::from);
    let scratch = tempfile_dir();
    let dir = target.clone().unwrap_or_else(|| scratch.clone());
    std::fs::create_dir_all(&dir).unwrap();
    let all = scenario::all();
    for name in DOCUMENTED {
        let s = all.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no scenario {name}")).clone();
        let a = analyse(s).unwrap();
        let dot = a.to_dot();
        assert!(dot.starts_with("digraph") && dot.trim_end().ends_with('}'));
        assert_eq!(dot.matches(" -> ").count(), a.exploration.graph.edge_count());
        let file = dir.join(format!("{}.dot", slug(name)));
        std::fs::write(&file, &dot).unwrap();
        if graphviz() {
            render_svg(&file, &file.with_extension("svg"));
        }
        println!(
            "{}: {} states, {} edges -> {}",
            name,
            a.exploration.graph.node_count(),
            a.exploration.graph.edge_count(),
            file.display()
        );
    }
    if target.is_none() {
        std::fs::remove_dir_all(&scratch).ok();
    }
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xlsync-protocol-graph-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
