//! xlsync reads userdata under libxl's userdata lock: it never sees a JSON that libxl is
//! rewriting. The holder here does what libxl does (`open(O_CREAT)`, `flock(LOCK_EX)`, rewrite
//! the data file through `userdata-n…` and `rename`, release by `unlink` then `close`), in this
//! process, against the real `xlsync` binary. Ordering, not timing: the JSON is broken until
//! xlsync is seen waiting on the lock file, and only then is it completed and the lock released.
mod cli_common;
mod support;

use cli_common::{output, text, xlsync, ScenarioDir};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use xs_adapter::userdata::{data_file_name, lock_file_name, LIBXL_JSON};

struct Libxl {
    dir: tempfile::TempDir,
    uuid: String,
}

impl Libxl {
    fn new(uuid: &str) -> Libxl {
        Libxl { dir: tempfile::tempdir().unwrap(), uuid: uuid.to_string() }
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.path().join(lock_file_name(1, &self.uuid))
    }

    /// `libxl__lock_file`: create, then flock.
    fn lock(&self) -> File {
        let f = File::options().read(true).write(true).create(true).truncate(false).open(self.lock_path()).unwrap();
        f.lock().unwrap();
        f
    }

    /// `libxl__unlock_file`: unlink, then close.
    fn unlock(&self, f: File) {
        std::fs::remove_file(self.lock_path()).unwrap();
        drop(f);
    }

    /// `libxl__userdata_store`: write `userdata-n…`, rename onto `userdata-d…`.
    fn store(&self, bytes: &[u8]) {
        let tmp = self.dir.path().join(format!("userdata-n.1.{}.{LIBXL_JSON}", self.uuid));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(data_file_name(1, &self.uuid, LIBXL_JSON))).unwrap();
    }
}

fn retrieve(libxl: &Libxl, extra: &[&str]) -> Command {
    let spike = ScenarioDir::spike("a-agree");
    let mut c = xlsync();
    c.args(["retrieve", "1", "--policy", "libxl-4.17", "--xenstore"])
        .arg(spike.dir.join("xenstore.txt"))
        .arg("--hypervisor")
        .arg(spike.dir.join("domains.txt"))
        .arg("--userdata-dir")
        .arg(libxl.dir.path())
        .args(extra);
    c
}

/// Whether process `pid` has `path` open.
fn has_open(pid: u32, path: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok()).any(|target| target == path)
}

