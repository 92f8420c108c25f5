//! `xlsync retrieve --policy libxl-4.17` against the real `xl list -l`, byte for byte, on every
//! oracle spike scenario: from the scenario's files, from a real `xenstore-ls -fp` dump of the
//! daemon holding it, and live from that daemon with the userdata files in a libxl directory
//! (read under libxl's lock).
mod cli_common;
mod support;

use cli_common::{output, text, xlsync, LiveHost, ScenarioDir, SPIKE_SCENARIOS};
use std::process::Output;

fn lines(bytes: &[u8]) -> Vec<String> {
    text(bytes).lines().map(str::to_string).collect()
}

fn assert_same(name: &str, how: &str, got: &Output, want: &Output) {
    assert_eq!(got.status.code(), Some(0), "{name} ({how}): xlsync failed: {}", text(&got.stderr));
    assert_eq!(text(&got.stdout), text(&want.stdout), "{name} ({how}): stdout");
    assert!(got.stdout == want.stdout, "{name} ({how}): stdout bytes");
    assert_eq!(lines(&got.stderr), lines(&want.stderr), "{name} ({how}): stderr lines");
}

#[test]
fn retrieve_equals_xl_list_on_every_spike_scenario() {
    for name in SPIKE_SCENARIOS {
        let dir = ScenarioDir::spike(name);
        let sched = dir.scheduler.as_str();
        let host = LiveHost::start(&dir.scenario, dir.scheduler);
        let want = host.xl_list(&[1]);
        assert_eq!(want.status.code(), Some(0), "{name}: xl: {}", text(&want.stderr));
        // The recorded run agrees with this one: the oracle is the oracle.
        let recorded = std::fs::read(dir.dir.join("out/xl-list-l.json")).unwrap();
        assert!(want.stdout == recorded, "{name}: xl's output differs from the recorded run");

        let domains = dir.dir.join("domains.txt");
        let empty = tempfile::tempdir().unwrap();
        let json_args: Vec<std::ffi::OsString> = match dir.json_file(1) {
            Some(j) => vec!["--json".into(), j.into()],
            None => vec!["--userdata-dir".into(), empty.path().into()],
        };

        // 1. The scenario's own files, as a bug report would carry them.
        let from_files = output(
            xlsync()
                .args(["retrieve", "--policy", "libxl-4.17", "--scheduler", sched, "--xenstore"])
                .arg(dir.dir.join("xenstore.txt"))
                .arg("--hypervisor")
                .arg(&domains)
                .args(&json_args)
                .arg("1"),
        );
        assert_same(name, "scenario files", &from_files, &want);

        // 2. What the real xenstore-ls -fp prints of the daemon, read from standard input.
        let dump = host.xs.tool("xenstore-ls", &["-fp"]);
        assert!(dump.status.success(), "xenstore-ls: {}", text(&dump.stderr));
        let dump_file = empty.path().join("dump.txt");
        std::fs::write(&dump_file, &dump.stdout).unwrap();
        let from_dump = output(
            xlsync()
                .args(["retrieve", "--policy", "libxl-4.17", "--scheduler", sched, "--xenstore", "-", "--hypervisor"])
                .arg(&domains)
                .args(&json_args)
                .arg("1")
                .stdin(std::fs::File::open(&dump_file).unwrap()),
        );
        assert_same(name, "xenstore-ls -fp on stdin", &from_dump, &want);

        // 3. Live, from the same daemon and the libxl userdata directory xl read.
        let live = output(&mut host.xlsync(&[
            "retrieve",
            "1",
            "--policy",
            "libxl-4.17",
            "--scheduler",
            sched,
            "--hypervisor",
            host.domains_txt.to_str().unwrap(),
        ]));
        assert_same(name, "live", &live, &want);

        // 4. Live, every domain: `--all` fetches only the nodes libxl reads
        // (`Scope::Libxl417`); stdout equals `xl list -l` of every domain.
        let all = output(&mut host.xlsync(&[
            "retrieve",
            "--all",
            "--policy",
            "libxl-4.17",
            "--scheduler",
            sched,
            "--hypervisor",
            host.domains_txt.to_str().unwrap(),
        ]));
        let xl_all = host.xl_list(&[]);
        assert_eq!(all.status.code(), Some(0), "{name}: {}", text(&all.stderr));
        assert_eq!(text(&all.stdout), text(&xl_all.stdout), "{name}: --all --live differs from xl list -l");
        // libxl's protocol: the lock file is gone once released.
        let leftovers: Vec<_> = std::fs::read_dir(&host.libdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("userdata-l."))
            .collect();
        assert!(leftovers.is_empty(), "{name}: lock files left behind: {leftovers:?}");
    }
}

/// `--bare` prints the userdata shape: for a consistent domain, libxl's own file minus the NUL.
#[test]
fn bare_retrieve_prints_the_userdata_shape() {
    let dir = ScenarioDir::spike("a-agree");
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.dir.join("out/xl-list-l.json")).unwrap()).unwrap();
    let out = output(
        xlsync()
            .args(["retrieve", "--bare", "--policy", "libxl-4.17", "--xenstore"])
            .arg(dir.dir.join("xenstore.txt"))
            .arg("--hypervisor")
            .arg(dir.dir.join("domains.txt"))
            .arg("--json")
            .arg(dir.json_file(1).unwrap()),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, want[0]["config"]);
    assert!(text(&out.stdout).starts_with("{\n    \"c_info\": {\n"), "libxl's 4-space layout");
}
