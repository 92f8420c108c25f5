//! Replays every committed fuzz input on stable: the seeds under `fuzz/seeds/<target>/` and the
//! minimised crashers under `fuzz/regressions/<target>/`, through the same checks the cargo-fuzz
//! targets run (`fuzz/src/checks.rs`, included here by path).

#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Runs every file under `<fuzz>/<kind>/<target>/` through the target's check; returns how
/// many files ran. A directory named after no target is an error, so a renamed target cannot
/// leave its inputs silently unreplayed.
fn replay(kind: &str) -> usize {
    let root = fuzz_dir().join(kind);
    let Ok(dirs) = std::fs::read_dir(&root) else { return 0 };
    let mut count = 0;
    for dir in dirs {
        let dir = dir.expect("readable directory entry").path();
        let target = dir.file_name().unwrap().to_string_lossy().into_owned();
        let check = checks::check_for(&target).unwrap_or_else(|| panic!("{} names no fuzz target", dir.display()));
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&dir).expect("readable target directory").map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files.into_iter().filter(|f| f.is_file()) {
            let bytes = std::fs::read(&file).expect("readable input");
            let outcome = std::panic::catch_unwind(|| check(&bytes));
            assert!(outcome.is_ok(), "{target}: {} fails its check (message above)", file.display());
            count += 1;
        }
    }
    count
}

#[test]
fn committed_seeds_pass() {
    let n = replay("seeds");
    assert!(n > 0, "no seeds under fuzz/seeds");
    eprintln!("replayed {n} seed inputs");
}

#[test]
fn committed_regressions_pass() {
    let n = replay("regressions");
    eprintln!("replayed {n} regression inputs");
}

/// The shared corpus (third-party dumps and JSON) through every dump and JSON check: the
/// seeds `scripts/fuzz-ci` copies in at run time, which are never committed under fuzz/.
#[test]
fn shared_corpus_passes() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
    let mut count = 0;
    for entry in std::fs::read_dir(&corpus).expect("the shared corpus is at ../shared/corpus") {
        let file = entry.unwrap().path();
        let bytes = std::fs::read(&file).unwrap();
        for (name, check) in checks::TARGETS.iter().filter(|(n, _)| *n != "reconcile") {
            let outcome = std::panic::catch_unwind(|| check(&bytes));
            assert!(outcome.is_ok(), "{name}: {} fails its check", file.display());
            count += 1;
        }
    }
    assert!(count > 0);
    eprintln!("checked {count} corpus file x target pairs");
}
