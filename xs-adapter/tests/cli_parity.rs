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

/// `xlsync retrieve <select> --policy libxl-4.17 --live` against `host`, with its domains.txt.
fn live_retrieve(host: &LiveHost, sched: &str, select: &str) -> Output {
    output(&mut host.xlsync(&[
        "retrieve",
        select,
        "--policy",
        "libxl-4.17",
        "--scheduler",
        sched,
        "--hypervisor",
        host.domains_txt.to_str().unwrap(),
    ]))
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
        let live = live_retrieve(&host, sched, "1");
        assert_same(name, "live", &live, &want);

        // 4. Live, every domain: `--all` fetches only the nodes libxl reads
        // (`Scope::Libxl417`); stdout equals `xl list -l` of every domain.
        let all = live_retrieve(&host, sched, "--all");
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

/// Under no-loss, `retrieve` lists the domains it can configure and says on stderr, in domain
/// order, why another has no configuration (here one the hypervisor lists with neither a
/// userdata file nor a xenstore home).
#[test]
fn retrieve_names_a_domain_without_configuration_on_stderr() {
    let dir = ScenarioDir::spike("a-agree");
    let tmp = tempfile::tempdir().unwrap();
    let uuid = dir.scenario.host.domain(1).unwrap().uuid.clone();
    let lib = tmp.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    std::fs::copy(dir.json_file(1).unwrap(), lib.join(format!("userdata-d.1.{uuid}.libxl-json"))).unwrap();
    let domains = tmp.path().join("domains.txt");
    std::fs::write(
        &domains,
        format!(
            "domid=1 uuid={uuid} type=pv weight=256 cap=0\n\
             domid=7 uuid=77777777-7777-4777-8777-777777777777 type=pv weight=256 cap=0\n"
        ),
    )
    .unwrap();
    let out = output(
        xlsync()
            .args(["retrieve", "1", "7", "--no-lock", "--xenstore"])
            .arg(dir.dir.join("xenstore.txt"))
            .arg("--hypervisor")
            .arg(&domains)
            .arg("--userdata-dir")
            .arg(&lib),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        lines(&out.stderr),
        ["xlsync: domain 7: domain 7 is not configured: no userdata file and no /local/domain/7 in xenstore"]
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let domids: Vec<u64> = listed.as_array().unwrap().iter().map(|d| d["domid"].as_u64().unwrap()).collect();
    assert_eq!(domids, [1]);
}

/// A record whose pointer leads outside what `Scope::Libxl417` fetches (here a vtpm `backend`
/// moved elsewhere, with a uuid libxl rejects) is followed live as libxl follows it: `--all
/// --live` still equals `xl list -l`, warning included.
#[test]
fn a_record_pointing_outside_the_fetched_nodes_is_followed_live() {
    use merge_core::testkit::{host, HostProfile};
    use merge_core::xenstore::{Node, Path};
    use proptest::strategy::{Strategy, ValueTree};
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = host(HostProfile::clean());
    let (mut generated, domid) = (0..500)
        .find_map(|_| {
            let g = strategy.new_tree(&mut runner).unwrap().current();
            if g.guests.iter().any(|s| s.uses_qmp()) {
                return None;
            }
            let d = g.guests.iter().map(|s| s.domid).find(|d| {
                g.scenario
                    .tree
                    .text(&format!("/libxl/{d}/device/vtpm/0/backend"))
                    .is_some_and(|b| b.starts_with("/local/domain/0/"))
            })?;
            Some((g, d))
        })
        .expect("a generated host with a vtpm and no QEMU");
    let tree = &mut generated.scenario.tree;
    let old = tree.text(&format!("/libxl/{domid}/device/vtpm/0/backend")).unwrap().to_string();
    let moved = format!("/local/domain/0/backend/moved-vtpm/{domid}/0");
    let nodes: Vec<(String, Node)> = tree
        .subtree(&Path::new(&old).unwrap())
        .map(|(p, n)| (format!("{moved}{}", &p.as_str()[old.len()..]), n.clone()))
        .collect();
    for (p, n) in nodes {
        tree.insert_with_parents(Path::new(&p).unwrap(), n, None);
    }
    tree.insert(Path::new(&format!("{moved}/uuid")).unwrap(), Node::new(b"not-a-uuid".to_vec()));
    tree.insert(
        Path::new(&format!("/libxl/{domid}/device/vtpm/0/backend")).unwrap(),
        Node::new(moved.clone().into_bytes()),
    );
    assert!(merge_core::reconcile::libxl417::pointers_outside(tree).contains(&moved));

    let scenario = &generated.scenario;
    let host = LiveHost::start(scenario, scenario.scheduler());
    let want = host.xl_list(&[]);
    assert!(text(&want.stderr).contains("malformed uuid"), "xl followed the pointer: {}", text(&want.stderr));
    let got = live_retrieve(&host, scenario.scheduler().as_str(), "--all");
    assert_eq!(got.status.code(), Some(0), "{}", text(&got.stderr));
    assert_eq!(text(&got.stdout), text(&want.stdout));
    // xl also tries dom0, which has no userdata: that one line is xl's alone.
    let mut xl_lines = lines(&want.stderr);
    let dom0 = xl_lines.iter().position(|l| l.ends_with("Fail to get domain configuration")).expect("xl's dom0 line");
    xl_lines.remove(dom0);
    assert_eq!(lines(&got.stderr), xl_lines);
}
