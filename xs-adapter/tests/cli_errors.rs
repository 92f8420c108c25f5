//! Bad input ends in one line naming the thing and the fix, exit status 2, nothing on stdout,
//! never a panic: missing files, malformed dumps, JSON and domains.txt, a missing or dead
//! daemon, and arbitrary bytes on every input.
mod cli_common;
mod support;

use cli_common::{output, text, xlsync, ScenarioDir};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::process::Command;

/// Runs `cmd` and checks the error contract; returns the message (without `xlsync: `).
fn fails(cmd: &mut Command) -> String {
    let out = output(cmd);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{cmd:?}: stderr {err:?}, stdout {:?}", text(&out.stdout));
    assert!(out.stdout.is_empty(), "{cmd:?}: stdout {:?}", text(&out.stdout));
    assert!(err.ends_with('\n') && err.matches('\n').count() == 1, "{cmd:?}: not one line: {err:?}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{cmd:?}: {err}");
    err.strip_prefix("xlsync: ").unwrap_or_else(|| panic!("{cmd:?}: {err:?}")).trim_end().to_string()
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn spike_file(name: &str) -> std::path::PathBuf {
    ScenarioDir::spike("a-agree").dir.join(name)
}

#[test]
fn a_missing_file_names_the_file_and_the_fix() {
    let e = fails(xlsync().args(["check", "--xenstore", "/nonexistent.txt"]));
    assert_eq!(
        e,
        "cannot read /nonexistent.txt: No such file or directory (give --xenstore the output of xenstore-ls -f or -fp, or a path=value scenario; --lenient repairs a pasted dump)"
    );
    let e =
        fails(xlsync().args(["retrieve", "--json", "/nonexistent.json", "--xenstore"]).arg(spike_file("xenstore.txt")));
    assert!(e.starts_with("cannot read /nonexistent.json: No such file or directory (give --json "), "{e}");
    let e = fails(
        xlsync()
            .args(["explain", "--hypervisor", "/nonexistent/domains.txt", "--xenstore"])
            .arg(spike_file("xenstore.txt")),
    );
    assert!(
        e.starts_with("cannot read /nonexistent/domains.txt: No such file or directory (give --hypervisor "),
        "{e}"
    );
    let e = fails(
        xlsync().args(["explain", "--userdata-dir", "/nonexistent/xen", "--xenstore"]).arg(spike_file("xenstore.txt")),
    );
    assert_eq!(
        e,
        "cannot use the userdata directory /nonexistent/xen: No such file or directory (run on a Xen host, or give --userdata-dir DIR or --json FILE)"
    );
}

#[test]
fn malformed_inputs_name_line_column_or_json_path() {
    let dir = scratch();
    let dump = dir.path().join("dump.txt");
    std::fs::write(&dump, "/local/domain/1/name = \"guest1\"\n/local/domain/1/domid = \"1\n").unwrap();
    let e = fails(xlsync().args(["check", "--xenstore"]).arg(&dump));
    assert!(e.starts_with(&format!("{}: line 2, column ", dump.display())), "{e}");
    assert!(e.contains("closing"), "{e}");

    let json = dir.path().join("broken.libxl-json");
    std::fs::write(&json, "{\n    \"c_info\": {\n        \"name\": \"x\",\n").unwrap();
    let e =
        fails(xlsync().args(["retrieve", "1", "--xenstore"]).arg(spike_file("xenstore.txt")).arg("--json").arg(&json));
    assert!(e.starts_with(&format!("{}: JSON syntax error at line ", json.display())), "{e}");

    std::fs::write(&json, "{\"c_info\": {\"name\": 5}}").unwrap();
    let e =
        fails(xlsync().args(["retrieve", "1", "--xenstore"]).arg(spike_file("xenstore.txt")).arg("--json").arg(&json));
    assert!(e.starts_with(&format!("{}: c_info.name: expected ", json.display())), "{e}");

    let domains = dir.path().join("domains.txt");
    std::fs::write(&domains, "domid=0 uuid=00000000-0000-0000-0000-000000000000\ndomid=one\n").unwrap();
    let e = fails(
        xlsync().args(["retrieve", "--xenstore"]).arg(spike_file("xenstore.txt")).arg("--hypervisor").arg(&domains),
    );
    assert!(e.starts_with(&format!("{}: line 2: domid=one: not a number", domains.display())), "{e}");

    let e = fails(xlsync().args(["retrieve", "9", "--xenstore"]).arg(spike_file("xenstore.txt")));
    assert!(e.starts_with("domain 9 is not in "), "{e}");
}

#[test]
fn a_missing_or_dead_daemon_is_one_line() {
    let e = fails(xlsync().args(["check", "--all"]).env("XENSTORED_PATH", "/nonexistent/socket"));
    assert!(
        e.starts_with("cannot connect to xenstored socket /nonexistent/socket: No such file or directory ("),
        "{e}"
    );
    assert!(e.contains("give --xenstore DUMP"), "{e}");
    // A daemon that has gone away (its socket may stay behind).
    let xs = support::Xenstored::start();
    let socket = xs.socket();
    xs.stop();
    let e = fails(xlsync().args(["retrieve", "--all"]).env("XENSTORED_PATH", &socket));
    assert!(e.starts_with(&format!("cannot connect to xenstored socket {}: ", socket.display())), "{e}");
    // Something that is not a socket.
    let e = fails(xlsync().args(["retrieve", "--all"]).env("XENSTORED_PATH", spike_file("xenstore.txt")));
    assert!(e.starts_with("cannot connect to xenstored socket "), "{e}");
}

#[test]
fn usage_errors_exit_2() {
    let out = output(xlsync().args(["retrieve", "--policy", "libxl-9"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("libxl-9"), "{}", text(&out.stderr));
    let out = output(xlsync().args(["retrieve", "--all", "3"]));
    assert_eq!(out.status.code(), Some(2));
    let e = fails(xlsync().args(["retrieve", "--xenstore", "-", "--json", "-"]));
    assert!(e.contains("more than one input"), "{e}");
    let out = output(xlsync().arg("--help"));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("Exit status"));
}

fn run_in_process(args: &[&str], stdin: &[u8]) -> Result<xs_adapter::cli::Printed, String> {
    let mut input: &[u8] = stdin;
    let mut env = xs_adapter::cli::Env { stdin: &mut input, stdout_is_tty: false, no_color: true };
    let args = std::iter::once("xlsync".into()).chain(args.iter().map(|a| a.into()));
    xs_adapter::cli::run(args, &mut env).map_err(|e| e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proptest-regressions/xs-adapter/cli_errors.txt"
        )))),
        ..ProptestConfig::default()
    })]

    /// Whatever bytes arrive as the dump, the JSON or the domains.txt, the command answers
    /// (output, or one line of error) and never panics.
    #[test]
    fn arbitrary_bytes_on_any_input_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), which in 0..3usize) {
        let xenstore = spike_file("xenstore.txt");
        let json = spike_file("1.libxl-json");
        let (x, j, h) = (xenstore.to_str().unwrap(), json.to_str().unwrap(), spike_file("domains.txt"));
        let h = h.to_str().unwrap();
        let args: Vec<&str> = match which {
            0 => vec!["explain", "--format", "json", "--xenstore", "-", "--json", j, "--hypervisor", h],
            1 => vec!["retrieve", "1", "--policy", "libxl-4.17", "--xenstore", x, "--json", "-", "--hypervisor", h],
            _ => vec!["check", "--xenstore", x, "--json", j, "--hypervisor", "-", "1"],
        };
        match run_in_process(&args, &bytes) {
            Ok(p) => prop_assert!(p.status <= 2),
            Err(e) => prop_assert!(!e.contains('\n'), "{}", e),
        }
    }
}
