//! The oracle harness against known answers: the spike's five recorded runs, an HVM qemu-xen
//! guest answered by the fake QMP responder (both QMP dialects, and no QEMU at all), several
//! domains in one run, and hostile bytes surviving the trip into xenstored.
mod support;

use merge_core::hypervisor::{GuestType, HostInfo, Scheduler};
use merge_core::testkit::{
    self, Boot, Device, DeviceSpec, Disk, DiskMedium, DmVersion, GuestSpec, Nic, NicType, Scenario,
};
use merge_core::xenstore::{Node, Path, Tree};
use serde_json::Value;
use std::collections::BTreeMap;
use support::oracle::{run_xl_list, run_xl_list_traced, OracleOptions};
use support::qmp::QmpDialect;

const SPIKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/oracle-spike/scenarios");

/// Loads a spike scenario directory (`domains.txt`, `xenstore.txt`, `<domid>.libxl-json`,
/// optional `env.sh` setting `XLSHIM_SCHED`).
fn load_spike(name: &str) -> Scenario {
    let dir = std::path::Path::new(SPIKE).join(name);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()));
    let sched = std::fs::read_to_string(dir.join("env.sh"))
        .ok()
        .and_then(|env| env.lines().find_map(|l| l.trim().strip_prefix("export XLSHIM_SCHED=").map(str::to_string)))
        .map(|s| Scheduler::parse(&s).unwrap_or_else(|| panic!("{name}/env.sh: unknown scheduler {s}")))
        .unwrap_or(Scheduler::Credit2);
    let host =
        HostInfo::parse_domains_txt(&read("domains.txt"), sched).unwrap_or_else(|e| panic!("{name}/domains.txt: {e}"));
    let mut tree = Tree::new();
    for (n, line) in read("xenstore.txt").lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (p, v) = line.split_once('=').unwrap_or_else(|| panic!("{name}/xenstore.txt:{}: no `=`", n + 1));
        let path = Path::new(p).unwrap_or_else(|e| panic!("{name}/xenstore.txt:{}: {e}", n + 1));
        tree.insert_with_parents(path, Node::new(v.as_bytes().to_vec()), None);
    }
    let mut userdata = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if let Some(stem) = p.file_name().unwrap().to_str().unwrap().strip_suffix(".libxl-json") {
            userdata.insert(stem.parse::<u32>().unwrap(), std::fs::read(&p).unwrap());
        }
    }
    Scenario { host, tree, userdata }
}

fn check_spike(name: &str) {
    let scenario = load_spike(name);
    let out = run_xl_list(&scenario, &[1]);
    let dir = std::path::Path::new(SPIKE).join(name).join("out");
    let expected_stdout = std::fs::read(dir.join("xl-list-l.json")).unwrap();
    let expected_stderr = std::fs::read_to_string(dir.join("xl-stderr.txt")).unwrap();
    let expected_rc: i32 = std::fs::read_to_string(dir.join("xl-rc.txt")).unwrap().trim().parse().unwrap();
    assert_eq!(out.stdout_text(), String::from_utf8_lossy(&expected_stdout), "{name}: stdout");
    assert_eq!(out.stdout, expected_stdout, "{name}: stdout bytes");
    assert_eq!(out.stderr_text(), expected_stderr, "{name}: stderr");
    assert_eq!(out.rc, expected_rc, "{name}: rc");
}

#[test]
fn spike_a_agree() {
    check_spike("a-agree");
}

#[test]
fn spike_b_json_extra_disk() {
    check_spike("b-json-extra-disk");
}

#[test]
fn spike_c_xenstore_extra_nic() {
    check_spike("c-xenstore-extra-nic");
}

#[test]
fn spike_d_runtime_overrides() {
    check_spike("d-runtime-overrides");
}

#[test]
fn spike_e_no_json() {
    check_spike("e-no-json");
}

