//! Reading a generated 1,000,000-node `xenstore-ls -fp` dump (1,000 domains with realistic
//! devices), against a bare memchr line count of the same bytes measured in the same run.
//!
//! Prints, after criterion's own report: MB/s of both, the ratio of the read to the line
//! count (target: within 4x), and peak memory (target: below 3x the dump size) measured two
//! ways: the heap bytes requested during one read (a counting allocator), and the peak RSS
//! (`VmHWM`) of a child process that reads the dump file, minus that of a child that only
//! loads the file.

use criterion::{BatchSize, Criterion, Throughput};
use merge_core::xenstore::{Node, Path, Perms, Tree};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use xs_adapter::dump::{read, write_fp, ReadOptions};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            grew(new_size);
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One guest's permission lists, for writing its devices.
struct Domain<'p> {
    id: u32,
    guest: &'p Perms,
    shared: &'p Perms,
    dom0: &'p Perms,
}

impl Domain<'_> {
    /// A connected device as libxl 4.17 leaves it: the frontend in the guest's home (owned by
    /// the guest), the backend in dom0 (readable by the guest), and libxl's private copy of the
    /// backend's configuration under `/libxl`. `config` goes to both backend and copy.
    fn device(
        &self,
        t: &mut Tree,
        kind: &str,
        devid: u32,
        frontend: &[(&str, &str)],
        config: &[(&str, &str)],
        backend_only: &[(&str, &str)],
    ) {
        let d = self.id;
        let fe = format!("/local/domain/{d}/device/{kind}/{devid}");
        let be = format!("/local/domain/0/backend/{kind}/{d}/{devid}");
        let lx = format!("/libxl/{d}/device/{kind}/{devid}");
        let put = |t: &mut Tree, path: String, value: &str, perms: &Perms| {
            t.insert(Path::new(&path).unwrap(), Node::new(value.as_bytes().to_vec()).with_perms(Some(perms.clone())));
        };
        for (k, v) in [("backend", be.as_str()), ("backend-id", "0"), ("state", "4")].iter().chain(frontend) {
            put(t, format!("{fe}/{k}"), v, self.guest);
        }
        let id = d.to_string();
        for (k, v) in [("frontend", fe.as_str()), ("frontend-id", &id), ("online", "1")].iter().chain(config) {
            put(t, format!("{be}/{k}"), v, self.shared);
            put(t, format!("{lx}/{k}"), v, self.dom0);
        }
        for (k, v) in [("state", "4"), ("hotplug-status", "connected")].iter().chain(backend_only) {
            put(t, format!("{be}/{k}"), v, self.shared);
        }
        put(t, format!("{lx}/backend"), &be, self.dom0);
        put(t, format!("{lx}/state"), "1", self.dom0);
    }
}

const DOMAINS: u32 = 1000;
const NODES_PER_DOMAIN: usize = 1000;

