//! The whole command against the real thing: `xlsync retrieve --all --live --policy libxl-4.17`
//! (issue 9) and `xlsync retrieve --all --xenstore <the real xenstore-ls -fp of the daemon>`
//! (issue 4: reconcile every domain from a snapshot) versus the real `xl list -l` (every
//! domain), whole processes, on the same daemon and the same userdata directory, in one run
//! (`cargo bench -p xs-adapter --bench cli_live_vs_xl`). `XLSYNC_BENCH_KEEP=<dir>` keeps the
//! host's dump, domains.txt and userdata there for profiling.
//!
//! The host is `merge_core::testkit::big_host` with `XLSYNC_BENCH_DOMAINS` guests (default
//! 1,000, about 130,000 nodes), loaded into a private C xenstored; qemu-xen HVM guests get a fake
//! QEMU each, as in the oracle harness. Each command runs `XLSYNC_BENCH_ROUNDS` times (default
//! 3), interleaved; the outputs must be byte-identical (a parity check on a big generated host),
//! and the best and median wall times and their ratio are printed.
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::qmp::{FakeQemu, QmpDialect};
use xs_adapter::live::{Client, ClientOptions, Endpoint};

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// CPU time (user + system) of process `pid` so far, from `/proc/<pid>/stat`.
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// CPU time of the waited-for children of this process.
fn children_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut r) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(r.ru_utime) + tv(r.ru_stime)
}

/// What one whole-process run cost: wall time, the command's own CPU, the daemon's CPU.
#[derive(Clone, Copy)]
struct Cost {
    wall: Duration,
    own_cpu: Duration,
    daemon_cpu: Duration,
}

