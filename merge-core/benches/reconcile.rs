//! Issue 5's target: reconciling one 20-device domain under no-loss costs no more than
//! serialising its merged config with serde_json, measured in the same run. Also times the
//! libxl-4.17 policy on the same input for reference, and two floors on the same tree: reading
//! each of the domain's xenstore nodes once by path, and visiting each once by range scans, and
//! nothing else. No reconcile that looks up every node it rests on can cost less than the first,
//! nor one that merely touches each less than the second; the summary prints every ratio to the
//! serialisation.

use criterion::Criterion;
use merge_core::config::DomainConfig;
use merge_core::hypervisor::{GuestType, HostInfo, HypervisorDomain};
use merge_core::reconcile::{reconcile, Inputs, JsonReplica, Policy};
use merge_core::xenstore::{Node, Path, Tree};
use serde_json::json;
use std::hint::black_box;

const UUID: &str = "3a9f1c2e-5b7d-4e8f-9a01-23456789abcd";

fn put(tree: &mut Tree, p: &str, v: &str) {
    tree.insert_with_parents(Path::new(p).unwrap(), Node::new(v.as_bytes().to_vec()), None);
}

/// A PV domain with 10 disks and 10 nics, both replicas as libxl writes them.
fn domain() -> (DomainConfig, Tree, HostInfo) {
    let d = 5;
    let mut tree = Tree::new();
    for (p, v) in
        [("/local/domain/0/domid", "0"), ("/local/domain/0/name", "Domain-0"), ("/local/pool/0/name", "Pool-0")]
    {
        put(&mut tree, p, v);
    }
    put(&mut tree, &format!("/local/domain/{d}/name"), "bench");
    put(&mut tree, &format!("/local/domain/{d}/vm"), &format!("/vm/{UUID}"));
    put(&mut tree, &format!("/local/domain/{d}/memory/target"), "1048576");
    put(&mut tree, &format!("/local/domain/{d}/memory/static-max"), "2097152");
    for i in 0..4 {
        put(&mut tree, &format!("/local/domain/{d}/cpu/{i}/availability"), if i < 2 { "online" } else { "offline" });
    }
    put(&mut tree, &format!("/libxl/{d}/type"), "pv");
    let mut disks = Vec::new();
    let mut nics = Vec::new();
    for i in 0..10u32 {
        let vdev = format!("xvd{}", (b'a' + i as u8) as char);
        let devid = 51712 + 16 * i;
        let be = format!("/local/domain/0/backend/vbd/{d}/{devid}");
        let fe = format!("/local/domain/{d}/device/vbd/{devid}");
        let rec = format!("/libxl/{d}/device/vbd/{devid}");
        let keys = [
            ("params", format!("/dev/vg0/bench-{i}")),
            ("script", "/etc/xen/scripts/block".into()),
            ("frontend-id", d.to_string()),
            ("online", "1".into()),
            ("removable", "0".into()),
            ("bootable", "1".into()),
            ("dev", vdev.clone()),
            ("type", "phy".into()),
            ("mode", "w".into()),
            ("device-type", "disk".into()),
            ("specification", "xen".into()),
        ];
        for (k, v) in &keys {
            put(&mut tree, &format!("{be}/{k}"), v);
            put(&mut tree, &format!("{rec}/{k}"), v);
        }
        put(&mut tree, &format!("{be}/state"), "4");
        put(&mut tree, &format!("{be}/frontend"), &fe);
        put(&mut tree, &format!("{rec}/state"), "1");
        put(&mut tree, &format!("{rec}/frontend"), &fe);
        put(&mut tree, &format!("{rec}/backend"), &be);
        put(&mut tree, &format!("{fe}/backend"), &be);
        put(&mut tree, &format!("{fe}/state"), "4");
        put(&mut tree, &format!("{fe}/virtual-device"), &devid.to_string());
        disks.push(json!({"pdev_path": format!("/dev/vg0/bench-{i}"), "vdev": vdev, "format": "raw", "readwrite": 1}));

        let mac = format!("00:16:3e:00:00:{i:02x}");
        let be = format!("/local/domain/0/backend/vif/{d}/{i}");
        let fe = format!("/local/domain/{d}/device/vif/{i}");
        let rec = format!("/libxl/{d}/device/vif/{i}");
        let keys = [
            ("frontend-id", d.to_string()),
            ("online", "1".into()),
            ("script", "/etc/xen/scripts/vif-bridge".into()),
            ("mac", mac.clone()),
            ("bridge", "xenbr0".into()),
            ("handle", i.to_string()),
            ("type", "vif".into()),
        ];
        for (k, v) in &keys {
            put(&mut tree, &format!("{be}/{k}"), v);
            put(&mut tree, &format!("{rec}/{k}"), v);
        }
        put(&mut tree, &format!("{be}/state"), "4");
        put(&mut tree, &format!("{be}/hotplug-status"), "connected");
        put(&mut tree, &format!("{be}/frontend"), &fe);
        put(&mut tree, &format!("{rec}/state"), "1");
        put(&mut tree, &format!("{rec}/frontend"), &fe);
        put(&mut tree, &format!("{rec}/backend"), &be);
        put(&mut tree, &format!("{fe}/backend"), &be);
        put(&mut tree, &format!("{fe}/state"), "4");
        put(&mut tree, &format!("{fe}/handle"), &i.to_string());
        nics.push(json!({"devid": i, "mac": mac, "bridge": "xenbr0", "nictype": "vif"}));
    }
    let cfg = json!({
        "c_info": {"type": "pv", "name": "bench", "uuid": UUID, "run_hotplug_scripts": "True"},
        "b_info": {"max_vcpus": 4, "avail_vcpus": [0, 1], "max_memkb": 2097152, "target_memkb": 1048576, "video_memkb": 0,
                   "sched_params": {}, "claim_mode": "True", "kernel": "/boot/vmlinuz", "cmdline": "root=/dev/xvda1",
                   "type.pv": {}, "arch_arm": {}, "arch_x86": {}},
        "disks": disks,
        "nics": nics,
        "on_reboot": "restart"
    });
    let mut host = HostInfo::default();
    host.insert(HypervisorDomain::new(0, "00000000-0000-0000-0000-000000000000", GuestType::Pv));
    host.insert(HypervisorDomain::new(d, UUID, GuestType::Pv));
    (DomainConfig::from_object(cfg.as_object().unwrap().clone()), tree, host)
}

