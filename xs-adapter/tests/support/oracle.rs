//! The libxl 4.17 oracle: runs the real `xl list -l` on a [`Scenario`].
//!
//! Each run is private and parallel-safe: its own xenstored (`Xenstored::start`, which also
//! writes the `xen-init-dom0` nodes), its own `/var/lib/xen` stand-in (`XLSHIM_LIBDIR`) holding
//! the userdata files, its own `/var/run/xen` stand-in (`XLSHIM_RUNDIR`) holding one fake QMP
//! socket per domain that has `qemu_cpus`, and its own `domains.txt` (`XLSHIM_DOMAINS`), all in
//! the daemon's temporary directory. `xl` runs under the shim, which answers the hypervisor
//! calls from `domains.txt` and the pool-0 scheduler from `XLSHIM_SCHED`.
//!
//! What is written: every node's value, in the tree's sorted order (so xenstored's creation
//! order, which is its directory order, is byte order), in one `xenstore-write` call per 2,000
//! nodes. Permissions are not written: libxl reads as dom0.

use super::qmp::{FakeQemu, QmpDialect};
use super::{Xenstored, XENBIN};
use merge_core::hypervisor::{HostInfo, RunState};
use merge_core::testkit::Scenario;
use merge_core::xenstore::Tree;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What `xl list -l` printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The exit status; 128 + N when killed by signal N (as a shell reports it).
    pub rc: i32,
}

impl OracleOutput {
    pub fn stdout_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    pub fn stderr_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }

    /// The `[{"domid": N, "config": {...}}, ...]` array, parsed; panics with the output if it
    /// is not JSON.
    pub fn listed(&self) -> Vec<(u32, serde_json::Value)> {
        let v: serde_json::Value = serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!("xl list -l printed no JSON ({e}):\n{}\nstderr:\n{}", self.stdout_text(), self.stderr_text())
        });
        v.as_array()
            .unwrap_or_else(|| panic!("xl list -l printed no array: {v}"))
            .iter()
            .map(|e| (e["domid"].as_u64().expect("domid") as u32, e["config"].clone()))
            .collect()
    }

    /// libxl's `warning:` lines.
    pub fn warnings(&self) -> Vec<String> {
        self.stderr_text().lines().filter(|l| l.contains(": warning: ")).map(str::to_string).collect()
    }
}

/// Knobs of one run that are not part of the scenario.
#[derive(Debug, Clone, Default)]
pub struct OracleOptions {
    /// Which vCPU query the fake QEMUs answer.
    pub qmp_dialect: QmpDialect,
    /// `XLSHIM_DEBUG`: the shim logs every faked call to stderr.
    pub shim_debug: bool,
    /// `XLSHIM_NR_CPUS` (the shim's default is 4).
    pub host_cpus: Option<u32>,
    /// Extra arguments after `xl`'s own (`-v` …) go before `list`.
    pub xl_global_args: Vec<String>,
}

/// `xl list -l [domids]` on `scenario` (an empty `domids` lists every domain).
pub fn run_xl_list(scenario: &Scenario, domids: &[u32]) -> OracleOutput {
    run_xl_list_with(scenario, domids, &OracleOptions::default())
}

/// [`run_xl_list`] with options; also returns the QMP commands each fake QEMU received.
pub fn run_xl_list_with(scenario: &Scenario, domids: &[u32], opts: &OracleOptions) -> OracleOutput {
    run_xl_list_traced(scenario, domids, opts).0
}

/// The QMP commands received, per domid.
pub type QmpLog = BTreeMap<u32, Vec<String>>;