/// An HVM guest with two disks and a nic; `online` vCPUs at creation.
fn hvm_guest(domid: u32, dm_version: DmVersion, max_vcpus: u32, online: &[u32]) -> GuestSpec {
    let disk = |vdev: &str| {
        DeviceSpec::in_dom0(Device::Disk(Disk {
            vdev: vdev.into(),
            medium: DiskMedium::Phy { path: format!("/dev/vg0/hvm{domid}-{vdev}") },
            readwrite: true,
            cdrom: false,
            explicit_backend: false,
        }))
    };
    GuestSpec {
        domid,
        uuid: format!("5b3e9f0c-6a1d-4c2e-9f7a-0d4e8b1c2a{domid:02x}"),
        name: format!("hvm{domid}"),
        guest_type: GuestType::Hvm,
        dm_version,
        boot: Boot::Firmware,
        max_vcpus,
        online_vcpus: online.to_vec(),
        max_memkb: 2_097_152,
        target_memkb: 1_048_576,
        video_memkb: 8192,
        weight: 256,
        cap: 0,
        configured_weight: None,
        devices: vec![
            disk("hda"),
            disk("hdb"),
            DeviceSpec::in_dom0(Device::Console),
            DeviceSpec::in_dom0(Device::Nic(Nic {
                devid: 0,
                mac: format!("00:16:3e:00:00:{domid:02x}"),
                bridge: Some("xenbr0".into()),
                mtu: None,
                ip: None,
                script: None,
                nictype: NicType::VifIoemu,
                model: Some("e1000".into()),
            })),
        ],
    }
}

fn pv_guest(domid: u32, guest_type: GuestType) -> GuestSpec {
    let mut g = hvm_guest(domid, DmVersion::QemuXen, 2, &[0, 1]);
    g.guest_type = guest_type;
    g.name = format!("{}{domid}", guest_type.as_str());
    g.boot = Boot::Kernel { kernel: "/boot/vmlinuz".into(), cmdline: "console=hvc0".into(), ramdisk: None };
    g.video_memkb = 0;
    g.target_memkb = g.max_memkb;
    for d in &mut g.devices {
        match &mut d.detail {
            Device::Disk(disk) => disk.vdev = disk.vdev.replace("hd", "xvd"),
            Device::Nic(nic) => {
                nic.nictype = NicType::Vif;
                nic.model = None;
            }
            _ => {}
        }
    }
    g
}

fn avail_vcpus(config: &Value) -> Vec<u64> {
    config["b_info"]["avail_vcpus"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_u64().unwrap()).collect())
        .unwrap_or_default()
}

/// The QMP answer, not xenstore, decides a qemu-xen HVM guest's vCPUs; both dialects work.
#[test]
fn hvm_qemu_xen_goes_through_fake_qmp() {
    // libxl logs the CommandNotFound of its first try as an error, even though it recovers.
    let fallback_log = "libxl: error: libxl_qmp.c:1837:qmp_ev_parse_error_messages: Domain 3:The command query-cpus-fast has not been found\n";
    for (dialect, expected_commands, expected_stderr) in [
        (QmpDialect::CpusFast, vec!["qmp_capabilities", "query-cpus-fast"], ""),
        (QmpDialect::LegacyQueryCpus, vec!["qmp_capabilities", "query-cpus-fast", "query-cpus"], fallback_log),
    ] {
        let mut gen = testkit::assemble(vec![hvm_guest(3, DmVersion::QemuXen, 4, &[0, 1])], Scheduler::Credit2, &[]);
        // QEMU reports vCPUs 0, 2 and 3 online (vcpu-set went through QMP); xenstore still says 0, 1.
        gen.scenario.host.domains.get_mut(&3).unwrap().qemu_cpus = Some(vec![0, 2, 3]);
        let opts = OracleOptions { qmp_dialect: dialect, ..OracleOptions::default() };
        let (out, qmp) = run_xl_list_traced(&gen.scenario, &[3], &opts);
        assert_eq!(out.rc, 0, "{dialect:?}: {}", out.stderr_text());
        assert_eq!(out.stderr_text(), expected_stderr, "{dialect:?}");
        let listed = out.listed();
        assert_eq!(listed.len(), 1, "{dialect:?}: {}", out.stdout_text());
        assert_eq!(avail_vcpus(&listed[0].1), vec![0, 2, 3], "{dialect:?}");
        assert_eq!(qmp[&3], expected_commands, "{dialect:?}");
        // The HVM memory fudge: target + video_memkb + 1024 gives back the JSON's target.
        assert_eq!(listed[0].1["b_info"]["target_memkb"], 1_048_576);
    }
}

