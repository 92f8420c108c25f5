//! Helpers shared by the `cli_*` tests: the built `xlsync` binary, scenario directories read
//! into a `testkit::Scenario` (for the real `xl list -l`), and the real-xenstored plumbing for
//! `--live` runs.
#![allow(dead_code)]

use crate::support::oracle::{domains_txt_text, userdata_file_name, write_tree};
use crate::support::{shim_so, Xenstored, XENBIN};
use merge_core::hypervisor::{HostInfo, Scheduler};
use merge_core::testkit::Scenario;
use merge_core::xenstore::{Access, Perm, Perms};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use xs_adapter::live::{Client, Endpoint};

pub const SPIKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/oracle-spike/scenarios");
pub const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/demo");
pub const SPIKE_SCENARIOS: [&str; 5] =
    ["a-agree", "b-json-extra-disk", "c-xenstore-extra-nic", "d-runtime-overrides", "e-no-json"];

/// The `xlsync` binary cargo built for this test run, with no xenstored in its environment.
pub fn xlsync() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xlsync"));
    c.env_remove("XENSTORED_PATH").env_remove("XENSTORED_RUNDIR").env_remove("NO_COLOR").stdin(Stdio::null());
    c
}

/// Runs a command to completion.
pub fn output(c: &mut Command) -> Output {
    c.output().unwrap_or_else(|e| panic!("cannot run {:?}: {e}", c.get_program()))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scenario directory (the oracle spike's or the demo's): `domains.txt`, `xenstore.txt` (any
/// dump format), an optional `env.sh` naming the scheduler, and userdata files named either
/// `<domid>.libxl-json` or libxl's `userdata-d.<domid>.<uuid>.libxl-json`.
pub struct ScenarioDir {
    pub dir: PathBuf,
    pub scheduler: Scheduler,
    pub scenario: Scenario,
}

impl ScenarioDir {
    pub fn load(dir: &Path) -> ScenarioDir {
        let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()));
        let scheduler = std::fs::read_to_string(dir.join("env.sh"))
            .ok()
            .and_then(|env| env.lines().find_map(|l| l.trim().strip_prefix("export XLSHIM_SCHED=").map(str::to_string)))
            .map(|s| Scheduler::parse(&s).unwrap_or_else(|| panic!("{}/env.sh: unknown scheduler {s}", dir.display())))
            .unwrap_or(Scheduler::Credit2);
        let host = HostInfo::parse_domains_txt(&text(&read("domains.txt")), scheduler)
            .unwrap_or_else(|e| panic!("{}/domains.txt: {e}", dir.display()));
        let tree = xs_adapter::dump::read(&read("xenstore.txt"), &Default::default())
            .unwrap_or_else(|e| panic!("{}/xenstore.txt: {e}", dir.display()))
            .tree;
        let mut userdata = BTreeMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            let Some(stem) = name.strip_suffix(".libxl-json") else { continue };
            let domid = match stem.strip_prefix("userdata-d.") {
                Some(rest) => rest.split('.').next().unwrap().parse::<u32>().unwrap(),
                None => stem.parse::<u32>().unwrap(),
            };
            userdata.insert(domid, std::fs::read(&p).unwrap());
        }
        ScenarioDir { dir: dir.to_path_buf(), scheduler, scenario: Scenario { host, tree, userdata } }
    }

    pub fn spike(name: &str) -> ScenarioDir {
        ScenarioDir::load(&Path::new(SPIKE).join(name))
    }

    /// The file holding `domid`'s JSON, if any.
    pub fn json_file(&self, domid: u32) -> Option<PathBuf> {
        let plain = self.dir.join(format!("{domid}.libxl-json"));
        if plain.exists() {
            return Some(plain);
        }
        let uuid = &self.scenario.host.domain(domid)?.uuid;
        Some(self.dir.join(userdata_file_name(domid, uuid))).filter(|p| p.exists())
    }
}

/// `perms` with dom0 as the owner and the original owner given read and write: what a guest
/// may do is unchanged. The harness's xenstored knows no guest domain (the shim reports none to
/// it), and xenstored refuses a list owned by a domain it does not know (ENOENT).
fn owned_by_dom0(perms: &Perms) -> Perms {
    let entries = perms.entries();
    let owner = entries[0];
    if owner.domid == 0 {
        return perms.clone();
    }
    let mut out = vec![Perm { access: owner.access, domid: 0 }, Perm { access: Access::Both, domid: owner.domid }];
    out.extend(entries[1..].iter().copied().filter(|p| p.domid != owner.domid && p.domid != 0));
    Perms::new(out).expect("not empty")
}

/// A private xenstored holding a scenario, with the userdata files installed under libxl's
/// names in a private `/var/lib/xen`, ready for both the real `xl list -l` and `xlsync --live`.
pub struct LiveHost {
    pub xs: Xenstored,
    pub libdir: PathBuf,
    /// The shim's `XLSHIM_DOMAINS` file.
    pub domains_txt: PathBuf,
    pub scheduler: Scheduler,
}

impl LiveHost {
    pub fn start(scenario: &Scenario, scheduler: Scheduler) -> LiveHost {
        let xs = Xenstored::start();
        write_tree(&xs, &scenario.tree);
        // xenstore-write leaves every node owned by dom0; give each node the permissions the
        // scenario has (libxl's: guest-owned frontends), so trust is decided as on a host.
        let mut client = Client::connect(Endpoint::Socket(xs.socket())).expect("connect to the test xenstored");
        for (path, node) in scenario.tree.iter() {
            if let Some(perms) = &node.perms {
                let perms = owned_by_dom0(perms);
                client.set_perms(path.as_str(), &perms).unwrap_or_else(|e| panic!("set_perms {path}: {e}"));
            }
        }
        let libdir = xs.dir().join("varlibxen");
        std::fs::create_dir_all(&libdir).unwrap();
        let domains_txt = xs.dir().join("domains.txt");
        std::fs::write(&domains_txt, domains_txt_text(&scenario.host)).unwrap();
        for (domid, bytes) in &scenario.userdata {
            let uuid = scenario.host.domain(*domid).map_or("00000000-0000-0000-0000-000000000000", |d| d.uuid.as_str());
            std::fs::write(libdir.join(userdata_file_name(*domid, uuid)), bytes).unwrap();
        }
        LiveHost { xs, libdir, domains_txt, scheduler }
    }

    /// The real `xl list -l <domids>` against this daemon and directory.
    pub fn xl_list(&self, domids: &[u32]) -> Output {
        let xl = Path::new(XENBIN).join("xl");
        assert!(xl.exists(), "{} is missing; install xen-utils-4.17 (see .ci/run)", xl.display());
        let mut cmd = self.xs.command(&xl);
        cmd.arg("list").arg("-l").args(domids.iter().map(u32::to_string));
        cmd.env("LD_PRELOAD", shim_so())
            .env("XLSHIM_DOMAINS", &self.domains_txt)
            .env("XLSHIM_SCHED", self.scheduler.as_str())
            .env("XLSHIM_LIBDIR", &self.libdir)
            .env_remove("XLSHIM_DEBUG")
            .stdin(Stdio::null());
        output(&mut cmd)
    }

    /// `xlsync <args> --live --userdata-dir <libdir>` against this daemon.
    pub fn xlsync(&self, args: &[&str]) -> Command {
        let mut c = xlsync();
        c.args(args).arg("--live").arg("--userdata-dir").arg(&self.libdir);
        c.env("XENSTORED_PATH", self.xs.socket());
        c
    }
}