/// Criterion's mean estimate of one benchmark of this run, in nanoseconds.
fn mean_ns(dir: &std::path::Path, group: &str, bench: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(group).join(bench).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn main() {
    let (cfg, tree, host) = domain();
    let json = JsonReplica::Present(cfg);
    let inputs = Inputs { domid: 5, json: &json, tree: &tree, host: &host };
    let merged = reconcile(inputs, Policy::NoLoss).config.unwrap();
    assert_eq!(
        merged.devices(merge_core::config::DeviceArray::Disks).len()
            + merged.devices(merge_core::config::DeviceArray::Nics).len(),
        20
    );
    // The nodes a reconcile of domain 5 rests on: its home, its backends, its record.
    let domain_paths: Vec<String> = tree
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| p.starts_with("/local/domain/5/") || p.contains("/backend/") || p.starts_with("/libxl/5/"))
        .map(str::to_string)
        .collect();

    let out_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("criterion");
    let mut c = Criterion::default().output_directory(&out_dir).configure_from_args();
    // Names without spaces or punctuation, so that criterion's directories carry them as is.
    let group = "reconcile_20_device_domain";
    // Estimates of an earlier run must not stand in for one this run filtered out.
    let _ = std::fs::remove_dir_all(out_dir.join(group));
    let mut g = c.benchmark_group(group);
    g.bench_function("noloss", |b| b.iter(|| black_box(reconcile(black_box(inputs), Policy::NoLoss))));
    g.bench_function("libxl417", |b| b.iter(|| black_box(reconcile(black_box(inputs), Policy::Libxl417))));
    g.bench_function("serde_json_to_string_merged_config", |b| {
        b.iter(|| black_box(serde_json::to_string(black_box(merged.as_object())).unwrap()))
    });
    g.bench_function("floor_read_each_node_once", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for p in &domain_paths {
                bytes += black_box(&tree).get_str(p).map_or(0, |n| n.value.len());
            }
            bytes
        })
    });
    // The cheapest way to touch every one of them: three in-order range scans, no lookups.
    let roots: Vec<Path> =
        ["/local/domain/5", "/local/domain/0/backend", "/libxl/5"].iter().map(|p| Path::new(p).unwrap()).collect();
    g.bench_function("floor_scan_each_node_once", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for root in &roots {
                bytes += black_box(&tree).subtree(root).map(|(_, n)| n.value.len()).sum::<usize>();
            }
            bytes
        })
    });
    g.finish();

    let mean = |bench: &str| mean_ns(&out_dir, group, bench);
    let (Some(noloss), Some(libxl), Some(serde), Some(floor), Some(scan)) = (
        mean("noloss"),
        mean("libxl417"),
        mean("serde_json_to_string_merged_config"),
        mean("floor_read_each_node_once"),
        mean("floor_scan_each_node_once"),
    ) else {
        // Filtered runs (`cargo bench -- noloss`) measure only some of them.
        return;
    };
    let n = domain_paths.len();
    println!("\n== reconcile summary (one domain, 20 devices, {n} xenstore nodes)");
    println!("serde_json::to_string of the merged config: {:.2} us", serde / 1e3);
    println!(
        "reconcile no-loss:    {:.1} us = {:.0}x the serialisation (target: at most 1x)",
        noloss / 1e3,
        noloss / serde
    );
    println!("reconcile libxl-4.17: {:.1} us = {:.0}x the serialisation", libxl / 1e3, libxl / serde);
    println!(
        "floor, the {n} nodes each read once by path: {:.1} us = {:.1}x the serialisation",
        floor / 1e3,
        floor / serde
    );
    println!(
        "floor, the {n} nodes each visited once by range scans: {:.1} us = {:.1}x the serialisation",
        scan / 1e3,
        scan / serde
    );
}