/// Waits until `child` has `path` open; panics if it exits first (it did not wait).
fn wait_until_waiting(child: &mut Child, path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !has_open(child.id(), path) {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            use std::io::Read;
            let _ = child.stdout.take().unwrap().read_to_string(&mut out);
            panic!("xlsync finished ({status}) without waiting for the userdata lock; it printed:\n{out}");
        }
        assert!(Instant::now() < deadline, "xlsync never opened {}", path.display());
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn retrieve_waits_for_libxl_to_finish_rewriting_the_json() {
    let spike = ScenarioDir::spike("a-agree");
    let json = std::fs::read(spike.json_file(1).unwrap()).unwrap();
    let want = std::fs::read(spike.dir.join("out/xl-list-l.json")).unwrap();
    let libxl = Libxl::new(&spike.scenario.host.domain(1).unwrap().uuid);

    // libxl takes the lock and is half way through writing the JSON.
    let held = libxl.lock();
    libxl.store(&json[..json.len() / 2]);
    let mut child =
        retrieve(&libxl, &["--lock-timeout", "120"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_until_waiting(&mut child, &libxl.lock_path());
    // xlsync is blocked on the lock. libxl finishes the file and releases the lock its way.
    libxl.store(&json);
    libxl.unlock(held);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), text(&want), "xlsync read the JSON libxl finished, not the half-written one");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert!(!libxl.lock_path().exists(), "xlsync released the lock libxl's way (unlink)");
}

#[test]
fn a_lock_held_too_long_is_a_clear_error_naming_the_lock_file() {
    let spike = ScenarioDir::spike("a-agree");
    let libxl = Libxl::new(&spike.scenario.host.domain(1).unwrap().uuid);
    libxl.store(&std::fs::read(spike.json_file(1).unwrap()).unwrap());
    let held = libxl.lock();
    let out = output(&mut retrieve(&libxl, &["--lock-timeout", "0.2"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    assert_eq!(
        err,
        format!(
            "xlsync: the userdata lock {} is still held after 200ms (libxl holds it while it rewrites the domain's JSON) \
             (try again when libxl is done, raise --lock-timeout, or pass --no-lock to read anyway)\n",
            libxl.lock_path().display()
        )
    );
    // The holder's lock file is untouched.
    assert!(libxl.lock_path().exists());
    // --no-lock reads anyway.
    let out = output(&mut retrieve(&libxl, &["--no-lock"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, std::fs::read(spike.dir.join("out/xl-list-l.json")).unwrap());
    libxl.unlock(held);
}

/// libxl's post-lock check (`libxl__lock_domain_userdata`): once the lock is held, the domain
/// must still exist. A domain destroyed while xlsync waited is not read: named, it is an error;
/// under `--all` it is left out, as `xl list -l` leaves it out. Against the real xenstored.
#[test]
fn a_domain_destroyed_while_waiting_for_the_lock_is_not_read() {
    let spike = ScenarioDir::spike("a-agree");
    for all in [false, true] {
        let host = cli_common::LiveHost::start(&spike.scenario, spike.scenario.scheduler());
        let uuid = &spike.scenario.host.domain(1).unwrap().uuid;
        let lock_path = host.libdir.join(lock_file_name(1, uuid));
        let held = File::options().read(true).write(true).create(true).truncate(false).open(&lock_path).unwrap();
        held.lock().unwrap();
        let select: &[&str] = if all { &["--all"] } else { &["1"] };
        let mut args = vec!["retrieve", "--policy", "libxl-4.17", "--lock-timeout", "120", "--hypervisor"];
        let domains_txt = spike.dir.join("domains.txt");
        args.push(domains_txt.to_str().unwrap());
        args.extend_from_slice(select);
        let mut child = host.xlsync(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        wait_until_waiting(&mut child, &lock_path);
        // libxl destroys the domain while xlsync waits: its xenstore home goes, then the lock.
        let status = host.xs.tool("xenstore-rm", &["/local/domain/1"]).status;
        assert!(status.success(), "xenstore-rm failed");
        std::fs::remove_file(&lock_path).unwrap();
        drop(held);
        let out = child.wait_with_output().unwrap();
        if all {
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            assert!(
                !text(&out.stdout).contains("\"domid\": 1,"),
                "the destroyed domain was listed:\n{}",
                text(&out.stdout)
            );
        } else {
            assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
            assert!(out.stdout.is_empty());
            assert!(text(&out.stderr).contains("domain 1 was destroyed while xlsync read it"), "{}", text(&out.stderr));
        }
        host.xs.stop();
    }
}

/// While the dump is read, the userdata files of the domains `--hypervisor` lists are read
/// ahead, under their locks. That read never waits and leaves nothing behind: a domain the
/// hypervisor lists but the dump does not (one being created, whose lock libxl holds; one
/// being destroyed, whose xenstore home is gone) neither holds the command up nor keeps a lock
/// file, and what is printed is what reading after the dump prints. Ordering, not timing: the
/// held lock is never released while xlsync runs, with a lock timeout of an hour.
#[test]
fn reading_ahead_neither_waits_for_nor_leaves_a_lock_of_a_domain_not_listed() {
    const HELD: &str = "7b0c4d2e-1111-4e8f-9a01-23456789abcd";
    const FREE: &str = "8c1d5e3f-2222-4e8f-9a01-23456789abcd";
    let spike = ScenarioDir::spike("a-agree");
    let libxl = Libxl::new(&spike.scenario.host.domain(1).unwrap().uuid);
    libxl.store(&std::fs::read(spike.json_file(1).unwrap()).unwrap());
    let domains_txt = libxl.dir.path().join("domains.txt");
    let listed = std::fs::read_to_string(spike.dir.join("domains.txt")).unwrap();
    std::fs::write(&domains_txt, format!("{listed}domid=7 uuid={HELD} type=pv\ndomid=8 uuid={FREE} type=pv\n"))
        .unwrap();
    // libxl is creating domain 7: it holds the lock, and xenstore has no home for it yet.
    let held_path = libxl.dir.path().join(lock_file_name(7, HELD));
    let held = File::options().read(true).write(true).create(true).truncate(false).open(&held_path).unwrap();
    held.lock().unwrap();

    let mut c = xlsync();
    c.args(["retrieve", "--all", "--policy", "libxl-4.17", "--lock-timeout", "3600", "--xenstore"])
        .arg(spike.dir.join("xenstore.txt"))
        .arg("--hypervisor")
        .arg(&domains_txt)
        .arg("--userdata-dir")
        .arg(libxl.dir.path());
    let mut child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("xlsync is waiting for the lock of domain 7, which the dump does not list");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), text(&std::fs::read(spike.dir.join("out/xl-list-l.json")).unwrap()));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert!(held_path.exists(), "the lock libxl holds is untouched");
    let locks: Vec<String> = std::fs::read_dir(libxl.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("userdata-l."))
        .collect();
    assert_eq!(locks, [lock_file_name(7, HELD)], "xlsync released every lock it took, libxl's way");
    drop(held);
}
