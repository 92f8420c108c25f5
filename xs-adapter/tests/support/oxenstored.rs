//! oxenstored (the OCaml xenstored in Debian's xen-utils-4.17) as a private user-space daemon,
//! like the C one: `shim.c` answers its hypervisor calls, `oxenstored_shim.c` moves its
//! compiled-in `/var/run/xenstored` to a private directory and lets `setrlimit` pass. The
//! handle is an ordinary [`Xenstored`], so every helper works on it. (`shim.c` fakes the
//! `/proc/xen/xsd_{kva,port}` files that the configuration names.)

use super::{shim_so, Xenstored, INSTALL_HINT, XENBIN};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn ox_shim_so() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oxenstored_shim.c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        std::fs::create_dir_all(dir).expect("create CARGO_TARGET_TMPDIR");
        let out = dir.join("xlsync-ox-shim.so");
        let tmp = dir.join(format!("xlsync-ox-shim.{}.so", std::process::id()));
        let status = Command::new("gcc")
            .args(["-O2", "-Wall", "-shared", "-fPIC", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-ldl")
            .status()
            .unwrap_or_else(|e| panic!("cannot run gcc to build the oxenstored shim ({e}); {INSTALL_HINT}"));
        assert!(status.success(), "building {} failed; {INSTALL_HINT}", src.display());
        std::fs::rename(&tmp, &out).expect("install the oxenstored shim");
        out
    })
}

/// Starts a private oxenstored and writes what `xen-init-dom0` would.
pub fn start() -> Xenstored {
    let daemon = Path::new(XENBIN).join("oxenstored");
    assert!(daemon.exists(), "{} is missing; {INSTALL_HINT}", daemon.display());
    let preload = format!("{} {}", shim_so().display(), ox_shim_so().display());
    let dir = tempfile::Builder::new().prefix("xlsync-oxs.").tempdir().expect("tempdir");
    let rundir = dir.path().join("run");
    std::fs::create_dir_all(&rundir).expect("rundir");
    let conf = dir.path().join("oxenstored.conf");
    let d = dir.path().display();
    std::fs::write(
        &conf,
        format!(
            "pid-file = {d}/oxenstored.pid\npersistent = false\nxenstored-log-file = {d}/oxenstored.log\n\
             access-log-file = {d}/access.log\nquota-maxoutstanding = 1024\n\
             xenstored-kva = /proc/xen/xsd_kva\nxenstored-port = /proc/xen/xsd_port\n"
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.path().join("xenstored.log")).expect("log file");
    let child = Command::new(&daemon)
        .args(["--no-fork", "--config-file"])
        .arg(&conf)
        .env("XLSYNC_OX_RUNDIR", &rundir)
        .env("LD_PRELOAD", preload)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} ({e}); {INSTALL_HINT}", daemon.display()));
    let mut xs = Xenstored { child, dir };
    let socket = xs.socket();
    let deadline = Instant::now() + Duration::from_secs(10);
    // The socket file appears at bind(), before listen(): wait until it accepts.
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if let Ok(Some(status)) = xs.child.try_wait() {
            panic!("oxenstored exited with {status} before creating its socket; log:\n{}", xs.log());
        }
        assert!(
            Instant::now() < deadline,
            "oxenstored did not create {} in 10 s; log:\n{}",
            socket.display(),
            xs.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    xs.write(&[("/local/domain/0/domid", "0"), ("/local/domain/0/name", "Domain-0"), ("/local/pool/0/name", "Pool-0")]);
    xs
}