/// A host of 1,000 running PV/HVM guests as libxl 4.17 leaves them: per domain its home
/// (`/local/domain/<d>`: name, memory, cpus, control, store, console, data), 10 disks and 11
/// NICs, each as frontend, backend (in dom0) and libxl's private copy, and `/vm/<uuid>`;
/// padded with `data/` keys to exactly 1,000 nodes per domain.
fn host() -> Tree {
    let mut t = Tree::new();
    let add = |t: &mut Tree, path: String, value: String, perms: &Perms| {
        t.insert(Path::new(&path).unwrap(), Node::new(value.into_bytes()).with_perms(Some(perms.clone())));
    };
    let dom0 = Perms::parse("n0").unwrap();
    for (p, v) in [("/local/domain/0/name", "Domain-0"), ("/local/domain/0/domid", "0"), ("/tool/xenstored", "")] {
        add(&mut t, p.to_string(), v.to_string(), &dom0);
    }
    for d in 1..=DOMAINS {
        let before = t.len();
        let guest = Perms::parse(&format!("n{d},r0")).unwrap();
        let shared = Perms::parse(&format!("n0,r{d}")).unwrap();
        let uuid = format!("{:08x}-5b7d-4e8f-9a01-{:012x}", 0x3a9f_0000u32 + d, u64::from(d) * 7919);
        let home = format!("/local/domain/{d}");
        let vm = format!("/vm/{uuid}");
        for (k, v) in [
            ("uuid", uuid.as_str()),
            ("name", &format!("guest{d}")),
            ("start_time", "1732600000.00"),
            ("image/ostype", "linux"),
        ] {
            add(&mut t, format!("{vm}/{k}"), v.to_string(), &shared);
        }
        for (k, v) in [
            ("vm", vm.as_str()),
            ("name", &format!("guest{d}")),
            ("domid", &d.to_string()),
            ("memory/static-max", "2097152"),
            ("memory/target", "1048576"),
            ("memory/videoram", "-1"),
            ("store/port", "1"),
            ("store/ring-ref", "1000"),
            ("console/port", "2"),
            ("console/ring-ref", "1001"),
            ("console/type", "xenconsoled"),
            ("console/limit", "1048576"),
            ("console/output", "pty"),
            ("console/tty", &format!("/dev/pts/{d}")),
            ("console/backend", &format!("/local/domain/0/backend/console/{d}/0")),
            ("console/backend-id", "0"),
        ] {
            add(&mut t, format!("{home}/{k}"), v.to_string(), &shared);
        }
        for cpu in 0..4 {
            add(
                &mut t,
                format!("{home}/cpu/{cpu}/availability"),
                if cpu < 2 { "online" } else { "offline" }.into(),
                &shared,
            );
        }
        for k in [
            "shutdown",
            "feature-poweroff",
            "feature-reboot",
            "feature-suspend",
            "sysrq",
            "platform-feature-multiprocessor-suspend",
        ] {
            add(
                &mut t,
                format!("{home}/control/{k}"),
                if k == "shutdown" || k == "sysrq" { "" } else { "1" }.into(),
                &guest,
            );
        }
        let dom = Domain { id: d, guest: &guest, shared: &shared, dom0: &dom0 };
        for disk in 0..10u32 {
            let devid = 51712 + disk * 16;
            let dev = format!("xvd{}", char::from(b'a' + disk as u8));
            let ring = (8 + disk).to_string();
            let channel = (20 + disk).to_string();
            let params = format!("/dev/vg0/guest{d}-disk{disk}");
            dom.device(
                &mut t,
                "vbd",
                devid,
                &[
                    ("virtual-device", &devid.to_string()),
                    ("device-type", "disk"),
                    ("protocol", "x86_64-abi"),
                    ("ring-ref", &ring),
                    ("event-channel", &channel),
                    ("feature-persistent", "1"),
                ],
                &[
                    ("params", &params),
                    ("script", "/etc/xen/scripts/block"),
                    ("removable", "0"),
                    ("bootable", "1"),
                    ("dev", &dev),
                    ("type", "phy"),
                    ("mode", "w"),
                    ("device-type", "disk"),
                    ("discard-enable", "1"),
                    ("specification", "xen"),
                ],
                &[
                    ("physical-device", "fe:1"),
                    ("feature-flush-cache", "1"),
                    ("sectors", "41943040"),
                    ("info", "0"),
                    ("sector-size", "512"),
                ],
            );
        }
        for nic in 0..11u32 {
            let mac = format!("00:16:3e:{:02x}:{:02x}:{:02x}", d >> 8, d & 0xff, nic);
            let handle = nic.to_string();
            dom.device(
                &mut t,
                "vif",
                nic,
                &[
                    ("handle", &handle),
                    ("mac", &mac),
                    ("mtu", "1500"),
                    ("tx-ring-ref", "10"),
                    ("rx-ring-ref", "1280"),
                    ("event-channel", "29"),
                    ("request-rx-copy", "1"),
                    ("feature-rx-notify", "1"),
                    ("feature-sg", "1"),
                ],
                &[
                    ("script", "/etc/xen/scripts/vif-bridge"),
                    ("mac", &mac),
                    ("bridge", "xenbr0"),
                    ("handle", &handle),
                    ("type", "vif"),
                    ("mtu", "1500"),
                ],
                &[
                    ("feature-sg", "1"),
                    ("feature-gso-tcpv4", "1"),
                    ("feature-rx-copy", "1"),
                    ("multi-queue-max-queues", "2"),
                ],
            );
        }
        let mut i = 0;
        while t.len() - before < NODES_PER_DOMAIN {
            add(&mut t, format!("{home}/data/key{i}"), format!("value-{i}"), &guest);
            i += 1;
        }
    }
    t
}

/// `VmHWM` of this process, in bytes.
fn vm_hwm() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

const CHILD: &str = "XLSYNC_DUMP_BENCH_CHILD";

/// In a child process: load the file, optionally read it, print the peak RSS.
fn child(spec: &str) {
    let (mode, file) = spec.split_once(':').expect("mode:file");
    let bytes = std::fs::read(file).expect("dump file");
    let snapshot = (mode == "read").then(|| read(&bytes, &ReadOptions::default()).expect("valid dump"));
    println!("{} {}", vm_hwm(), snapshot.as_ref().map_or(0, |s| s.tree.len()));
    // Exit without freeing the tree: its drop is no part of reading.
    std::mem::forget(snapshot);
}

