//! Snapshots of a quiescent real xenstored: they hold exactly what `xenstore-ls -fp` prints,
//! whatever the tree, in every consistency mode and scope.
mod support;

use merge_core::xenstore::{Access, Node, Path, Perm, Perms, Tree};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::collections::BTreeMap;
use xs_adapter::dump::{self, Format, ReadOptions};
use xs_adapter::live::{Client, Consistency, Endpoint, Scope, SnapshotOptions};

fn connect(xs: &support::Xenstored) -> Client {
    Client::connect(Endpoint::Socket(xs.socket())).expect("connect to the private xenstored")
}

/// What `xenstore-ls -fp <path>` prints, read back with the dump reader.
fn xenstore_ls_fp(xs: &support::Xenstored, path: &str) -> Tree {
    let out = xs.tool("xenstore-ls", &["-fp", path]);
    assert!(out.status.success(), "xenstore-ls failed: {}", String::from_utf8_lossy(&out.stderr));
    let opts = ReadOptions { format: Some(Format::FlatPerms), ..ReadOptions::default() };
    dump::read(&out.stdout, &opts).expect("xenstore-ls -fp output reads back").tree
}

/// The snapshot without the start node, which `xenstore-ls` does not print.
fn without(mut tree: Tree, start: &str) -> Tree {
    tree.remove(&Path::new(start).unwrap());
    tree
}

fn options(scope: Scope, consistency: Consistency) -> SnapshotOptions {
    SnapshotOptions { scope, consistency, ..SnapshotOptions::default() }
}

fn cases() -> u32 {
    std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(12)
}

/// Random trees: valid names, values over all 256 byte values (empty included), nodes with both
/// a value and children, random permission lists.
/// Path → (value, permission entries as `(letter, domid)`, owner first).
type Nodes = BTreeMap<String, (Vec<u8>, Vec<(char, u32)>)>;

fn trees() -> impl Strategy<Value = Nodes> {
    let name = "[a-zA-Z0-9_@-]{1,12}";
    let path = prop::collection::vec(name, 1..5).prop_map(|c| format!("/t/{}", c.join("/")));
    let value = prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..60),
        "[ -~]{0,40}".prop_map(String::into_bytes),
    ];
    // The owner must be a domain the daemon knows (dom0 here: ENOENT otherwise); the other
    // entries may name any domain.
    let letter = || prop::sample::select(vec!['n', 'r', 'w', 'b']);
    let perms = (letter(), prop::collection::vec((letter(), 0u32..70), 0..3)).prop_map(|(owner, mut rest)| {
        rest.insert(0, (owner, 0));
        rest
    });
    prop::collection::btree_map(path, (value, perms), 1..40)
}

fn perms_of(entries: &[(char, u32)]) -> Perms {
    Perms::new(entries.iter().map(|&(c, domid)| Perm { access: Access::from_letter(c).unwrap(), domid }).collect())
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proptest-regressions/xs-adapter/live_snapshot.txt"
        )))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn quiescent_snapshot_equals_xenstore_ls_fp(nodes in trees()) {
        let xs = support::Xenstored::start();
        let mut client = connect(&xs);
        // Children first, so that a parent written later keeps its value next to children.
        for (path, (value, perms)) in nodes.iter().rev() {
            client.write(path, value).unwrap();
            client.set_perms(path, &perms_of(perms)).unwrap();
        }
        let expected = xenstore_ls_fp(&xs, "/");
        for consistency in [Consistency::Watch, Consistency::None, Consistency::Transaction] {
            let snap = client.snapshot(&options(Scope::Subtree(Path::root()), consistency)).unwrap();
            prop_assert!(snap.denied.is_empty());
            let got = without(snap.tree, "/");
            prop_assert_eq!(&got, &expected, "{:?}", consistency);
        }
        // Every written node is there with its exact bytes and permissions.
        let snap = client.snapshot_subtree(&Path::new("/t").unwrap()).unwrap();
        for (path, (value, perms)) in &nodes {
            let node = snap.tree.get_str(path).unwrap();
            prop_assert_eq!(&node.value[..], &value[..]);
            prop_assert_eq!(node.perms.as_ref(), Some(&perms_of(perms)));
        }
    }
}

/// Writes the big host of `n` domains through the client.
fn load_host(client: &mut Client, n: u32) -> usize {
    let pairs = support::live_host::big_host(n);
    client.write_many(pairs.iter().map(|(p, v)| (p.as_str(), v.as_bytes()))).unwrap();
    pairs.len()
}

