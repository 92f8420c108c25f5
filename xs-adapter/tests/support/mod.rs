//! The real-component harness: a private C xenstored (Debian's xen-utils-4.17) running in user
//! space under our LD_PRELOAD shim (`shim.c`, which fakes the few hypervisor calls xenstored and
//! `xl list -l` make), plus the real `xenstore-*` tools pointed at it.
//!
//! Every test gets its own daemon on its own socket (`XENSTORED_RUNDIR` in a fresh temporary
//! directory), and the daemon is stopped by its pid when the handle drops. A missing binary is a
//! test failure with the fix in the message, never a skip.
#![allow(dead_code)]

pub mod live_host;
pub mod oracle;
pub mod oxenstored;
pub mod qmp;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const XENBIN: &str = "/usr/lib/xen-4.17/bin";
const INSTALL_HINT: &str =
    "install the real components: apt-get install xen-utils-4.17 xenstore-utils libxen-dev gcc (see .ci/run)";

/// Builds `shim.so` once per test process, into cargo's per-target scratch directory.
pub fn shim_so() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/shim.c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(dir).expect("create CARGO_TARGET_TMPDIR");
        let out = dir.join("xlsync-shim.so");
        // Compile to a private name, then rename: concurrent test processes never see a
        // half-written library.
        let tmp = dir.join(format!("xlsync-shim.{}.so", std::process::id()));
        let status = Command::new("gcc")
            .args(["-O2", "-Wall", "-shared", "-fPIC", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-ldl")
            .status()
            .unwrap_or_else(|e| panic!("cannot run gcc to build the shim ({e}); {INSTALL_HINT}"));
        assert!(status.success(), "building {} failed; {INSTALL_HINT}", src.display());
        std::fs::rename(&tmp, &out).expect("install shim.so");
        out
    })
}

/// A private, running xenstored.
pub struct Xenstored {
    child: Child,
    dir: tempfile::TempDir,
}

impl Xenstored {
    /// Starts a daemon and writes what `xen-init-dom0` would (`/local/domain/0/{domid,name}`,
    /// `/local/pool/0/name`), which libxl needs.
    pub fn start() -> Xenstored {
        let xs = Xenstored::start_empty();
        xs.write(&[
            ("/local/domain/0/domid", "0"),
            ("/local/domain/0/name", "Domain-0"),
            ("/local/pool/0/name", "Pool-0"),
        ]);
        xs
    }

    /// Starts a daemon with only what xenstored itself creates (`/`, `/local`, `/tool` …).
    pub fn start_empty() -> Xenstored {
        let daemon = Path::new(XENBIN).join("xenstored");
        assert!(daemon.exists(), "{} is missing; {INSTALL_HINT}", daemon.display());
        let shim = shim_so();
        let dir = tempfile::Builder::new().prefix("xlsync-xs.").tempdir().expect("tempdir");
        let rundir = dir.path().join("run");
        let log = std::fs::File::create(dir.path().join("xenstored.log")).expect("log file");
        let child = Command::new(&daemon)
            .arg("-N")
            .env("XENSTORED_RUNDIR", &rundir)
            .env("LD_PRELOAD", shim)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({e}); {INSTALL_HINT}", daemon.display()));
        let mut xs = Xenstored { child, dir };
        let socket = xs.socket();
        let deadline = Instant::now() + Duration::from_secs(10);
        // The socket file appears at bind(), before listen(): wait until a connection is accepted.
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Ok(Some(status)) = xs.child.try_wait() {
                panic!("xenstored exited with {status} before creating its socket; log:\n{}", xs.log());
            }
            assert!(
                Instant::now() < deadline,
                "xenstored did not create {} in 10 s; log:\n{}",
                socket.display(),
                xs.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        xs
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn rundir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn socket(&self) -> PathBuf {
        self.rundir().join("socket")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("xenstored.log")).unwrap_or_default()
    }

    /// A command aimed at this daemon (`XENSTORED_PATH`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("XENSTORED_PATH", self.socket()).env_remove("XENSTORED_RUNDIR");
        c
    }

    /// `xenstore-write -- p1 v1 p2 v2 …` in one call. Values are given as xenstore-write takes
    /// them: `\xNN` and octal escapes are decoded by the tool.
    pub fn write(&self, pairs: &[(&str, &str)]) {
        for chunk in pairs.chunks(2000) {
            let mut c = self.command("xenstore-write");
            c.arg("--");
            for (p, v) in chunk {
                c.arg(p).arg(v);
            }
            let out = run(&mut c);
            assert!(out.status.success(), "xenstore-write failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }

    /// Runs a real `xenstore-*` tool (e.g. `xenstore-ls -fp /`) with stdout piped (so tree
    /// output is cut at 80 columns, as in a pasted dump) and returns its output.
    pub fn tool(&self, program: &str, args: &[&str]) -> Output {
        let mut c = self.command(program);
        c.args(args);
        run(&mut c)
    }

    /// Stops the daemon by its pid and waits for it.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").arg(self.child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Xenstored {
    fn drop(&mut self) {
        self.kill();
    }
}

fn run(c: &mut Command) -> Output {
    c.stdin(Stdio::null());
    let out = c.output().unwrap_or_else(|e| panic!("cannot run {:?} ({e}); {INSTALL_HINT}", c.get_program()));
    let _ = std::io::stderr().flush();
    out
}
