//! Whole-host snapshot speed against the real C xenstored, as a scripted whole-process
//! comparison in one run on one daemon (`cargo bench -p xs-adapter --bench live_snapshot`).
//!
//! It loads a host of `XLSYNC_BENCH_DOMAINS` domains (default 1,000: about 170,000 nodes, see
//! `tests/support/live_host.rs`), then times, each `XLSYNC_BENCH_ROUNDS` times (default 3,
//! interleaved, best kept):
//!
//! * xlsync's whole-store snapshot (`Scope::Subtree("/")`, watches and barrier: the same
//!   content as `xenstore-ls -fp`), and the host scope (what reconciliation reads);
//! * `xenstore-ls -fp /` and `xenstore-ls -f /`;
//! * a pipelined flood of plain `READ`s, as many as the snapshot sent requests: the daemon's
//!   limit for that work;
//! * the per-domain transaction mode, once;
//! * the whole-store snapshot over one connection, as before walks were spread;
//! * the number of connections and the pipelining window, swept.
//!
//! Besides wall time it prints the daemon's CPU time for each, which does not depend on what
//! else the machine runs. Speeds are reported as ratios to the baselines of the same run.
#[path = "../tests/support/mod.rs"]
mod support;

use merge_core::xenstore::Path;
use std::time::{Duration, Instant};
use xs_adapter::live::{
    Client, ClientOptions, Consistency, Endpoint, Scope, SnapshotOptions, DEFAULT_CONNECTIONS, DEFAULT_WINDOW,
};

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// The daemon's user + system CPU time so far.
fn daemon_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("daemon stat");
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// CPU time of this process (`RUSAGE_SELF`) or of its waited-for children (`RUSAGE_CHILDREN`).
fn own_cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut r) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(r.ru_utime) + tv(r.ru_stime)
}

#[derive(Clone, Copy, Default)]
struct Cost {
    wall: Duration,
    cpu: Duration,
    /// The client's CPU: this process, or the `xenstore-ls` child.
    client: Duration,
}

impl Cost {
    fn best(self, other: Cost) -> Cost {
        if self.wall.is_zero() || other.wall < self.wall {
            other
        } else {
            self
        }
    }
}

fn measure(pid: u32, f: impl FnOnce()) -> Cost {
    let client = || own_cpu(libc::RUSAGE_SELF) + own_cpu(libc::RUSAGE_CHILDREN);
    let (cpu0, client0, t0) = (daemon_cpu(pid), client(), Instant::now());
    f();
    Cost { wall: t0.elapsed(), cpu: daemon_cpu(pid) - cpu0, client: client() - client0 }
}