fn child_peak(mode: &str, file: &std::path::Path) -> usize {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD, format!("{mode}:{}", file.display()))
        .output()
        .expect("run the child");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn mean_ns(dir: &std::path::Path, group: &str, bench: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(group).join(bench).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let tree = host();
    let dump = write_fp(&tree).unwrap();
    let nodes = tree.len();
    drop(tree);
    let mb = dump.len() as f64 / 1e6;
    println!("dump: {nodes} nodes, {} lines, {mb:.1} MB ({:.1} bytes a line)", nodes, dump.len() as f64 / nodes as f64);

    // Heap requested during one read, over what was live before it.
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let snapshot = read(&dump, &ReadOptions::default()).unwrap();
    assert_eq!(snapshot.tree.len(), nodes);
    let heap_peak = PEAK.load(Ordering::Relaxed) - base;
    let heap_kept = CURRENT.load(Ordering::Relaxed) - base;
    drop(snapshot);

    // Whole-process peaks of a child that reads the dump and one that only loads it.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("dump-read-bench.{}.fp", std::process::id()));
    std::fs::write(&file, &dump).unwrap();
    let loaded = child_peak("load", &file);
    let read_peak = child_peak("read", &file);
    // XLSYNC_DUMP_BENCH_KEEP=1 keeps the file, e.g. for `perf record` on a child.
    if std::env::var_os("XLSYNC_DUMP_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_file(&file);
    } else {
        println!("dump kept in {}", file.display());
    }

    let out_dir = dir.join("criterion");
    let mut c = Criterion::default().sample_size(10).output_directory(&out_dir).configure_from_args();
    let group_name = "dump_read_1M_fp";
    let mut g = c.benchmark_group(group_name);
    g.throughput(Throughput::Bytes(dump.len() as u64));
    g.bench_function("memchr_line_count", |b| b.iter(|| memchr::memchr_iter(b'\n', black_box(&dump)).count()));
    let opts = ReadOptions::default();
    g.bench_function("read_fp", |b| b.iter_with_large_drop(|| read(black_box(&dump), &opts).unwrap()));
    // What building the tree alone costs, from nodes already parsed and allocated, inserted in
    // the dump's order: the part of a read no parser can avoid.
    let parsed: Vec<(Path, Node)> =
        read(&dump, &opts).unwrap().tree.iter().map(|(p, n)| (p.clone(), n.clone())).collect();
    g.bench_function("tree_insert_only", |b| {
        b.iter_batched(|| parsed.clone(), |nodes| nodes.into_iter().collect::<Tree>(), BatchSize::PerIteration)
    });
    g.finish();
    c.final_summary();

    println!("\n== dump_read summary ({nodes} nodes, {mb:.1} MB)");
    if let (Some(count), Some(parse)) =
        (mean_ns(&out_dir, group_name, "memchr_line_count"), mean_ns(&out_dir, group_name, "read_fp"))
    {
        let rate = |ns: f64| dump.len() as f64 / (ns / 1e9) / 1e6;
        println!("memchr line count: {:.2} ms, {:.0} MB/s", count / 1e6, rate(count));
        println!("dump::read -fp:    {:.2} ms, {:.0} MB/s", parse / 1e6, rate(parse));
        println!("ratio read / line count: {:.1}x (target: within 4x)", parse / count);
        if let Some(insert) = mean_ns(&out_dir, group_name, "tree_insert_only") {
            println!("tree insert alone:  {:.2} ms = {:.1}x the line count", insert / 1e6, insert / count);
        }
    }
    println!(
        "heap during read: peak {:.1} MB = {:.2}x the dump (target: below 3x); kept in the tree {:.1} MB = {:.2}x",
        heap_peak as f64 / 1e6,
        heap_peak as f64 / dump.len() as f64,
        heap_kept as f64 / 1e6,
        heap_kept as f64 / dump.len() as f64
    );
    println!(
        "peak RSS: child that reads {:.1} MB, child that only loads the file {:.1} MB; the read added {:.1} MB = {:.2}x the dump",
        read_peak as f64 / 1e6,
        loaded as f64 / 1e6,
        read_peak.saturating_sub(loaded) as f64 / 1e6,
        read_peak.saturating_sub(loaded) as f64 / dump.len() as f64
    );
}
