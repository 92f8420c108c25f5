//! The laws each fuzz target asserts, as plain functions of the input bytes.
//!
//! Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*`, nightly) and by the replay test
//! `xs-adapter/tests/fuzz_regressions.rs` (stable), which includes this file by `#[path]`. It
//! may therefore use only `merge_core` (with `testkit`), `xs_adapter`, `proptest` and `std`.
//!
//! Every check panics (with a message naming the law) when a law fails; returning normally
//! means the input is fine, whether it was accepted or rejected with a typed error.

use merge_core::config::{self, normalize_libxl_417};
use merge_core::reconcile::{reconcile, Inputs, JsonReplica, Outcome, Policy};
use merge_core::testkit::{host, Generated, HostProfile};
use merge_core::xenstore::{Access, Node, Perm, Perms, Tree};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use xs_adapter::dump::{self, Format, ReadOptions};
use xs_adapter::wire;

/// Every fuzz target by name, with its check: the replay test walks `fuzz/seeds/<name>/` and
/// `fuzz/regressions/<name>/` through this table.
/// One target's law check over the input bytes.
pub type Check = fn(&[u8]);

pub const TARGETS: &[(&str, Check)] = &[
    ("dump_flat", |d| dump(Format::Flat, d)),
    ("dump_flat_perms", |d| dump(Format::FlatPerms, d)),
    ("dump_tree", |d| dump(Format::Tree, d)),
    ("dump_tree_perms", |d| dump(Format::TreePerms, d)),
    ("dump_scenario", |d| dump(Format::Scenario, d)),
    ("libxl_json", libxl_json),
    ("xs_wire", xs_wire),
    ("reconcile", reconcile_both),
];

/// The xenstore dump reader for one format, strict and lenient, given and detected.
///
/// Laws: no panic; a dump read in a format that has a writer (`-f`, `-fp`, scenario) prints
/// back to text that reads as the same tree (values, flags and, where the format has them,
/// permissions), and that printing is a fixed point; reading it keeping only some nodes
/// ([`dump::read_kept`]) fails exactly as reading it whole does, or gives the same dump split in
/// two: the nodes kept and those left out.
pub fn dump(format: Format, data: &[u8]) {
    for lenient in [false, true] {
        let detected = ReadOptions { lenient, ..ReadOptions::default() };
        kept_read(data, &detected, dump::read(data, &detected));
        let given = ReadOptions { format: Some(format), lenient, ..ReadOptions::default() };
        let Ok(snapshot) = dump::read(data, &given) else { continue };
        let write: fn(&Tree) -> Result<Vec<u8>, dump::WriteError> = match format {
            Format::Flat => dump::write_f,
            Format::FlatPerms => dump::write_fp,
            Format::Scenario => dump::write_scenario,
            Format::Tree | Format::TreePerms => continue,
        };
        let Ok(printed) = write(&snapshot.tree) else { continue };
        let strict = ReadOptions { format: Some(format), ..ReadOptions::default() };
        let again = dump::read(&printed, &strict).unwrap_or_else(|e| {
            panic!("{format}: the writer's output does not read back: {e}\n{}", String::from_utf8_lossy(&printed))
        });
        let keep_perms = format.has_perms();
        assert_eq!(
            projection(&snapshot.tree, keep_perms),
            projection(&again.tree, keep_perms),
            "{format}: print -> read changed the tree\n{}",
            String::from_utf8_lossy(&printed)
        );
        let reprinted = write(&again.tree).expect("a tree that was written once writes again");
        assert!(printed == reprinted, "{format}: printing is not a fixed point");
    }
}

/// [`dump::read_kept`] against [`dump::read`]'s `whole` result on the same bytes.
fn kept_read(data: &[u8], opts: &ReadOptions, whole: Result<dump::Snapshot, dump::DumpError>) {
    // Any split will do; this one parts siblings and parents.
    let keep: fn(&str) -> bool = |p| p.len() % 2 == 0;
    let kept = dump::read_kept(data, opts, keep);
    let (whole, kept) = match (whole, kept) {
        (Err(w), Err(k)) => return assert_eq!(w, k, "a kept read fails otherwise than the whole read"),
        (Ok(w), Ok(k)) => (w, k),
        (w, k) => panic!("the whole read gives {:?} but the kept read {:?}", w.map(|_| ()), k.map(|_| ())),
    };
    assert_eq!(whole.warnings, kept.snapshot.warnings, "the kept read warns otherwise");
    assert_eq!(whole.repairs, kept.snapshot.repairs, "the kept read repairs otherwise");
    let paths: Vec<&str> = kept.left_out.paths().collect();
    assert!(paths.windows(2).all(|w| w[0] < w[1]), "nodes left out are not sorted and unique");
    assert!(paths.iter().all(|p| !keep(p)), "a node the predicate keeps was left out");
    let left_out = kept.left_out.to_tree().expect("nodes left out read again");
    assert_eq!(left_out.len(), paths.len(), "a node left out was lost when read again");
    let mut union = kept.snapshot.tree.clone();
    for (p, n) in left_out.iter() {
        assert!(union.insert(p.clone(), n.clone()).is_none(), "{p} is both kept and left out");
    }
    assert!(union == whole.tree, "the nodes kept and left out are not the dump");
}