fn timed(cmd: &mut Command, daemon: u32) -> (Cost, Output) {
    cmd.stdin(Stdio::null());
    let (own0, daemon0) = (children_cpu(), process_cpu(daemon));
    let start = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    let wall = start.elapsed();
    (Cost { wall, own_cpu: children_cpu() - own0, daemon_cpu: process_cpu(daemon).saturating_sub(daemon0) }, out)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let domains = env_or("XLSYNC_BENCH_DOMAINS", 1000);
    let rounds = env_or("XLSYNC_BENCH_ROUNDS", 3).max(1);
    let generated = merge_core::testkit::big_host(domains, 0x5eed);
    let scenario = &generated.scenario;
    let scheduler = scenario.scheduler();

    let xs = support::Xenstored::start();
    let load = Instant::now();
    let options = ClientOptions { timeout: Duration::from_secs(120), ..ClientOptions::default() };
    let mut client = Client::connect_with(Endpoint::Socket(xs.socket()), options).expect("connect");
    client.set_window(64);
    client.write_many(scenario.tree.iter().map(|(p, n)| (p.as_str(), &n.value[..]))).expect("load the host");
    drop(client);
    let libdir = xs.dir().join("varlibxen");
    let rundir = xs.dir().join("varrunxen");
    std::fs::create_dir_all(&libdir).unwrap();
    std::fs::create_dir_all(&rundir).unwrap();
    for (domid, bytes) in &scenario.userdata {
        let uuid = &scenario.host.domain(*domid).expect("a generated domain").uuid;
        std::fs::write(libdir.join(support::oracle::userdata_file_name(*domid, uuid)), bytes).unwrap();
    }
    // The shim's domains.txt, and the same with QEMU's answers for xlsync (`qemu_cpus=`).
    let shim_domains = support::oracle::domains_txt_text(&scenario.host);
    let xlsync_domains: String = shim_domains
        .lines()
        .map(|line| {
            let domid =
                line.strip_prefix("domid=").and_then(|r| r.split(' ').next()).and_then(|d| d.parse::<u32>().ok());
            let cpus = domid.and_then(|d| scenario.host.domain(d)).and_then(|d| d.qemu_cpus.as_ref());
            match cpus {
                Some(c) => format!("{line} qemu_cpus={}\n", c.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
                None => format!("{line}\n"),
            }
        })
        .collect();
    let shim_file = xs.dir().join("domains.txt");
    let xlsync_file = xs.dir().join("domains-xlsync.txt");
    std::fs::write(&shim_file, &shim_domains).unwrap();
    std::fs::write(&xlsync_file, &xlsync_domains).unwrap();
    let qemus: Vec<FakeQemu> = scenario
        .host
        .domains
        .values()
        .filter_map(|d| d.qemu_cpus.as_ref().map(|cpus| (d.domid, cpus)))
        .map(|(domid, cpus)| {
            FakeQemu::start(&rundir.join(format!("qmp-libxl-{domid}")), cpus.clone(), QmpDialect::CpusFast)
        })
        .collect();
    println!(
        "host: {domains} guests, {} xenstore nodes, {} userdata files, {} fake QEMUs; loaded in {}",
        scenario.tree.len(),
        scenario.userdata.len(),
        qemus.len(),
        ms(load.elapsed())
    );

    // Issue 4's comparison reconciles from a snapshot: the real `xenstore-ls -fp` of the same
    // daemon, taken once here, read by xlsync as a file.
    let dump_file = xs.dir().join("host.fp");
    let dump = xs.tool("xenstore-ls", &["-fp"]);
    assert!(dump.status.success(), "xenstore-ls -fp failed: {}", String::from_utf8_lossy(&dump.stderr));
    std::fs::write(&dump_file, &dump.stdout).unwrap();
    if let Ok(keep) = std::env::var("XLSYNC_BENCH_KEEP") {
        // For profiling xlsync on this host without reloading a daemon.
        let keep = Path::new(&keep);
        std::fs::create_dir_all(keep.join("varlibxen")).unwrap();
        std::fs::copy(&dump_file, keep.join("host.fp")).unwrap();
        std::fs::copy(&xlsync_file, keep.join("domains.txt")).unwrap();
        for e in std::fs::read_dir(&libdir).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), keep.join("varlibxen").join(e.file_name())).unwrap();
        }
        println!("kept the host's dump, domains.txt and userdata under {}", keep.display());
    }

    let xl = || {
        let mut c = xs.command(Path::new(support::XENBIN).join("xl"));
        c.args(["list", "-l"])
            .env("LD_PRELOAD", support::shim_so())
            .env("XLSHIM_DOMAINS", &shim_file)
            .env("XLSHIM_SCHED", scheduler.as_str())
            .env("XLSHIM_LIBDIR", &libdir)
            .env("XLSHIM_RUNDIR", &rundir)
            .env_remove("XLSHIM_DEBUG");
        c
    };
    let xlsync = || {
        let mut c = xs.command(env!("CARGO_BIN_EXE_xlsync"));
        c.args([
            "retrieve",
            "--all",
            "--live",
            "--policy",
            "libxl-4.17",
            "--scheduler",
            scheduler.as_str(),
            "--hypervisor",
        ])
        .arg(&xlsync_file)
        .arg("--userdata-dir")
        .arg(&libdir);
        c
    };

    let xlsync_snapshot = || {
        let mut c = xs.command(env!("CARGO_BIN_EXE_xlsync"));
        c.args(["retrieve", "--all", "--policy", "libxl-4.17", "--scheduler", scheduler.as_str(), "--xenstore"])
            .arg(&dump_file)
            .arg("--hypervisor")
            .arg(&xlsync_file)
            .arg("--userdata-dir")
            .arg(&libdir);
        c
    };

    let (mut xl_costs, mut xlsync_costs, mut snapshot_costs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (c_xl, out_xl) = timed(&mut xl(), xs.pid());
        let (c_us, out_us) = timed(&mut xlsync(), xs.pid());
        let (c_snap, out_snap) = timed(&mut xlsync_snapshot(), xs.pid());
        assert!(out_snap.status.success(), "xlsync (snapshot) failed: {}", String::from_utf8_lossy(&out_snap.stderr));
        assert!(out_snap.stdout == out_xl.stdout, "xlsync's output from the snapshot differs from xl list -l");
        assert!(out_xl.status.success(), "xl failed: {}", String::from_utf8_lossy(&out_xl.stderr));
        assert!(out_us.status.success(), "xlsync failed: {}", String::from_utf8_lossy(&out_us.stderr));
        if round == 0 {
            let listed = String::from_utf8_lossy(&out_xl.stdout).matches("\"domid\":").count();
            assert_eq!(listed as u32, domains, "xl listed {listed} domains");
            assert!(out_us.stdout == out_xl.stdout, "xlsync's output differs from xl list -l");
            // xl also tries dom0 (no userdata): one error line xlsync does not print.
            let (e_xl, e_us) =
                (out_xl.stderr.split(|&b| b == b'\n').count(), out_us.stderr.split(|&b| b == b'\n').count());
            println!(
                "parity: stdout byte-identical ({} bytes, {listed} domains); stderr lines xl {} / xlsync {}",
                out_xl.stdout.len(),
                e_xl - 1,
                e_us - 1
            );
        }
        let show =
            |c: Cost| format!("wall {}, own cpu {}, xenstored cpu {}", ms(c.wall), ms(c.own_cpu), ms(c.daemon_cpu));
        println!("round {}: xl list -l: {}", round + 1, show(c_xl));
        println!("round {}: xlsync:     {}", round + 1, show(c_us));
        println!("round {}: xlsync from the -fp snapshot: {}", round + 1, show(c_snap));
        xl_costs.push(c_xl);
        xlsync_costs.push(c_us);
        snapshot_costs.push(c_snap);
    }
    let summary = |name: &str, costs: &[Cost]| {
        let wall = median(costs.iter().map(|c| c.wall).collect());
        let own = median(costs.iter().map(|c| c.own_cpu).collect());
        let daemon = median(costs.iter().map(|c| c.daemon_cpu).collect());
        let best = costs.iter().map(|c| c.wall).min().unwrap();
        println!(
            "{name}: wall best {}, median {}; own cpu {}; xenstored cpu {}",
            ms(best),
            ms(wall),
            ms(own),
            ms(daemon)
        );
        (best, wall, own + daemon)
    };
    let (xl_best, xl_med, xl_cpu) = summary(&format!("xl list -l (all {domains} domains)"), &xl_costs);
    let (us_best, us_med, us_cpu) = summary("xlsync retrieve --all --live --policy libxl-4.17", &xlsync_costs);
    let (snap_best, snap_med, _) =
        summary("xlsync retrieve --all --xenstore <-fp snapshot> --policy libxl-4.17", &snapshot_costs);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "issue 4: ratio xl list -l / xlsync from the snapshot: wall best {:.2}x, wall median {:.2}x (target: at least 50x)",
        ratio(xl_best, snap_best),
        ratio(xl_med, snap_med)
    );
    println!(
        "ratio xl / xlsync (above 1: xlsync is faster): wall best {:.2}x, wall median {:.2}x, cpu (own + xenstored) {:.2}x",
        ratio(xl_best, us_best),
        ratio(xl_med, us_med),
        ratio(xl_cpu, us_cpu)
    );
    // Floors under the snapshot path, in this process, each the best of `rounds`:
    // - reading the dump file as the command does under libxl-4.17 (in parts on every core,
    //   making only the nodes libxl reads, each part sorting them for the tree's array);
    // - reading the 1,000 userdata files under libxl's lock protocol on one thread, as the
    //   command's read-ahead does (a lock file created and removed per domain; `xl` takes the
    //   same locks).
    // The command does the two at once and then reconciles: it cannot be faster than the
    // longer of them.
    let bytes = std::fs::read(&dump_file).unwrap();
    let policy = merge_core::reconcile::Policy::Libxl417;
    let (mut read_best, mut userdata_best) = (Duration::MAX, Duration::MAX);
    let mut kept_nodes = 0;
    let userdata = xs_adapter::userdata::UserdataDir::new(&libdir);
    let locking = xs_adapter::userdata::Locking::Lock(xs_adapter::userdata::LockOptions::default());
    let files: Vec<(u32, String)> =
        scenario.host.domains.values().filter(|d| d.domid != 0).map(|d| (d.domid, d.uuid.clone())).collect();
    for _ in 0..rounds {
        let start = Instant::now();
        let tree = xs_adapter::cli::inputs::read_dump_for(&bytes, "host.fp", false, policy).expect("the dump");
        read_best = read_best.min(start.elapsed());
        kept_nodes = tree.len();
        std::hint::black_box(tree);
        let start = Instant::now();
        let read: Vec<_> = files
            .iter()
            .map(|(domid, uuid)| {
                userdata.read_json_if_alive(*domid, uuid, locking, &mut || true).expect("a userdata file")
            })
            .collect();
        userdata_best = userdata_best.min(start.elapsed());
        std::hint::black_box(read);
    }
    let both_reads = read_best.max(userdata_best);
    println!(
        "floor: reading the snapshot ({} bytes, {kept_nodes} nodes kept) as the command does in process {} \
         (xl / that = {:.1}x)",
        bytes.len(),
        ms(read_best),
        ratio(xl_best, read_best)
    );
    println!(
        "floor: reading the {} userdata files under libxl's locks on one thread {} ({:.1}x); \
         the longer of the two reads {} ({:.1}x)",
        files.len(),
        ms(userdata_best),
        ratio(xl_best, userdata_best),
        ms(both_reads),
        ratio(xl_best, both_reads)
    );
    drop(qemus);
    xs.stop();
}