#[test]
fn host_and_domain_scopes_are_the_right_slices_of_the_store() {
    let xs = support::Xenstored::start();
    let mut client = connect(&xs);
    load_host(&mut client, 12);
    // A driver domain's backend for domain 3, and nodes reconciliation does not need.
    client.write("/local/domain/7/backend/vif/3/1/state", b"4").unwrap();
    client.write("/local/domain/3/attr/os", b"linux").unwrap();

    let all = client.snapshot_subtree(&Path::root()).unwrap().tree;
    assert_eq!(without(all.clone(), "/"), xenstore_ls_fp(&xs, "/"));

    let host = client.snapshot_host(&SnapshotOptions::default()).unwrap();
    let home_part = |p: &str| {
        let c: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
        match c.as_slice() {
            ["local", "domain", d] => d.parse::<u32>().is_ok(),
            ["local", "domain", _, part, ..] => xs_adapter::live::DOMAIN_HOME_PARTS.contains(part),
            ["libxl", ..] | ["vm", ..] => true,
            _ => false,
        }
    };
    let expected: Tree =
        all.iter().filter(|(p, _)| home_part(p.as_str())).map(|(p, n)| (p.clone(), n.clone())).collect();
    assert_eq!(host.tree, expected);
    assert!(host.tree.get_str("/local/domain/3/attr/os").is_none());
    assert!(host.tree.get_str("/local/domain/3/console/tty").is_none());

    let one = client.snapshot_domain(3).unwrap();
    let uuid = all.text("/local/domain/3/vm").unwrap().to_string();
    let mine = |p: &str| {
        let c: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
        match c.as_slice() {
            ["local", "domain", "3"] => true,
            ["local", "domain", _, "backend", _, "3", ..] => true,
            ["local", "domain", "3", part, ..] => {
                *part != "backend" && xs_adapter::live::DOMAIN_HOME_PARTS.contains(part)
            }
            ["libxl", "3", ..] => true,
            _ => p == uuid || p.starts_with(&format!("{uuid}/")),
        }
    };
    let expected: Tree = all.iter().filter(|(p, _)| mine(p.as_str())).map(|(p, n)| (p.clone(), n.clone())).collect();
    assert_eq!(one.tree, expected);
    assert_eq!(one.tree.text("/local/domain/7/backend/vif/3/1/state"), Some("4"));
    assert!(one.tree.get_str("/local/domain/0/backend/vbd/4/51712/state").is_none());

    // What libxl 4.17 reads: /libxl, each home's name, memory, cpu, domid and vm, dom0's pci
    // backends, vtpm and vusb backends, vsnd frontends; nothing else (no vbd backend, no /vm).
    let libxl = client.snapshot(&options(Scope::Libxl417, Consistency::Watch)).unwrap();
    let libxl_reads = |p: &str| {
        let c: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
        match c.as_slice() {
            ["libxl", ..] | ["local", "domain", "0", "backend", "pci", ..] => true,
            ["local", "domain", _, "backend", "vtpm" | "vusb", ..] | ["local", "domain", _, "device", "vsnd", ..] => {
                true
            }
            ["local", "domain", d] => d.parse::<u32>().is_ok(),
            ["local", "domain", _, part, ..] => ["name", "memory", "cpu", "domid", "vm"].contains(part),
            _ => false,
        }
    };
    let expected: Tree =
        all.iter().filter(|(p, _)| libxl_reads(p.as_str())).map(|(p, n)| (p.clone(), n.clone())).collect();
    assert_eq!(libxl.tree, expected);
    assert!(libxl.tree.get_str("/local/domain/0/backend/vbd/4/51712/state").is_none());
    assert!(libxl.tree.len() * 2 < host.tree.len(), "{} of {} nodes", libxl.tree.len(), host.tree.len());

    // The per-domain transaction mode reads the same.
    let tx = client.snapshot(&options(Scope::Host, Consistency::Transaction)).unwrap();
    assert_eq!(tx.tree, host.tree);
    assert!(tx.stats.transaction_units >= 12, "{:?}", tx.stats);
}

/// Open sockets of process `pid` (its `/proc/<pid>/fd` entries that are sockets).
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.flatten().filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.starts_with("socket:"))).count())
        .unwrap_or(0)
}

