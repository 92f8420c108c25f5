//! Snapshots under a concurrent writer, a daemon that dies or hangs, and transactions that
//! collide: all against the real xenstored.
mod support;

#[allow(dead_code)]
#[path = "../examples/live_pair_writer.rs"]
mod writer;

use merge_core::xenstore::{Path, Tree};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use xs_adapter::live::{Client, ClientOptions, Consistency, Endpoint, Error, Scope, SnapshotOptions};

fn connect(xs: &support::Xenstored) -> Client {
    Client::connect(Endpoint::Socket(xs.socket())).expect("connect to the private xenstored")
}

fn load_host(client: &mut Client, n: u32) {
    let pairs = support::live_host::big_host(n);
    client.write_many(pairs.iter().map(|(p, v)| (p.as_str(), v.as_bytes()))).unwrap();
}

/// The writer example, built by `cargo test` next to the test binaries.
fn writer_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let bin = profile_dir.join("examples").join("live_pair_writer");
    assert!(bin.exists(), "{} is missing: run the tests with `cargo test`, which builds the examples", bin.display());
    bin
}

/// The pair values of domain `a` in `tree`, `None` if the domain is not in it at all.
fn pair_values(tree: &Tree, a: u32) -> Vec<Option<String>> {
    writer::pair_paths(a).iter().map(|p| tree.text(p).map(str::to_string)).collect()
}

/// Domains whose pair nodes in `tree` disagree (nodes out of the snapshot's scope are absent
/// and not compared).
fn torn_domains(tree: &Tree, domains: std::ops::RangeInclusive<u32>) -> Vec<(u32, Vec<Option<String>>)> {
    domains
        .filter_map(|a| {
            let v = pair_values(tree, a);
            let present: Vec<&String> = v.iter().flatten().collect();
            present.windows(2).any(|w| w[0] != w[1]).then_some((a, v))
        })
        .collect()
}

#[test]
fn snapshots_under_a_concurrent_writer_never_hold_a_torn_pair() {
    concurrent_writer_case(support::Xenstored::start());
}

#[test]
fn snapshots_under_a_concurrent_writer_never_hold_a_torn_pair_oxenstored() {
    concurrent_writer_case(support::oxenstored::start());
}

