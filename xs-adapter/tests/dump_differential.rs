//! The differential law: our readers and writers against the real `xenstore-write`,
//! `xenstore-chmod` and `xenstore-ls` of Xen 4.17, on a private xenstored.
//!
//! proptest generates trees (random valid paths, values over all 256 byte values and empty
//! ones, nodes with both a value and children, random permissions), writes them into the real
//! daemon and dumps them with the real `xenstore-ls -fp`, `-f`, `-p` and plain (piped, so the
//! tree format cuts values at 80 columns). Then:
//! - reading each dump gives back the tree: values and permissions equal, and in the tree
//!   formats a value is flagged truncated exactly where xenstore-ls cut it, with the printed
//!   prefix as its value;
//! - `write_fp`/`write_f` print exactly the lines of `xenstore-ls -fp`/`-f`; only the order of
//!   siblings may differ (the daemon lists them in creation order).
//!
//! `XLSYNC_PROPTEST_CASES` raises the number of cases (default 24).

mod support;

use merge_core::xenstore::{Access, Node, Path, Perm, Perms, Tree};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use support::Xenstored;
use xs_adapter::dump::{escape_value, read, write_f, write_fp, write_scenario, Format, ReadOptions, WarningKind};

const ROOT: &str = "/t";

fn cases(default: u32) -> u32 {
    std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn runner(default_cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases: cases(default_cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proptest-regressions/xs-adapter/dump_differential.txt"
        )))),
        ..Config::default()
    })
}

/// Runs a property against the daemon and turns a failure into a panic with the minimal case.
fn check<S: Strategy>(default_cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    if let Err(e) = runner(default_cases).run(&strategy, test) {
        panic!("{e}");
    }
}

// ---------------------------------------------------------------------------------------
// Generated trees

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_@-]{1,10}"
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        3 => prop::collection::vec(any::<u8>(), 1..8),
        // Around the tree format's cut column.
        2 => prop::collection::vec(any::<u8>(), 50..80),
        2 => prop::collection::vec(any::<u8>(), 80..300),
        2 => "[ -~]{0,90}".prop_map(String::into_bytes),
        // Dense in what escaping and value splitting must get right.
        1 => prop::collection::vec(prop::sample::select(b"\\\"\n. ()=x".to_vec()), 0..90),
    ]
}

fn access() -> impl Strategy<Value = Access> {
    prop::sample::select(vec![Access::None, Access::Read, Access::Write, Access::Both])
}

/// The owner must be a domain that exists, and only dom0 exists here; the other entries may
/// name any domid, including ones that `%i` prints negative.
fn perms() -> impl Strategy<Value = Perms> {
    let domid = prop_oneof![4 => 0u32..200, 1 => any::<u32>()];
    (access(), prop::collection::vec((access(), domid), 0..4)).prop_map(|(owner, rest)| {
        let mut entries = vec![Perm { access: owner, domid: 0 }];
        entries.extend(rest.into_iter().map(|(access, domid)| Perm { access, domid }));
        Perms::new(entries).expect("an owner entry")
    })
}

/// Paths below `/t`, closed under ancestors, each with a value and permissions.
fn tree() -> impl Strategy<Value = Tree> {
    let paths = prop::collection::vec(prop::collection::vec(name(), 1..=5), 1..10);
    let attrs = prop::collection::vec((value(), perms()), 1..16);
    (paths, attrs).prop_map(|(paths, attrs)| {
        let mut all = std::collections::BTreeSet::new();
        for components in paths {
            for depth in 1..=components.len() {
                all.insert(format!("{ROOT}/{}", components[..depth].join("/")));
            }
        }
        all.into_iter()
            .enumerate()
            .map(|(i, p)| {
                let (value, perms) = attrs[i % attrs.len()].clone();
                (Path::new(&p).expect("valid generated path"), Node::new(value).with_perms(Some(perms)))
            })
            .collect()
    })
}

// ---------------------------------------------------------------------------------------
// The real tools