/// The same guest with `dm-version` absent or qemu-traditional reads xenstore instead, and
/// never opens the QMP socket.
#[test]
fn hvm_without_qemu_xen_reads_xenstore() {
    for dm in [DmVersion::Absent, DmVersion::QemuXenTraditional] {
        let mut gen = testkit::assemble(vec![hvm_guest(4, dm, 4, &[0, 1])], Scheduler::Credit2, &[]);
        gen.scenario.host.domains.get_mut(&4).unwrap().qemu_cpus = Some(vec![0, 2, 3]);
        let (out, qmp) = run_xl_list_traced(&gen.scenario, &[4], &OracleOptions::default());
        assert_eq!(out.rc, 0, "{dm:?}: {}", out.stderr_text());
        assert_eq!(avail_vcpus(&out.listed()[0].1), vec![0, 1], "{dm:?}");
        assert!(qmp[&4].is_empty(), "{dm:?}: QMP used: {:?}", qmp[&4]);
    }
}

/// No QEMU: libxl fails the retrieve, `xl list -l` prints an empty array and still exits 0.
/// This records exactly what it prints.
#[test]
fn hvm_qemu_xen_without_qemu_fails_like_libxl() {
    let mut gen = testkit::assemble(vec![hvm_guest(5, DmVersion::QemuXen, 2, &[0, 1])], Scheduler::Credit2, &[]);
    gen.scenario.host.domains.get_mut(&5).unwrap().qemu_cpus = None;
    let out = run_xl_list(&gen.scenario, &[5]);
    assert_eq!(out.rc, 0);
    assert_eq!(out.stdout_text(), "[\n\n]\n\n");
    assert_eq!(
        out.stderr_text(),
        "libxl: error: libxl_qmp.c:1334:qmp_ev_lock_aquired: Domain 5:Failed to connect to QMP socket /var/run/xen/qmp-libxl-5: No such file or directory\n"
    );
}

/// One run over several domains of every type: each is listed, in domid order, and each
/// config is its JSON with the hypervisor's scheduler parameters. Listing every domain includes
/// dom0, which has no JSON: libxl logs that (without a `Domain 0:` prefix) and skips it.
#[test]
fn several_domains_in_one_run() {
    let guests = vec![
        pv_guest(2, GuestType::Pv),
        pv_guest(7, GuestType::Pvh),
        hvm_guest(9, DmVersion::QemuXen, 2, &[0, 1]),
        hvm_guest(12, DmVersion::QemuXenTraditional, 2, &[0]),
    ];
    let gen = testkit::assemble(guests, Scheduler::Credit, &[]);
    let out = run_xl_list(&gen.scenario, &[]);
    assert_eq!(out.rc, 0, "{}", out.stderr_text());
    assert_eq!(
        out.stderr_text(),
        "libxl: error: libxl_domain.c:2335:retrieve_domain_configuration_lock_acquired: Fail to get domain configuration\n"
    );
    let listed = out.listed();
    assert_eq!(listed.iter().map(|(d, _)| *d).collect::<Vec<_>>(), vec![2, 7, 9, 12]);
    for (domid, config) in listed {
        let mut expected: Value = serde_json::Value::Object(gen.configs[&domid].clone().unwrap().into_object());
        expected["b_info"]["sched_params"] = serde_json::json!({"sched": "credit", "weight": 256, "cap": 0});
        assert_eq!(config, expected, "dom {domid}");
    }
}

/// Values with bytes xenstore-write would otherwise unescape, or that are not text, reach
/// xenstored unchanged.
#[test]
fn hostile_values_survive_the_write() {
    let values: Vec<&[u8]> =
        vec![b"a\\b", b"\\x41", b"tab\there", b"line\nbreak", b"\xff\x00\x01end", b"\"quoted\"", b""];
    let mut tree = Tree::new();
    for (i, v) in values.iter().enumerate() {
        tree.insert_with_parents(Path::new(&format!("/test/v{i}")).unwrap(), Node::new(v.to_vec()), None);
    }
    let xs = support::Xenstored::start();
    support::oracle::write_tree(&xs, &tree);
    for (i, v) in values.iter().enumerate() {
        // xenstore-read -R prints the raw bytes.
        let out = xs.tool("xenstore-read", &["-R", &format!("/test/v{i}")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout.strip_suffix(b"\n").unwrap_or(&out.stdout), *v, "value {i}");
    }
}