#[test]
fn a_walk_spreads_over_connections_and_closes_them_after() {
    let xs = support::Xenstored::start();
    let mut client = connect(&xs);
    load_host(&mut client, 12);
    // Counted at the private daemon: tests running alongside open sockets of their own.
    let before = sockets_of(xs.pid());
    let spread = client.snapshot_subtree(&Path::root()).unwrap();
    assert_eq!(spread.stats.connections, xs_adapter::live::DEFAULT_CONNECTIONS, "{:?}", spread.stats);
    // The extra connections are gone once the snapshot is taken: idle ones would cost the
    // daemon a little in every turn of its loop. The daemon notices a close in its own time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sockets_of(xs.pid()) != before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(sockets_of(xs.pid()), before, "the daemon still holds the walk's connections");
    client.set_connections(1);
    let single = client.snapshot_subtree(&Path::root()).unwrap();
    assert_eq!(single.stats.connections, 1);
    assert_eq!(single.tree, spread.tree);
    assert_eq!(single.stats.requests, spread.stats.requests);

    // A daemon that takes no more connections (here: its socket file is gone, so no new
    // connection can reach it) leaves the walk on the connection it has.
    client.set_connections(xs_adapter::live::DEFAULT_CONNECTIONS);
    let moved = xs.socket().with_extension("moved");
    std::fs::rename(xs.socket(), &moved).unwrap();
    let alone = client.snapshot_subtree(&Path::root());
    std::fs::rename(&moved, xs.socket()).unwrap();
    let alone = alone.unwrap();
    assert_eq!(alone.stats.connections, 1);
    assert_eq!(alone.tree, spread.tree);
    assert_eq!(without(spread.tree, "/"), xenstore_ls_fp(&xs, "/"));
}

#[test]
fn oxenstored_snapshots_equal_its_xenstore_ls_fp() {
    let xs = support::oxenstored::start();
    let mut client = connect(&xs);
    load_host(&mut client, 8);
    client.write("/t/binary", b"\x00\x01\xff\"quoted\"\n").unwrap();
    client.set_perms("/t/binary", &Perms::parse("r0,b5,n7").unwrap()).unwrap();
    let expected = xenstore_ls_fp(&xs, "/");
    for consistency in [Consistency::Watch, Consistency::None, Consistency::Transaction] {
        let snap = client.snapshot(&options(Scope::Subtree(Path::root()), consistency)).unwrap();
        assert_eq!(without(snap.tree, "/"), expected, "{consistency:?}");
    }
    let host = client.snapshot_host(&SnapshotOptions::default()).unwrap();
    assert_eq!(host.tree.text("/local/domain/3/name"), Some("guest-3"));
    assert_eq!(client.snapshot_domain(3).unwrap().tree.text("/libxl/3/type"), Some("pvh"));
}

#[test]
fn a_directory_too_long_for_one_reply_is_read_in_parts() {
    let xs = support::Xenstored::start();
    let mut client = connect(&xs);
    let names: Vec<String> = (0..3000).map(|i| format!("child-{i:05}")).collect();
    let paths: Vec<String> = names.iter().map(|n| format!("/big/{n}")).collect();
    client.write_many(paths.iter().map(|p| (p.as_str(), &b"v"[..]))).unwrap();
    // The list is 36 kB, far over the 4 kB payload limit.
    let listed = client.directory("/big").unwrap().unwrap();
    assert_eq!(listed, names);
    let snap = client.snapshot_subtree(&Path::new("/big").unwrap()).unwrap();
    assert_eq!(snap.tree.children(&Path::new("/big").unwrap()).len(), 3000);
    assert_eq!(snap.tree.get_str("/big/child-02999"), Some(&Node::new(b"v".to_vec()).with_perms(Perms::parse("n0"))));
    assert_eq!(without(snap.tree, "/big"), xenstore_ls_fp(&xs, "/big"));
}

#[test]
fn missing_paths_and_bad_requests_give_clear_answers() {
    let xs = support::Xenstored::start();
    let mut client = connect(&xs);
    assert_eq!(client.read("/no/such/node").unwrap(), None);
    assert_eq!(client.directory("/no/such/node").unwrap(), None);
    let snap = client.snapshot_subtree(&Path::new("/no/such").unwrap()).unwrap();
    assert!(snap.tree.is_empty());
    // The daemon rejects an invalid path; the error names the request and the errno.
    let err = client.write("/bad path", b"x").unwrap_err();
    assert_eq!(err.to_string(), "WRITE /bad path failed: EINVAL");
    // A request over the payload limit is refused before it is sent, and the connection lives.
    let long = format!("/{}", "a".repeat(5000));
    let err = client.read(&long).unwrap_err();
    assert!(err.to_string().contains("over the 4096-byte limit"), "{err}");
    assert_eq!(client.read("/local/domain/0/name").unwrap(), Some(b"Domain-0".to_vec()));
}