/// What a format carries of each node.
fn projection(tree: &Tree, keep_perms: bool) -> Vec<(String, Node)> {
    tree.iter()
        .filter(|(p, _)| p.as_str() != "/")
        .map(|(p, n)| {
            let mut n = n.clone();
            if !keep_perms {
                n.perms = None;
            }
            (p.as_str().to_string(), n)
        })
        .collect()
}

/// The libxl JSON reader, validated and unvalidated, and `normalize_libxl_417`.
///
/// Laws: no panic; an accepted document prints (as libxl would) to text that reads back as an
/// equal document, and that printing is a fixed point; normalizing is a fixed point.
pub fn libxl_json(data: &[u8]) {
    for validate in [true, false] {
        let read = if validate { config::parse_document } else { config::parse_document_unvalidated };
        let Ok(document) = read(data) else { continue };
        let printed = document.to_libxl_json();
        let again = read(printed.as_bytes())
            .unwrap_or_else(|e| panic!("the printed document does not read back: {e}\n{printed}"));
        assert!(document == again, "print -> read changed the document\n{printed}");
        assert_eq!(printed, again.to_libxl_json(), "printing is not a fixed point");
        for config in document.configs() {
            if let Ok(once) = normalize_libxl_417(config) {
                let twice = normalize_libxl_417(&once).expect("a normalized config normalizes again");
                assert!(once == twice, "normalize_libxl_417 is not a fixed point\n{}", once.to_libxl_json());
            }
        }
    }
}

/// The `xs_wire` decoder, whole and in two pieces, and the reply payload parsers.
///
/// Laws: no panic; the frames decoded re-encode to exactly the bytes they used; feeding the
/// same bytes in two pieces gives the same frames and the same error.
pub fn xs_wire(data: &[u8]) {
    let whole = wire::decode(data);
    if let Ok((frames, used)) = &whole {
        let mut out = Vec::new();
        for f in frames {
            f.encode_into(&mut out);
            let _ = wire::parse_directory(&f.payload);
            let _ = wire::parse_directory_part(&f.payload);
            let _ = wire::parse_perms(&f.payload);
            let _ = wire::parse_watch_event(&f.payload);
            let _ = wire::parse_transaction_id(&f.payload);
            let _ = wire::Errno::from_payload(&f.payload).name().len();
            let _ = wire::strings(&f.payload).count();
        }
        assert_eq!(&out[..], &data[..*used], "decoded frames do not re-encode to their bytes");
    }
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let mut decoder = wire::Decoder::new();
    let mut pieces: Vec<Result<wire::Frame, wire::WireError>> = decoder.push(&data[..cut]).collect();
    if !pieces.iter().any(Result::is_err) {
        pieces.extend(decoder.push(&data[cut..]));
    }
    match &whole {
        Ok((frames, used)) => {
            let got: Result<Vec<_>, _> = pieces.into_iter().collect();
            assert_eq!(got.as_ref(), Ok(frames), "decoding in two pieces gave other frames");
            assert_eq!(decoder.buffered(), data.len() - used, "two pieces left other bytes buffered");
        }
        Err(e) => assert_eq!(pieces.last(), Some(&Err(e.clone())), "decoding in two pieces gave another error"),
    }
}

/// Reconcile under both policies on a generated host that the input then damages.
///
/// The first 8 bytes seed the testkit host generator (realistic replicas with perturbations);
/// the next byte picks the guest and the JSON replica's form; the rest, 4 bytes at a time,
/// removes nodes and subtrees, rewrites values and permissions, and adds nodes with names and
/// values from a vocabulary of what libxl and guests write.
///
/// Laws: no panic; determinism (same inputs, same outcome) under both policies; under no-loss,
/// idempotence (the merged config reconciled again against the same xenstore is unchanged).
pub fn reconcile_both(data: &[u8]) {
    let Some(case) = ReconcileCase::from_bytes(data) else { return };
    for policy in [Policy::NoLoss, Policy::Libxl417] {
        case.check(policy);
    }
}

const NAMES: &[&str] = &[
    "state",
    "frontend",
    "backend",
    "frontend-id",
    "backend-id",
    "online",
    "params",
    "mac",
    "bridge",
    "dev",
    "type",
    "mode",
    "hotplug-status",
    "handle",
    "script",
    "device",
    "vbd",
    "vif",
    "51712",
    "0",
    "1",
    "name",
    "uuid",
    "vm",
    "removable",
    "port",
    "num-ports",
    "usb-ver",
    "vdev",
    "device-type",
    "physical-device",
    "mtu",
];

