//! The bundled example host (`xs-adapter/demo/`): its generator, what `xlsync` alone prints,
//! and that it shows every half-baked class of the decision table.
//!
//! The demo was built here from `merge_core::testkit` (consistent replicas written the way
//! libxl 4.17 writes them, with libxl's permissions), then damaged by hand, one class per
//! device. `XLSYNC_WRITE_DEMO=1 cargo test --test cli_demo` rewrites the files.
mod cli_common;
mod support;

use cli_common::{output, text, xlsync, LiveHost, ScenarioDir, DEMO};
use merge_core::config::DeviceArray;
use merge_core::hypervisor::{GuestType, Scheduler};
use merge_core::testkit::{self, Boot, Device, DeviceSpec, Disk, DiskMedium, DmVersion, GuestSpec, Nic, NicType};
use merge_core::xenstore::{Node, Path, Perms, Tree};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

fn uuid(domid: u32) -> String {
    format!("0b1e{domid:04x}-7a5c-4d2b-9e10-3c5a{domid:08x}")
}

fn disk(name: &str, vdev: &str) -> DeviceSpec {
    DeviceSpec::in_dom0(Device::Disk(Disk {
        vdev: vdev.into(),
        medium: DiskMedium::Phy { path: format!("/dev/vg0/{name}-{vdev}") },
        readwrite: true,
        cdrom: false,
        explicit_backend: false,
    }))
}

fn nic(domid: u32, devid: u32) -> DeviceSpec {
    DeviceSpec::in_dom0(Device::Nic(Nic {
        devid,
        mac: format!("00:16:3e:5a:{domid:02x}:{devid:02x}"),
        bridge: Some(if devid == 0 { "xenbr0" } else { "xenbr1" }.into()),
        mtu: None,
        ip: None,
        script: None,
        nictype: NicType::Vif,
        model: None,
    }))
}

fn guest(domid: u32, name: &str, guest_type: GuestType, mut devices: Vec<DeviceSpec>) -> GuestSpec {
    devices.push(DeviceSpec::in_dom0(Device::Console));
    GuestSpec {
        domid,
        uuid: uuid(domid),
        name: name.into(),
        guest_type,
        dm_version: DmVersion::Absent,
        boot: Boot::Kernel {
            kernel: "/boot/vmlinuz-6.1".into(),
            cmdline: "root=/dev/xvda1 console=hvc0".into(),
            ramdisk: None,
        },
        max_vcpus: 2,
        online_vcpus: vec![0, 1],
        max_memkb: 2_097_152,
        target_memkb: 1_048_576,
        video_memkb: 0,
        weight: 256,
        cap: 0,
        configured_weight: None,
        devices,
    }
}