/// Replaces `/t` in the daemon with `tree`: one `xenstore-write` for every value (escaped,
/// which `xenstore-write` undoes), then one `xenstore-chmod` per node.
fn load(xs: &Xenstored, tree: &Tree) {
    let _ = xs.tool("xenstore-rm", &[ROOT]);
    let pairs: Vec<(String, String)> = tree.iter().map(|(p, n)| (p.to_string(), escape_value(&n.value))).collect();
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(p, v)| (p.as_str(), v.as_str())).collect();
    xs.write(&refs);
    for (path, node) in tree.iter() {
        // xenstore-chmod reads each domid with atoi.
        let entries: Vec<String> = node
            .perms
            .as_ref()
            .expect("generated with perms")
            .entries()
            .iter()
            .map(|p| format!("{}{}", p.access.letter(), p.domid as i32))
            .collect();
        let mut args = vec![path.as_str()];
        args.extend(entries.iter().map(String::as_str));
        let out = xs.tool("xenstore-chmod", &args);
        assert!(out.status.success(), "xenstore-chmod {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn ls(xs: &Xenstored, flags: &[&str]) -> Vec<u8> {
    let mut args = flags.to_vec();
    args.push(ROOT);
    let out = xs.tool("xenstore-ls", &args);
    assert!(out.status.success(), "xenstore-ls {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

// ---------------------------------------------------------------------------------------
// The model of the tree format's cut, written from xenstore_client.c independently of the
// reader.

fn escaped_len(b: u8) -> usize {
    match b {
        b'\\' | b'\t' | b'\n' | b'\r' => 2,
        b' '..=b'~' => 1,
        _ => 4,
    }
}

/// What plain `xenstore-ls` (width 80) shows of `value` for a node at `depth` named `name`:
/// whether it is cut, and the bytes whose escapes were printed whole.
fn shown(depth: usize, name: &str, value: &[u8]) -> (bool, Vec<u8>) {
    let linewid = depth + name.len();
    if linewid + value.len() + 8 <= 80 {
        return (false, value.to_vec());
    }
    let room = 80 - 8 - linewid;
    let mut used = 0;
    let mut prefix = Vec::new();
    for &b in value {
        used += escaped_len(b);
        if used > room {
            break;
        }
        prefix.push(b);
    }
    (true, prefix)
}

/// The permissions as `xenstore-ls -p` shows them: each entry is printed with `%c%i` into a
/// 12-byte buffer, so a domid of 2^31 or more is negative and its entry cut to 11 characters.
fn shown_perms(perms: &Perms) -> Perms {
    let entries = perms
        .entries()
        .iter()
        .map(|p| {
            let mut digits = (p.domid as i32).to_string();
            digits.truncate(10);
            Perm { access: p.access, domid: digits.parse::<i32>().unwrap() as u32 }
        })
        .collect();
    Perms::new(entries).unwrap()
}

fn as_shown(tree: &Tree) -> Tree {
    tree.iter().map(|(p, n)| (p.clone(), n.clone().with_perms(n.perms.as_ref().map(shown_perms)))).collect()
}

fn without_perms(tree: &Tree) -> Tree {
    tree.iter().map(|(p, n)| (p.clone(), n.clone().with_perms(None))).collect()
}

/// Lines sorted depth first by their path (the part before ` = "` or `:`), siblings by name.
fn dfs_sorted(dump: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = dump.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
    let key = |l: &Vec<u8>| -> Vec<u8> {
        let end = l.iter().position(|&b| b == b' ' || b == b':').unwrap_or(l.len());
        l[..end].iter().map(|&b| if b == b'/' { 0 } else { b }).collect()
    };
    lines.sort_by_key(key);
    lines
}

fn lines_of(dump: &[u8]) -> Vec<Vec<u8>> {
    dump.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect()
}

fn check_tree_format(dump: &[u8], expected: &Tree, with_perms: bool) -> Result<(), TestCaseError> {
    let base = Path::new(ROOT).unwrap();
    let snap = read(dump, &ReadOptions { base: Some(base), ..Default::default() })
        .map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(dump))))?;
    prop_assert_eq!(snap.format, if with_perms { Format::TreePerms } else { Format::Tree });
    prop_assert_eq!(snap.tree.len(), expected.len());
    for (path, want) in expected.iter() {
        let got = snap.tree.get(path).ok_or_else(|| TestCaseError::fail(format!("{path} missing")))?;
        let depth = path.components().count() - 2;
        let (cut, value) = shown(depth, path.name(), &want.value);
        prop_assert_eq!(got.truncated, cut, "truncation of {}", path);
        prop_assert_eq!(&*got.value, &value[..], "value of {}", path);
        let perms = if with_perms { want.perms.as_ref().map(shown_perms) } else { None };
        prop_assert_eq!(&got.perms, &perms, "perms of {}", path);
        prop_assert!(!got.unreadable);
    }
    for w in &snap.warnings {
        prop_assert!(matches!(w.kind, WarningKind::AmbiguousTruncation { .. }), "unexpected warning {}", w);
    }
    Ok(())
}