fn line(name: &str, c: Cost, base: Cost) {
    println!(
        "{name:<44} {:>9.3} s  {:>7.2}x   daemon cpu {:>8.3} s  {:>7.2}x   client cpu {:>7.3} s",
        c.wall.as_secs_f64(),
        base.wall.as_secs_f64() / c.wall.as_secs_f64(),
        c.cpu.as_secs_f64(),
        base.cpu.as_secs_f64() / c.cpu.as_secs_f64().max(1e-9),
        c.client.as_secs_f64(),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let domains = env_or("XLSYNC_BENCH_DOMAINS", if quick { 5 } else { 1000 });
    let rounds = env_or("XLSYNC_BENCH_ROUNDS", if quick { 1 } else { 3 });
    let xs = support::Xenstored::start();
    let pid = xs.pid();
    let options = ClientOptions { timeout: Duration::from_secs(120), ..ClientOptions::default() };
    let mut client = Client::connect_with(Endpoint::Socket(xs.socket()), options).expect("connect");

    let pairs = support::live_host::big_host(domains);
    client.set_window(64);
    let load = measure(pid, || {
        client.write_many(pairs.iter().map(|(p, v)| (p.as_str(), v.as_bytes()))).expect("load the host");
    });
    client.set_window(DEFAULT_WINDOW);
    let whole = SnapshotOptions { scope: Scope::Subtree(Path::root()), ..SnapshotOptions::default() };
    let first = client.snapshot(&whole).expect("snapshot");
    let nodes = first.tree.len();
    let requests = first.stats.requests;
    println!(
        "host: {domains} domains, {} pairs written in {:.1} s, {nodes} nodes; snapshot sends {requests} requests \
         ({:.2} per node); window {DEFAULT_WINDOW} on each of {DEFAULT_CONNECTIONS} connections",
        pairs.len(),
        load.wall.as_secs_f64(),
        requests as f64 / nodes as f64
    );

    // Plain reads of existing nodes, cycled to the snapshot's request count.
    let node_paths: Vec<&str> = first.tree.iter().map(|(p, _)| p.as_str()).collect();
    let flood_paths: Vec<&str> = node_paths.iter().copied().cycle().take(requests as usize).collect();
    let host = SnapshotOptions::default();
    let (mut snap, mut snap_host, mut fp, mut f, mut flood, mut flood_nodes, mut snap_one) = Default::default();
    let mut host_requests = 0;
    for _ in 0..rounds {
        snap = Cost::best(snap, measure(pid, || drop(client.snapshot(&whole).expect("snapshot"))));
        snap_host = Cost::best(
            snap_host,
            measure(pid, || host_requests = client.snapshot(&host).expect("host snapshot").stats.requests),
        );
        fp = Cost::best(fp, measure(pid, || assert!(xs.tool("xenstore-ls", &["-fp", "/"]).status.success())));
        f = Cost::best(f, measure(pid, || assert!(xs.tool("xenstore-ls", &["-f", "/"]).status.success())));
        flood = Cost::best(flood, measure(pid, || drop(client.read_many(&flood_paths).expect("flood"))));
        flood_nodes = Cost::best(flood_nodes, measure(pid, || drop(client.read_many(&node_paths).expect("flood"))));
        client.set_connections(1);
        snap_one = Cost::best(snap_one, measure(pid, || drop(client.snapshot(&whole).expect("snapshot"))));
        client.set_connections(DEFAULT_CONNECTIONS);
    }
    let tx = measure(pid, || {
        let s = client
            .snapshot(&SnapshotOptions { consistency: Consistency::Transaction, ..SnapshotOptions::default() })
            .expect("transaction snapshot");
        assert!(s.stats.transaction_units > 0);
    });

    println!("\nbest of {rounds} (ratio = baseline / this; baseline in brackets)");
    println!("[baseline: xenstore-ls -fp /]");
    line("xenstore-ls -fp /", fp, fp);
    line("xenstore-ls -f /", f, fp);
    line("xlsync snapshot, whole store (watch mode)", snap, fp);
    line("xlsync snapshot, whole store, 1 connection", snap_one, fp);
    line(&format!("xlsync snapshot, host scope ({host_requests} req)"), snap_host, fp);
    line("xlsync snapshot, host scope, per-domain tx", tx, fp);
    println!("[baseline: flood of {requests} plain READs, window {DEFAULT_WINDOW} on each of {DEFAULT_CONNECTIONS} connections]");
    line("flood, snapshot's request count", flood, flood);
    line("xlsync snapshot, whole store (watch mode)", snap, flood);
    line(&format!("flood, one READ per node ({nodes})"), flood_nodes, flood);

    println!("\nconnection sweep (whole-store snapshot, window {DEFAULT_WINDOW}, one run each)");
    for connections in [1, 2, 4, 8, 16, 32] {
        client.set_connections(connections);
        let c = measure(pid, || drop(client.snapshot(&whole).expect("snapshot")));
        line(&format!("{connections} connections"), c, snap);
    }
    println!("\nwindow sweep (whole-store snapshot, {DEFAULT_CONNECTIONS} connections, one run each)");
    client.set_connections(DEFAULT_CONNECTIONS);
    for window in [1, 2, 4, 8, 16, 32] {
        client.set_window(window);
        let c = measure(pid, || drop(client.snapshot(&whole).expect("snapshot")));
        line(&format!("window {window}"), c, snap);
    }
}