/// The writer example rewrites pairs of nodes in three areas of each domain in one
/// transaction each; snapshots of every scope and mode taken meanwhile must never disagree
/// within a domain.
fn concurrent_writer_case(xs: support::Xenstored) {
    const DOMAINS: u32 = 20;
    const SNAPSHOTS: usize = 8;
    let mut client = connect(&xs);
    load_host(&mut client, DOMAINS);
    for a in 1..=DOMAINS {
        for p in writer::pair_paths(a) {
            client.write(&p, b"0").unwrap();
        }
    }
    let child = Command::new(writer_binary())
        .arg(xs.socket())
        .args(["1", &DOMAINS.to_string(), "120000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let the writer get going.
    let started = Instant::now();
    while client.read(&writer::pair_paths(DOMAINS)[0]).unwrap().as_deref() == Some(b"0") {
        assert!(started.elapsed() < Duration::from_secs(30), "the writer never wrote");
        std::thread::sleep(Duration::from_millis(5));
    }

    let scopes =
        [Scope::Host, Scope::Subtree(Path::root()), Scope::Domain(7), Scope::Subtree(Path::new("/local").unwrap())];
    let max_passes = 16;
    let (mut rereads, mut events, mut most_passes, mut tx_units, mut plain_torn, mut starved) = (0, 0, 0, 0, 0, 0);
    for i in 0..SNAPSHOTS {
        let scope = scopes[i % scopes.len()].clone();
        // The last one goes straight to per-unit transactions for whatever changed under it.
        let max_passes = if i + 1 == SNAPSHOTS { 0 } else { max_passes };
        let options = SnapshotOptions { scope: scope.clone(), max_passes, ..SnapshotOptions::default() };
        let snap = match client.snapshot(&options) {
            Ok(snap) => snap,
            // Against a writer that rewrites every domain each few milliseconds, the per-unit
            // transactions may lose every race: the documented, clean failure.
            Err(Error::TooManyRetries { attempts }) if max_passes == 0 => {
                eprintln!("transaction fallback starved after {attempts} EAGAINs");
                starved += 1;
                continue;
            }
            Err(e) => panic!("{scope:?} snapshot failed: {e}"),
        };
        let torn = torn_domains(&snap.tree, 1..=DOMAINS);
        assert!(torn.is_empty(), "torn pairs in a {scope:?} snapshot: {torn:?}; stats {:?}", snap.stats);
        // Every pair node in scope is there.
        let expected_present = match &scope {
            Scope::Domain(d) => (*d, 3),
            Scope::Subtree(p) if p.as_str() == "/local" => (DOMAINS, 2),
            _ => (DOMAINS, 3),
        };
        let values = pair_values(&snap.tree, expected_present.0);
        assert_eq!(values.iter().flatten().count(), expected_present.1, "{scope:?}: {values:?}");
        assert!(snap.stats.passes <= max_passes + 1, "{:?}", snap.stats);
        rereads += snap.stats.reread_domains;
        events += snap.stats.events;
        most_passes = most_passes.max(snap.stats.passes);
        tx_units += snap.stats.transaction_units;
        if i % 2 == 0 {
            // The plain walk, for contrast: it may be torn (counted, not asserted).
            let plain = client.snapshot(&SnapshotOptions { consistency: Consistency::None, ..options }).unwrap();
            plain_torn += usize::from(!torn_domains(&plain.tree, 1..=DOMAINS).is_empty());
        }
    }
    client.write(writer::STOP, b"").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "writer failed: {}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout).trim().to_string();
    eprintln!(
        "{} consistent snapshots; writer {report}; {events} events, {rereads} domain re-reads, \
         at most {most_passes} passes, {tx_units} units by transaction ({starved} starved); {plain_torn} torn plain walks",
        SNAPSHOTS - starved
    );
    let commits: u64 = report.strip_prefix("commits=").and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!(commits > 100, "the writer barely ran: {report}");
    assert!(events > 0 && rereads > 0, "the re-read passes were never exercised");
    assert!(tx_units > 0 || starved > 0, "the transaction fallback was never exercised");
}

#[test]
fn killing_the_daemon_mid_snapshot_is_a_clear_error_with_no_result() {
    let xs = support::Xenstored::start();
    let mut client = connect(&xs);
    load_host(&mut client, 60);
    let socket = xs.socket();
    let reader = std::thread::spawn(move || {
        let mut done = 0;
        loop {
            match client
                .snapshot(&SnapshotOptions { scope: Scope::Subtree(Path::root()), ..SnapshotOptions::default() })
            {
                Ok(_) => done += 1,
                Err(e) => return (done, e),
            }
        }
    });
    std::thread::sleep(Duration::from_millis(400));
    xs.stop();
    let (done, err) = reader.join().unwrap();
    eprintln!("{done} snapshots before the kill; then: {err}");
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    assert!(err.to_string().contains(&socket.display().to_string()), "{err}");
    let again = Client::connect(Endpoint::Socket(socket)).err().expect("nothing listens any more");
    assert!(matches!(again, Error::Connect { .. }), "{again:?}");
}

#[test]
fn a_hung_daemon_times_out_naming_the_request() {
    let xs = support::Xenstored::start();
    let options = ClientOptions { timeout: Duration::from_millis(300), ..ClientOptions::default() };
    let mut client = Client::connect_with(Endpoint::Socket(xs.socket()), options).unwrap();
    load_host(&mut client, 2);
    let signal = |sig: &str| {
        let status = Command::new("kill").args([sig, &xs.pid().to_string()]).status().unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let result = client.snapshot_host(&SnapshotOptions::default());
    signal("-CONT");
    let err = result.expect_err("a stopped daemon cannot answer");
    assert!(matches!(err, Error::Timeout { request: Some(_), .. }), "{err:?}");
    assert!(err.to_string().contains("sent nothing for 300ms while waiting for WATCH /local/domain"), "{err}");
}

#[test]
fn a_transaction_that_collides_is_retried_and_commits() {
    let xs = support::Xenstored::start();
    let mut client = connect(&xs);
    let mut other = connect(&xs);
    client.write("/repair/x", b"0").unwrap();
    let mut runs = 0;
    let seen = client
        .transaction(|tx| {
            runs += 1;
            let x = tx.read("/repair/x")?.unwrap();
            if runs == 1 {
                // Someone else writes between our read and our commit: EAGAIN, run again.
                other.write("/repair/x", b"1").unwrap();
            }
            tx.write("/repair/y", &x)?;
            tx.mkdir("/repair/dir")?;
            Ok(x)
        })
        .unwrap();
    assert_eq!(runs, 2);
    assert_eq!(seen, b"1");
    assert_eq!(client.read("/repair/y").unwrap(), Some(b"1".to_vec()));
    assert_eq!(client.directory("/repair").unwrap().unwrap(), vec!["x", "y", "dir"]);

    // An error inside the body aborts: nothing of it lands.
    let err = client
        .transaction(|tx| {
            tx.write("/repair/z", b"1")?;
            tx.write("/repair/bad name", b"1")
        })
        .unwrap_err();
    assert_eq!(err.errno(), Some(&xs_adapter::wire::Errno::EINVAL));
    assert_eq!(client.read("/repair/z").unwrap(), None);

    client.rm("/repair").unwrap();
    assert_eq!(client.read("/repair/x").unwrap(), None);
}