const VALUES: &[&[u8]] = &[
    b"",
    b"0",
    b"1",
    b"2",
    b"3",
    b"4",
    b"5",
    b"6",
    b"-1",
    b"4294967296",
    b"99999999999999999999",
    b"connected",
    b"/local/domain/0/backend/vbd/1/51712",
    b"/local/domain/1/device/vbd/51712",
    b"/local/domain/7/device/vif/0",
    b"00:16:3e:00:00:01",
    b"xenbr0",
    b"phy",
    b"w",
    b"r",
    b"xvda",
    b"hda",
    b"cdrom",
    b"disk",
    b"\xff\xfe",
    b"a\0b",
    b"aio:/tmp/x",
    b"vif-bridge",
    b"00000000-0000-0000-0000-000000000001",
    b"guest1",
];

struct ReconcileCase {
    generated: Generated,
    domid: u32,
    json: JsonReplica,
    tree: Tree,
}

impl ReconcileCase {
    fn from_bytes(data: &[u8]) -> Option<ReconcileCase> {
        let mut seed = [0u8; 32];
        let head = data.len().min(8);
        seed[..head].copy_from_slice(&data[..head]);
        let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
        let generated = host(HostProfile::default()).new_tree(&mut runner).ok()?.current();
        let pick = data.get(8).copied().unwrap_or(0);
        let guest = generated.guests.get(pick as usize % generated.guests.len().max(1))?;
        let domid = guest.domid;
        let json = match pick >> 6 {
            0 | 1 => userdata_replica(generated.scenario.userdata.get(&domid)),
            2 => JsonReplica::Missing,
            _ => JsonReplica::Empty,
        };
        let mut tree = generated.scenario.tree.clone();
        for op in data.get(9..).unwrap_or(&[]).chunks(4) {
            damage(&mut tree, op, domid);
        }
        Some(ReconcileCase { generated, domid, json, tree })
    }

    fn run(&self, json: &JsonReplica, tree: &Tree, policy: Policy) -> Outcome {
        reconcile(Inputs { domid: self.domid, json, tree, host: &self.generated.scenario.host }, policy)
    }

    fn check(&self, policy: Policy) {
        let first = self.run(&self.json, &self.tree, policy);
        let second = self.run(&self.json.clone(), &self.tree.clone(), policy);
        assert!(first == second, "{}: reconcile is not deterministic", policy.name());
        // Idempotence is law 3 of the no-loss policy. libxl 4.17's retrieve is reproduced as
        // it is, and it is not idempotent (e.g. target_memkb moves on a second pass).
        if policy != Policy::NoLoss {
            return;
        }
        let Ok(merged) = &first.config else { return };
        let again = self.run(&JsonReplica::Present(merged.clone()), &self.tree, policy);
        let again = again.config.unwrap_or_else(|e| {
            panic!("{}: the merged config reconciled again fails: {e}\n{}", policy.name(), merged.to_libxl_json())
        });
        let (a, b) = (merged.to_libxl_json(), again.to_libxl_json());
        assert!(a == b, "{}: reconcile is not idempotent\n--- merged\n{a}\n+++ merged again\n{b}", policy.name());
    }
}

/// The userdata bytes as libxl reads them.
fn userdata_replica(bytes: Option<&Vec<u8>>) -> JsonReplica {
    JsonReplica::from_userdata(bytes.map(Vec::as_slice))
}

/// One damaging edit of the tree, `[op, a, b, c]`; node indexes wrap around the tree's size.
fn damage(tree: &mut Tree, op: &[u8], guest: u32) {
    let byte = |i: usize| op.get(i).copied().unwrap_or(0) as usize;
    if tree.is_empty() {
        return;
    }
    let index = (byte(1) << 8 | byte(2)) % tree.len();
    let Some((path, node)) = tree.iter().nth(index).map(|(p, n)| (p.clone(), n.clone())) else { return };
    let word = byte(3);
    match byte(0) % 5 {
        0 => {
            tree.remove(&path);
        }
        1 => {
            tree.remove_subtree(&path);
        }
        2 => {
            tree.insert(path, Node { value: VALUES[word % VALUES.len()].into(), ..node });
        }
        3 => {
            if let Ok(child) = path.join(NAMES[word % NAMES.len()]) {
                let value = VALUES[(word / NAMES.len() + byte(2)) % VALUES.len()];
                tree.insert(child, Node::new(value).with_perms(node.perms.clone()));
            }
        }
        _ => {
            // The guest takes the node over, as a guest-writable frontend node would be.
            let perms = Perms::new(vec![Perm { access: Access::from_letter('n').unwrap(), domid: guest }]);
            tree.insert(path, node.with_perms(perms));
        }
    }
}

/// The check of a target by name.
pub fn check_for(target: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(name, _)| *name == target).map(|(_, check)| *check)
}