fn path(p: &str) -> Path {
    Path::new(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Sets a node's value, keeping its permissions.
fn set(tree: &mut Tree, p: &str, value: &str) {
    let at = path(p);
    let perms = tree.get(&at).and_then(|n| n.perms.clone());
    tree.insert(at, Node::new(value.as_bytes().to_vec()).with_perms(perms));
}

fn remove(tree: &mut Tree, p: &str) {
    assert!(tree.remove_subtree(&path(p)) > 0, "{p} was not there to remove");
}

/// The devices of `g` of one kind, with their xenstore paths.
fn paths_of(g: &GuestSpec, pick: impl Fn(&Device) -> bool) -> testkit::DevicePaths {
    let spec = g.devices.iter().find(|d| pick(&d.detail)).expect("device in the guest");
    testkit::device_paths(g, spec).expect("a device with xenstore paths")
}

fn vdev(v: &'static str) -> impl Fn(&Device) -> bool {
    move |d| matches!(d, Device::Disk(disk) if disk.vdev == v)
}

fn nic_devid(n: u32) -> impl Fn(&Device) -> bool {
    move |d| matches!(d, Device::Nic(nic) if nic.devid == n)
}

/// The demo host: `(file name, bytes)` of every generated file.
fn generate() -> Vec<(String, Vec<u8>)> {
    let guests = vec![
        guest(1, "web", GuestType::Pv, vec![disk("web", "xvda"), disk("web", "xvdb"), nic(1, 0), nic(1, 1)]),
        guest(2, "db", GuestType::Pvh, vec![disk("db", "xvda"), disk("db", "xvdb"), disk("db", "xvdc"), nic(2, 0)]),
        guest(3, "mail", GuestType::Pv, vec![disk("mail", "xvda"), disk("mail", "xvdb"), nic(3, 0)]),
        guest(4, "build", GuestType::Pv, vec![disk("build", "xvda"), nic(4, 0)]),
        guest(5, "legacy", GuestType::Pv, vec![disk("legacy", "xvda"), nic(5, 0)]),
    ];
    let mut gen = testkit::assemble(guests.clone(), Scheduler::Credit2, &[]);
    let tree = &mut gen.scenario.tree;
    let g = |d: u32| &guests[d as usize - 1];

    // web: xvdb is still plugging (backend InitWait, no hotplug result yet); nic 1 was
    // hot-plugged but the JSON write was lost, so libxl silently forgets it.
    let xvdb = paths_of(g(1), vdev("xvdb"));
    let be = xvdb.backend.clone().unwrap();
    set(tree, &format!("{be}/state"), "2");
    set(tree, &format!("{}/state", xvdb.frontend), "1");
    let _ = tree.remove(&path(&format!("{be}/hotplug-status")));
    let web = gen.configs.get_mut(&1).unwrap().as_mut().unwrap();
    let nics: Vec<Value> = web.devices(DeviceArray::Nics).iter().filter(|n| n["devid"] != 1).cloned().collect();
    web.set_devices(DeviceArray::Nics, nics);

    // db: xvdb's unplug stopped half way (Closing, online 0); xvdc's finished but nobody
    // reaped it (Closed, frontend gone); nic 0's hotplug script failed.
    let xvdb = paths_of(g(2), vdev("xvdb"));
    let be = xvdb.backend.clone().unwrap();
    set(tree, &format!("{be}/state"), "5");
    set(tree, &format!("{be}/online"), "0");
    set(tree, &format!("{}/state", xvdb.frontend), "5");
    let xvdc = paths_of(g(2), vdev("xvdc"));
    let be = xvdc.backend.clone().unwrap();
    set(tree, &format!("{be}/state"), "6");
    set(tree, &format!("{be}/online"), "0");
    remove(tree, &xvdc.frontend);
    let vif = paths_of(g(2), nic_devid(0)).backend.unwrap();
    set(tree, &format!("{vif}/state"), "2");
    let perms = tree.get(&path(&format!("{vif}/state"))).and_then(|n| n.perms.clone());
    for (k, v) in
        [("hotplug-status", "error"), ("hotplug-error", "/etc/xen/scripts/vif-bridge failed; error detected.")]
    {
        tree.insert(path(&format!("{vif}/{k}")), Node::new(v.as_bytes().to_vec()).with_perms(perms.clone()));
    }

    // mail: xvdb is in the JSON only (a remove that finished: libxl never prunes the JSON);
    // nic 0's libxl record is gone while it runs; someone ran `xl mem-set mail 768`.
    let xvdb = paths_of(g(3), vdev("xvdb"));
    remove(tree, &xvdb.frontend);
    remove(tree, xvdb.backend.as_ref().unwrap());
    remove(tree, &xvdb.record);
    remove(tree, &paths_of(g(3), nic_devid(0)).record);
    set(tree, "/local/domain/3/memory/target", "786432");

    // build: the guest wrote a whole vif of its own into its frontend area (untrusted), and a
    // libxl record for a disk nobody has any more is left behind (orphan).
    let guest_rw = Perms::parse("n4,r0").unwrap();
    for (k, v) in [
        ("backend", "/local/domain/0/backend/vif/4/7"),
        ("backend-id", "0"),
        ("state", "4"),
        ("handle", "7"),
        ("mac", "00:16:3e:66:66:66"),
    ] {
        tree.insert(
            path(&format!("/local/domain/4/device/vif/7/{k}")),
            Node::new(v.as_bytes().to_vec()).with_perms(Some(guest_rw.clone())),
        );
    }
    let xvda = paths_of(g(4), vdev("xvda"));
    let leftovers: Vec<(String, Node)> =
        tree.subtree(&path(&xvda.record)).map(|(p, n)| (p.as_str().replace("/51712", "/51760"), n.clone())).collect();
    for (p, n) in leftovers {
        let value = match p.rsplit('/').next() {
            Some("dev") => "xvdd".to_string(),
            Some("params") => "/dev/vg0/build-scratch".to_string(),
            _ => String::from_utf8(n.value.to_vec()).unwrap().replace("/51712", "/51760"),
        };
        tree.insert(path(&p), Node::new(value.into_bytes()).with_perms(n.perms.clone()));
    }

    // legacy: created by another toolstack, no userdata file at all.
    gen.configs.insert(5, None);

    let mut files = vec![
        ("xenstore.txt".to_string(), xs_adapter::dump::write_fp(&gen.scenario.tree).expect("a writable tree")),
        (
            "domains.txt".to_string(),
            support::oracle::domains_txt_text(&gen.scenario.host)
                .replacen("written by the oracle harness", "the demo host (generated by tests/cli_demo.rs)", 1)
                .into_bytes(),
        ),
    ];
    for (domid, config) in &gen.configs {
        if let Some(c) = config {
            files.push((support::oracle::userdata_file_name(*domid, &uuid(*domid)), testkit::userdata_bytes(c)));
        }
    }
    files
}

fn demo_files_on_disk() -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(DEMO)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "README.md")
        .map(|p| (p.file_name().unwrap().to_str().unwrap().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

/// The classes every run of the demo must show.
const CLASSES: [&str; 10] = [
    "consistent",
    "plugging",
    "unplugging",
    "unplugged-not-reaped",
    "failed",
    "json-only",
    "record-missing",
    "recovered",
    "untrusted",
    "orphan",
];

fn classes_in(explain_json: &[u8]) -> BTreeSet<String> {
    let doc: Value = serde_json::from_slice(explain_json).expect("explain --format json is JSON");
    let mut classes = BTreeSet::new();
    for d in doc["domains"].as_array().unwrap() {
        for dec in d["devices"].as_array().unwrap().iter().chain(d["domain"].as_array().unwrap()) {
            classes.insert(dec["class"].as_str().unwrap().to_string());
        }
    }
    classes
}

/// `xlsync explain --format json` on a scenario directory laid out like `demo/`.
fn explain_scenario_dir(dir: &std::path::Path) -> std::process::Output {
    output(
        xlsync()
            .args(["explain", "--format", "json", "--no-lock", "--xenstore"])
            .arg(dir.join("xenstore.txt"))
            .arg("--hypervisor")
            .arg(dir.join("domains.txt"))
            .arg("--userdata-dir")
            .arg(dir),
    )
}

/// The binary embeds exactly the committed files.
#[test]
fn the_binary_embeds_the_committed_demo() {
    let on_disk = demo_files_on_disk();
    let mut embedded: Vec<&str> = xs_adapter::cli::demo::USERDATA.iter().map(|(_, name, _)| *name).collect();
    embedded.extend(["domains.txt", "xenstore.txt"]);
    embedded.sort_unstable();
    assert_eq!(on_disk.keys().map(String::as_str).collect::<Vec<_>>(), embedded, "files in {DEMO} vs src/cli/demo.rs");
    let rebuild = "the binary embeds an older demo; rebuild it";
    for (domid, name, bytes) in xs_adapter::cli::demo::USERDATA {
        assert!(on_disk.get(*name).map(Vec::as_slice) == Some(*bytes), "userdata of domain {domid}: {rebuild}");
    }
    assert!(on_disk["xenstore.txt"] == xs_adapter::cli::demo::XENSTORE.as_bytes(), "xenstore.txt: {rebuild}");
    assert!(on_disk["domains.txt"] == xs_adapter::cli::demo::DOMAINS.as_bytes(), "domains.txt: {rebuild}");
}

/// The generator still makes a host with every class (into a scratch directory; into
/// `demo/` itself with `XLSYNC_WRITE_DEMO=1`). The committed files are checked on their own
/// merits by the other tests, so a change to the testkit's rendering does not break them.
#[test]
fn the_generator_makes_a_host_with_every_class() {
    let scratch = tempfile::tempdir().unwrap();
    let target = if std::env::var_os("XLSYNC_WRITE_DEMO").is_some() {
        std::path::PathBuf::from(DEMO)
    } else {
        scratch.path().to_path_buf()
    };
    for (name, bytes) in generate() {
        std::fs::write(target.join(name), bytes).unwrap();
    }
    let out = explain_scenario_dir(&target);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let classes = classes_in(&out.stdout);
    for want in CLASSES {
        assert!(classes.contains(want), "class {want} missing from the generated host: {classes:?}");
    }
}

/// `xlsync` with no arguments is `xlsync demo`: the explanation of the example host.
#[test]
fn no_arguments_explain_the_demo() {
    let bare = output(&mut xlsync());
    assert_eq!(bare.status.code(), Some(0), "{}", text(&bare.stderr));
    assert!(bare.stderr.is_empty(), "{}", text(&bare.stderr));
    let demo = output(xlsync().arg("demo"));
    assert_eq!(bare.stdout, demo.stdout);
    let out = text(&bare.stdout);
    for want in ["domain 1 \"web\"", "domain 5 \"legacy\"", "devices", "repair plan", "recovered", "untrusted"] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    // Not a terminal: no colour codes.
    assert!(!out.contains('\x1b'), "colour codes in piped output");
    let coloured = output(xlsync().args(["demo", "--color", "always"]));
    assert!(text(&coloured.stdout).contains("\x1b["), "--color always gives colours");
    let no_color = output(xlsync().args(["demo", "--color", "auto"]).env("NO_COLOR", "1"));
    assert!(!text(&no_color.stdout).contains('\x1b'));
}

/// Every half-baked class of DESIGN.md's decision table appears in the demo.
#[test]
fn demo_shows_every_half_baked_class() {
    let out = output(xlsync().args(["demo", "--format", "json"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let classes = classes_in(&out.stdout);
    for want in CLASSES {
        assert!(classes.contains(want), "class {want} missing from the demo: {classes:?}");
    }
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Defaulted inputs are named as such (the demo gives no --scheduler).
    let inputs = &doc["domains"][0]["inputs"];
    assert!(inputs.as_array().unwrap().iter().any(|n| n["input"] == "scheduler" && n["defaulted"] == true), "{inputs}");
}

/// The files are an ordinary scenario: pointing the command at them gives the same decisions.
#[test]
fn demo_files_run_as_an_ordinary_scenario() {
    let demo: Value = serde_json::from_slice(&output(xlsync().args(["demo", "--format", "json"])).stdout).unwrap();
    let out = explain_scenario_dir(std::path::Path::new(DEMO));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let files: Value = serde_json::from_slice(&out.stdout).unwrap();
    let strip = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["domains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["domid"].clone(), d["devices"].clone(), d["plan"].clone()))
            .collect()
    };
    assert_eq!(strip(&demo), strip(&files));
}

/// Under libxl-4.17 the demo host retrieves exactly as the real `xl list -l` does, warnings
/// included, live from a real xenstored holding it.
#[test]
fn demo_under_libxl_matches_the_real_xl() {
    let dir = ScenarioDir::load(std::path::Path::new(DEMO));
    let host = LiveHost::start(&dir.scenario, dir.scheduler);
    let want = host.xl_list(&[]);
    assert_eq!(want.status.code(), Some(0), "xl: {}", text(&want.stderr));
    let domains = dir.dir.join("domains.txt");
    let got = output(&mut host.xlsync(&[
        "retrieve",
        "--all",
        "--policy",
        "libxl-4.17",
        "--hypervisor",
        domains.to_str().unwrap(),
    ]));
    assert_eq!(got.status.code(), Some(0), "{}", text(&got.stderr));
    assert_eq!(text(&got.stdout), text(&want.stdout), "stdout");
    // xl also tries dom0, which has no userdata (libxl prints no "Domain 0:" for it); xlsync
    // lists guests only.
    let dom0 = "libxl: error: libxl_domain.c:2335:retrieve_domain_configuration_lock_acquired: Fail to get domain configuration";
    let xl_err: Vec<String> = text(&want.stderr).lines().filter(|l| *l != dom0).map(str::to_string).collect();
    assert_eq!(text(&got.stderr).lines().map(str::to_string).collect::<Vec<_>>(), xl_err, "stderr");
}

/// The same host live, in a real xenstored with libxl's permissions: the same decisions and
/// plan as from the files (trust comes from the daemon's permissions here).
#[test]
fn demo_live_explains_like_the_files() {
    let dir = ScenarioDir::load(std::path::Path::new(DEMO));
    let host = LiveHost::start(&dir.scenario, dir.scheduler);
    let domains = dir.dir.join("domains.txt");
    let live = output(&mut host.xlsync(&["explain", "--format", "json", "--hypervisor", domains.to_str().unwrap()]));
    assert_eq!(live.status.code(), Some(0), "{}", text(&live.stderr));
    let demo = output(xlsync().args(["demo", "--format", "json"]));
    let decisions = |out: &[u8]| -> Vec<(Value, Value, Value, Value)> {
        let v: Value = serde_json::from_slice(out).unwrap();
        v["domains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["domid"].clone(), d["devices"].clone(), d["fields"].clone(), d["plan"].clone()))
            .collect()
    };
    assert_eq!(decisions(&live.stdout), decisions(&demo.stdout));
}