pub fn run_xl_list_traced(scenario: &Scenario, domids: &[u32], opts: &OracleOptions) -> (OracleOutput, QmpLog) {
    let xl = Path::new(XENBIN).join("xl");
    assert!(xl.exists(), "{} is missing; install xen-utils-4.17 (see .ci/run)", xl.display());
    let xs = Xenstored::start();
    write_tree(&xs, &scenario.tree);

    let libdir = xs.dir().join("varlibxen");
    let rundir = xs.dir().join("varrunxen");
    std::fs::create_dir_all(&libdir).expect("create the /var/lib/xen stand-in");
    std::fs::create_dir_all(&rundir).expect("create the /var/run/xen stand-in");
    let domains_txt = xs.dir().join("domains.txt");
    std::fs::write(&domains_txt, domains_txt_text(&scenario.host)).expect("write domains.txt");
    for (domid, bytes) in &scenario.userdata {
        let uuid = scenario.host.domain(*domid).map_or("00000000-0000-0000-0000-000000000000", |d| d.uuid.as_str());
        std::fs::write(libdir.join(userdata_file_name(*domid, uuid)), bytes).expect("write userdata");
    }
    let qemus: Vec<(u32, FakeQemu)> = scenario
        .host
        .domains
        .values()
        .filter_map(|d| d.qemu_cpus.as_ref().map(|cpus| (d.domid, cpus)))
        .map(|(domid, cpus)| {
            let socket = rundir.join(format!("qmp-libxl-{domid}"));
            assert!(socket.as_os_str().len() < 108, "QMP socket path {} does not fit sun_path", socket.display());
            (domid, FakeQemu::start(&socket, cpus.clone(), opts.qmp_dialect))
        })
        .collect();

    let mut cmd = xs.command(&xl);
    cmd.args(&opts.xl_global_args).arg("list").arg("-l").args(domids.iter().map(u32::to_string));
    cmd.env("LD_PRELOAD", super::shim_so())
        .env("XLSHIM_DOMAINS", &domains_txt)
        .env("XLSHIM_SCHED", scenario.scheduler().as_str())
        .env("XLSHIM_LIBDIR", &libdir)
        .env("XLSHIM_RUNDIR", &rundir)
        .env_remove("XLSHIM_DEBUG")
        .env_remove("XLSHIM_NR_CPUS");
    if opts.shim_debug {
        cmd.env("XLSHIM_DEBUG", "1");
    }
    if let Some(n) = opts.host_cpus {
        cmd.env("XLSHIM_NR_CPUS", n.to_string());
    }
    let out = run_with_deadline(cmd, Duration::from_secs(60));
    let log = qemus.iter().map(|(d, q)| (*d, q.commands())).collect();
    drop(qemus);
    xs.stop();
    (out, log)
}

/// Runs `cmd` to completion, killing it (by its pid) if it outlives `deadline`.
fn run_with_deadline(mut cmd: std::process::Command, deadline: Duration) -> OracleOutput {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    let mut stdout_pipe = child.stdout.take().expect("piped stdout");
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    // Drain both pipes on threads so a chatty xl never blocks on a full pipe.
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout_pipe.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for xl") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("xl did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    use std::os::unix::process::ExitStatusExt;
    let rc = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    OracleOutput {
        stdout: out_thread.join().expect("stdout reader"),
        stderr: err_thread.join().expect("stderr reader"),
        rc,
    }
}

/// `userdata-d.<domid>.<uuid>.libxl-json`.
pub fn userdata_file_name(domid: u32, uuid: &str) -> String {
    format!("userdata-d.{domid}.{uuid}.libxl-json")
}

/// A value as `xenstore-write` takes it: its `unsanitise_value` decodes `\\` and `\xNN`, so
/// a backslash is doubled and every byte outside printable ASCII becomes `\xNN`.
pub fn xenstore_write_escape(value: &[u8]) -> String {
    let mut s = String::with_capacity(value.len());
    for &b in value {
        match b {
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// Writes every node of `tree` (values only) into the daemon.
pub fn write_tree(xs: &Xenstored, tree: &Tree) {
    let pairs: Vec<(String, String)> =
        tree.iter().map(|(p, n)| (p.as_str().to_string(), xenstore_write_escape(&n.value))).collect();
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(p, v)| (p.as_str(), v.as_str())).collect();
    xs.write(&refs);
}

fn run_state(s: RunState) -> &'static str {
    match s {
        RunState::Running => "running",
        RunState::Blocked => "blocked",
        RunState::Paused => "paused",
        RunState::Shutdown => "shutdown",
        RunState::Dying => "dying",
    }
}

/// The shim's `XLSHIM_DOMAINS` file for `host`.
pub fn domains_txt_text(host: &HostInfo) -> String {
    let mut s = String::from("# fake hypervisor (XLSHIM_DOMAINS), written by the oracle harness\n");
    for d in host.domains.values() {
        s.push_str(&format!(
            "domid={} uuid={} type={} max_memkb={} tot_memkb={} vcpus={} state={} cpupool={} ssidref={} weight={} cap={} period={} budget={}\n",
            d.domid,
            d.uuid,
            d.guest_type.as_str(),
            d.max_memkb,
            d.tot_memkb,
            d.vcpus,
            run_state(d.state),
            d.cpupool,
            d.ssidref,
            d.weight,
            d.cap,
            d.rtds_period,
            d.rtds_budget
        ));
    }
    s
}