#[test]
fn readers_and_writers_agree_with_the_real_tools() {
    let xs = Xenstored::start_empty();
    check(24, tree(), |expected| {
        load(&xs, &expected);
        let fp = ls(&xs, &["-fp"]);
        let f = ls(&xs, &["-f"]);
        let plain = ls(&xs, &[]);
        let p = ls(&xs, &["-p"]);

        let snap = read(&fp, &ReadOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(snap.format, Format::FlatPerms);
        prop_assert_eq!(&snap.tree, &as_shown(&expected));
        prop_assert!(snap.warnings.is_empty() && snap.repairs.is_empty());

        let snap = read(&f, &ReadOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(snap.format, Format::Flat);
        prop_assert_eq!(&snap.tree, &without_perms(&expected));

        check_tree_format(&plain, &expected, false)?;
        check_tree_format(&p, &expected, true)?;

        // Our writers print the same lines; our own order is depth first, siblings sorted.
        let ours = write_fp(&expected).unwrap();
        prop_assert_eq!(lines_of(&ours), dfs_sorted(&fp));
        let ours = write_f(&expected).unwrap();
        prop_assert_eq!(lines_of(&ours), dfs_sorted(&f));
        Ok(())
    });
}

/// The scenario format goes through `xenstore-write` as `oracle-spike/run.sh` sends it: our
/// writer's lines come back as the same tree, and our decoding of arbitrary escapes (the
/// lenient reader) matches what `xenstore-write` stores.
#[test]
fn scenarios_agree_with_xenstore_write() {
    let xs = Xenstored::start_empty();
    let raw = prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(b"\\x0123456789abcdefgABFXnrt+- \t\"".to_vec()),
            // No NUL (argv cannot hold it), no newline (it ends the line) and no CR, which
            // lenient mode takes for a line end's.
            1 => any::<u8>().prop_filter("not NUL, LF or CR", |b| ![0, b'\n', b'\r'].contains(b)),
        ],
        0..24,
    );
    check(16, (tree(), prop::collection::vec(raw, 1..8)), |(expected, raws)| {
        let _ = xs.tool("xenstore-rm", &[ROOT]);
        let scenario = write_scenario(&expected).unwrap();
        // run.sh: split each line at the first '=', hand both halves to xenstore-write.
        let mut args: Vec<Vec<u8>> = Vec::new();
        for line in scenario.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let eq = line.iter().position(|&b| b == b'=').unwrap();
            args.push(line[..eq].to_vec());
            args.push(line[eq + 1..].to_vec());
        }
        // Arbitrary escapes, for the lenient decoder.
        let mut text = Vec::new();
        for (i, raw) in raws.iter().enumerate() {
            args.push(format!("/w/{i}").into_bytes());
            args.push(raw.clone());
            text.extend_from_slice(format!("/w/{i}=").as_bytes());
            text.extend_from_slice(raw);
            text.push(b'\n');
        }
        let mut cmd = xs.command("xenstore-write");
        cmd.arg("--");
        use std::os::unix::ffi::OsStrExt;
        for a in &args {
            cmd.arg(std::ffi::OsStr::from_bytes(a));
        }
        let out = cmd.output().unwrap();
        prop_assert!(out.status.success(), "xenstore-write: {}", String::from_utf8_lossy(&out.stderr));

        let f = ls(&xs, &["-f"]);
        let stored = read(&f, &ReadOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?.tree;
        prop_assert_eq!(&stored, &without_perms(&expected));
        let back = read(&scenario, &ReadOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.format, Format::Scenario);
        prop_assert_eq!(&back.tree, &without_perms(&expected));

        let out = xs.tool("xenstore-ls", &["-f", "/w"]);
        let stored_w = read(&out.stdout, &ReadOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?.tree;
        let ours = read(&text, &ReadOptions { lenient: true, format: Some(Format::Scenario), ..Default::default() })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&ours.tree, &stored_w, "{}", String::from_utf8_lossy(&text));
        let _ = xs.tool("xenstore-rm", &["/w"]);
        Ok(())
    });
}
