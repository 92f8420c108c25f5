//! Issue 4's differential law: on generated hosts (every domain type, random devices of every
//! kind, and the perturbations of spec §4 and §6), `reconcile(Policy::Libxl417)` prints exactly
//! what the real `xl list -l` of libxl 4.17 prints, on stdout and on stderr.
//!
//! Where libxl itself crashes (abort, assert, NULL dereference), xlsync returns
//! `RetrieveError::LibxlWouldCrash` instead; the law then requires the real xl to have died by
//! a signal, so every such divergence is named and checked.
//!
//! 300 cases per default run; `XLSYNC_PROPTEST_CASES=2000` for the dedicated run.

mod support;

use merge_core::config::DomainConfig;
use merge_core::reconcile::{reconcile, xl_list_json, Inputs, JsonReplica, Outcome, Policy, RetrieveError};
use merge_core::testkit::{host, Generated, HostProfile, Scenario};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use std::sync::atomic::{AtomicUsize, Ordering};

fn cases() -> u32 {
    std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

/// How libxl reads a userdata file (its parser ignores what it cannot type).
pub fn json_replica(bytes: Option<&Vec<u8>>) -> JsonReplica {
    JsonReplica::from_userdata(bytes.map(Vec::as_slice))
}

/// What xlsync says `xl list -l` (all domains) prints for the scenario.
pub fn xlsync_xl_list(s: &Scenario) -> (Vec<Outcome>, String, Vec<String>) {
    let outcomes: Vec<Outcome> = s
        .host
        .domains
        .keys()
        .map(|&domid| {
            let json = json_replica(s.userdata.get(&domid));
            reconcile(Inputs { domid, json: &json, tree: &s.tree, host: &s.host }, Policy::Libxl417)
        })
        .collect();
    let stdout = xl_list_json(&outcomes);
    let stderr = outcomes.iter().flat_map(Outcome::stderr_lines).collect();
    (outcomes, stdout, stderr)
}

static CRASHES: AtomicUsize = AtomicUsize::new(0);
static RUNS: AtomicUsize = AtomicUsize::new(0);

fn check(g: &Generated) -> Result<(), TestCaseError> {
    let (outcomes, stdout, stderr) = xlsync_xl_list(&g.scenario);
    let real = support::oracle::run_xl_list(&g.scenario, &[]);
    RUNS.fetch_add(1, Ordering::Relaxed);
    let crash = outcomes.iter().find_map(|o| match &o.config {
        Err(RetrieveError::LibxlWouldCrash { path, reason }) => Some(format!("domain {}: {reason} at {path}", o.domid)),
        _ => None,
    });
    if let Some(why) = crash {
        CRASHES.fetch_add(1, Ordering::Relaxed);
        prop_assert!(
            real.rc >= 128,
            "xlsync predicts a libxl crash ({why}) but xl exited {}\nstdout:\n{}\nstderr:\n{}\n{}",
            real.rc,
            real.stdout_text(),
            real.stderr_text(),
            g.describe()
        );
        return Ok(());
    }
    prop_assert_eq!(real.rc, 0, "xl failed:\n{}\n{}", real.stderr_text(), g.describe());
    let real_err: Vec<String> = real.stderr_text().lines().map(str::to_string).collect();
    prop_assert_eq!(&stdout, &*real.stdout_text(), "stdout differs\n{}", g.describe());
    prop_assert_eq!(stderr, real_err, "stderr differs\n{}", g.describe());
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(env!("CARGO_MANIFEST_DIR"), "/../proptest-regressions/xs-adapter/differential_libxl.txt")))),
        ..Config::default()
    })]

    #[test]
    fn libxl_policy_equals_real_xl_list(g in host(HostProfile::default())) {
        check(&g)?;
    }
}

/// The consistent hosts alone: no perturbation, so no excuse.
#[test]
fn clean_hosts_match_without_warnings() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strat = host(HostProfile::clean());
    for _ in 0..20 {
        let g = strat.new_tree(&mut runner).unwrap().current();
        let (_, stdout, _) = xlsync_xl_list(&g.scenario);
        let real = support::oracle::run_xl_list(&g.scenario, &[]);
        assert_eq!(stdout, real.stdout_text(), "{}", g.describe());
        assert!(real.warnings().is_empty(), "{:?}", real.warnings());
    }
    let _ = DomainConfig::default();
}
