//! Bad input never panics, and every error names its line (and column). Covers truncated
//! lines, bad escapes, invalid paths, duplicate paths, paths nested 10,000 deep, a million
//! siblings and a 100 MB value, in every format, plus a fuzz law over arbitrary and mutated
//! dumps.

use merge_core::xenstore::{Node, Path, PathError, Perms, Tree};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use xs_adapter::dump::{read, write_fp, DumpError, DumpErrorKind, Format, ReadOptions, VALUE_MAX};

fn strict(input: &[u8]) -> Result<xs_adapter::dump::Snapshot, DumpError> {
    read(input, &ReadOptions::default())
}

fn as_format(input: &[u8], format: Format) -> Result<xs_adapter::dump::Snapshot, DumpError> {
    read(input, &ReadOptions { format: Some(format), ..Default::default() })
}

fn lenient(input: &[u8]) -> Result<xs_adapter::dump::Snapshot, DumpError> {
    read(input, &ReadOptions { lenient: true, ..Default::default() })
}

/// Asserts an error at `line`, `column`, whose kind passes `kind`.
#[track_caller]
fn err_at(
    result: Result<xs_adapter::dump::Snapshot, DumpError>,
    line: usize,
    column: usize,
    kind: impl Fn(&DumpErrorKind) -> bool,
) {
    match result {
        Ok(s) => panic!("expected an error at {line}:{column}, got a tree of {} nodes", s.tree.len()),
        Err(e) => {
            assert_eq!((e.line, e.column), (line, column), "{e}");
            assert!(kind(&e.kind), "unexpected kind: {e}");
            assert!(e.text.chars().count() <= 122, "excerpt too long: {} chars", e.text.len());
            assert!(e.to_string().starts_with(&format!("line {line}, column {column}: ")), "{e}");
        }
    }
}

#[test]
fn truncated_lines() {
    let ok = "/a = \"1\"\n";
    for (cut, column) in [("/a/b = \"unterminated", 21), ("/a/b = \"", 9), ("/a/b = ", 1), ("/a/b", 1)] {
        let input = format!("{ok}{cut}\n");
        err_at(strict(input.as_bytes()), 2, column, |k| {
            matches!(k, DumpErrorKind::UnterminatedValue | DumpErrorKind::NotADumpLine)
        });
    }
    let fp = "/a = \"1\"   (n0)\n/a/b = \"x\"   (n0\n";
    err_at(strict(fp.as_bytes()), 2, 17, |k| matches!(k, DumpErrorKind::UnterminatedValue));
    let fp = "/a = \"1\"   (n0)\n/a/b = \"x\"   (\n";
    err_at(strict(fp.as_bytes()), 2, 15, |k| matches!(k, DumpErrorKind::UnterminatedValue));
    let tree = "a = \"1\"\n b = \"unterminated\n";
    err_at(strict(tree.as_bytes()), 2, 19, |k| matches!(k, DumpErrorKind::UnterminatedValue));
    let tree = "a = \"1\"\n b =\n";
    err_at(strict(tree.as_bytes()), 2, 3, |k| matches!(k, DumpErrorKind::Expected { .. }));
    let scenario = "/a=1\n/a/b\n";
    err_at(strict(scenario.as_bytes()), 2, 5, |k| matches!(k, DumpErrorKind::Expected { .. }));
    // A dump cut in the middle of a line (no final newline) is the same.
    err_at(strict(b"/a = \"1\"\n/a/b = \"x"), 2, 10, |k| matches!(k, DumpErrorKind::UnterminatedValue));
    // Windows line ends are transport damage: an error when strict, repaired when lenient.
    err_at(strict(b"/a = \"1\"\r\n/b = \"2\"\r\n"), 1, 9, |k| matches!(k, DumpErrorKind::CarriageReturn));
    assert_eq!(lenient(b"/a = \"1\"\r\n/b = \"2\"\r\n").unwrap().repairs.len(), 2);
}

#[test]
fn bad_escapes() {
    for (value, column) in [(r"\x4", 7), (r"ab\9", 9), (r"\x4g", 7), (r#"\""#, 7), (r"a\", 8), (r"\q", 7), (r"\400", 7)]
    {
        let input = format!("/ok = \"\"\n/a = \"{value}\"\n");
        err_at(strict(input.as_bytes()), 2, column, |k| matches!(k, DumpErrorKind::BadEscape { .. }));
        let input = format!("ok = \"\"\n a = \"{value}\"\n");
        err_at(strict(input.as_bytes()), 2, column, |k| matches!(k, DumpErrorKind::BadEscape { .. }));
    }
    // Raw control and high bytes, which xenstore-ls always escapes.
    err_at(strict(b"/a = \"a\tb\"\n"), 1, 8, |k| matches!(k, DumpErrorKind::RawByte { byte: b'\t' }));
    err_at(strict(b"/a = \"\xc3\xa9\"\n"), 1, 7, |k| matches!(k, DumpErrorKind::RawByte { byte: 0xc3 }));
    // A scenario is strict about what xenstore-write would quietly reinterpret.
    err_at(strict(b"/a=ok\n/b=x\\9\n"), 2, 5, |k| matches!(k, DumpErrorKind::BadEscape { .. }));
    err_at(strict(b"/a=ok\n/b=\\x4\n"), 2, 4, |k| matches!(k, DumpErrorKind::BadEscape { .. }));
    let snap = lenient(b"/a=ok\n/b=\\x4g\\9\n").unwrap();
    assert_eq!(snap.tree.get_str("/b").map(|n| &*n.value), Some(&b"\x04g9"[..]));
    assert_eq!(snap.repairs.len(), 2);
    // Lenient mode does not guess values.
    err_at(lenient(b"/a = \"\\x4\"\n"), 1, 7, |k| matches!(k, DumpErrorKind::BadEscape { .. }));
}

#[test]
fn invalid_paths() {
    let cases: &[(&str, usize)] = &[
        ("/a//b = \"x\"\n", 4),
        ("/a/b/ = \"x\"\n", 5),
        ("/a.b = \"x\"\n", 3),
        ("/a = \"\"\n/a b = \"x\"\n", 3),
        ("/a:b = \"x\"\n", 3),
    ];
    for (input, column) in cases {
        let line = input.lines().count();
        err_at(strict(input.as_bytes()), line, *column, |k| matches!(k, DumpErrorKind::BadPath(_)));
    }
    let long = format!("/{} = \"x\"\n", "a".repeat(3072));
    err_at(strict(long.as_bytes()), 1, 1, |k| {
        matches!(k, DumpErrorKind::BadPath(PathError::TooLong { len: 3073, max: 3072 }))
    });
    let rel = format!("{} = \"x\"\n", "a/".repeat(1024) + "a");
    err_at(strict(rel.as_bytes()), 1, 1, |k| matches!(k, DumpErrorKind::BadPath(PathError::TooLong { max: 2048, .. })));
    err_at(strict(b"/a=1\n/a b=2\n"), 2, 3, |k| matches!(k, DumpErrorKind::BadPath(_)));
    err_at(strict(b"a = \"1\"\n b.c = \"2\"\n"), 2, 3, |k| matches!(k, DumpErrorKind::BadPath(_)));
    // A base that makes a relative path too long.
    let base = Path::new(&format!("/{}", "b".repeat(3000))).unwrap();
    let e = read(
        b"x/y/z/w/v/u/t/s/r/q/p/o/n/m/l/k/j/i/h/g/f/e/d/c/b/a/aa/bb/cc/dd/ee/ff/gg/hh/ii/jj/kk/ll = \"1\"\n",
        &ReadOptions { base: Some(base), ..Default::default() },
    );
    err_at(e, 1, 1, |k| matches!(k, DumpErrorKind::BadPath(PathError::TooLong { .. })));
}

#[test]
fn duplicate_paths() {
    err_at(
        strict(b"/a = \"1\"\n/b = \"2\"\n/a = \"3\"\n"),
        3,
        1,
        |k| matches!(k, DumpErrorKind::DuplicatePath { path, first_line: 1 } if path == "/a"),
    );
    err_at(
        strict(b"a = \"1\"\n b = \"2\"\na = \"3\"\n"),
        3,
        1,
        |k| matches!(k, DumpErrorKind::DuplicatePath { path, first_line: 1 } if path == "a"),
    );
    err_at(
        strict(b"a = \"1\"\n b = \"2\"\n b = \"3\"\n"),
        3,
        2,
        |k| matches!(k, DumpErrorKind::DuplicatePath { path, first_line: 2 } if path == "a/b"),
    );
    err_at(strict(b"# scenario\n/a=1\n\n/a=1\n"), 4, 1, |k| {
        matches!(k, DumpErrorKind::DuplicatePath { first_line: 2, .. })
    });
    // The same node twice through a base.
    let base = Some(Path::new("/local/domain/1").unwrap());
    let e = read(
        b"/local/domain/1/name = \"a\"\nname = \"a\"\n",
        &ReadOptions { base, format: Some(Format::Flat), ..Default::default() },
    );
    err_at(e, 2, 1, |k| matches!(k, DumpErrorKind::DuplicatePath { first_line: 1, .. }));
    err_at(lenient(b"/a = \"1\"\n/a = \"1\"\n"), 2, 1, |k| matches!(k, DumpErrorKind::DuplicatePath { .. }));
}

#[test]
fn paths_nested_ten_thousand_deep() {
    // One line, one path of 10,000 components.
    let one = format!("{} = \"x\"\n", "/a".repeat(10_000));
    err_at(strict(one.as_bytes()), 1, 1, |k| matches!(k, DumpErrorKind::BadPath(PathError::TooLong { .. })));
    // 10,000 lines, each a level deeper: `/a/a` is fine until it passes 3072 bytes.
    let mut flat = String::new();
    for depth in 1..=10_000 {
        flat.push_str(&"/a".repeat(depth));
        flat.push_str(" = \"\"   (n0)\n");
    }
    err_at(strict(flat.as_bytes()), 1537, 1, |k| {
        matches!(k, DumpErrorKind::BadPath(PathError::TooLong { len: 3074, .. }))
    });
    // The tree format, 10,000 levels of indentation.
    let mut tree = String::new();
    for depth in 0..10_000 {
        tree.push_str(&" ".repeat(depth));
        tree.push_str("a = \"\"\n");
    }
    err_at(strict(tree.as_bytes()), 1025, 1025, |k| {
        matches!(k, DumpErrorKind::BadPath(PathError::TooLong { len: 2049, .. }))
    });
    let base = Some(Path::root());
    let e = read(tree.as_bytes(), &ReadOptions { base, ..Default::default() });
    err_at(e, 1537, 1537, |k| matches!(k, DumpErrorKind::BadPath(PathError::TooLong { len: 3074, .. })));
    err_at(lenient(tree.as_bytes()), 1025, 1025, |k| matches!(k, DumpErrorKind::BadPath(_)));
}

#[test]
fn a_million_siblings() {
    let mut fp = Vec::with_capacity(30_000_000);
    for i in 0..1_000_000 {
        fp.extend_from_slice(format!("/s/n{i} = \"{i}\"   (n0,r{})\n", i % 7).as_bytes());
    }
    let snap = strict(&fp).unwrap();
    assert_eq!(snap.tree.len(), 1_000_000);
    assert_eq!(snap.tree.text("/s/n999999"), Some("999999"));
    assert_eq!(snap.tree.children(&Path::new("/s").unwrap()).len(), 1_000_000);
    // The same siblings as a tree listing, with one bad line at the end.
    let mut tree = b"s = \"\"\n".to_vec();
    for i in 0..1_000_000 {
        tree.extend_from_slice(format!(" n{i} = \"{i}\"\n").as_bytes());
    }
    assert_eq!(strict(&tree).unwrap().tree.len(), 1_000_001);
    tree.extend_from_slice(b" n5 = \"again\"\n");
    err_at(strict(&tree), 1_000_002, 2, |k| matches!(k, DumpErrorKind::DuplicatePath { first_line: 7, .. }));
}

#[test]
fn a_hundred_megabyte_value() {
    let big = "x".repeat(100 << 20);
    let cases: Vec<(Vec<u8>, usize)> = vec![
        (format!("/a = \"\"\n/a/big = \"{big}\"\n").into_bytes(), 11),
        (format!("/a = \"\"   (n0)\n/a/big = \"{big}\"   (n0)\n").into_bytes(), 11),
        (format!("a = \"\"\n big = \"{big}\"\n").into_bytes(), 9),
        (format!("/a=\n/a/big={big}\n").into_bytes(), 8),
        (format!("/a = \"\"\n/a/big = \"{}\"\n", r"\x41".repeat(25 << 20)).into_bytes(), 11),
    ];
    for (input, column) in cases {
        err_at(strict(&input), 2, column, |k| matches!(k, DumpErrorKind::ValueTooLong { max: VALUE_MAX, .. }));
    }
    // Without a closing quote, or without a line end at all: still a short, located error.
    err_at(strict(format!("/a = \"{big}").as_bytes()), 1, 6 + big.len() + 1, |k| {
        matches!(k, DumpErrorKind::UnterminatedValue)
    });
    // The largest value xenstore can hold is fine.
    let max = format!("/a = \"{}\"\n", "y".repeat(VALUE_MAX));
    assert_eq!(strict(max.as_bytes()).unwrap().tree.get_str("/a").unwrap().value.len(), VALUE_MAX);
}

#[test]
fn empty_and_undetectable_input() {
    err_at(strict(b""), 1, 1, |k| matches!(k, DumpErrorKind::Empty));
    err_at(strict(b"\n\n"), 1, 1, |k| matches!(k, DumpErrorKind::Empty));
    err_at(strict(b"hello world\n"), 1, 1, |k| matches!(k, DumpErrorKind::NotADumpLine));
    assert!(as_format(b"", Format::FlatPerms).unwrap().tree.is_empty());
    err_at(strict(b"/a = \"1\"   (n0)\n/b = \"2\"\n"), 2, 9, |k| {
        matches!(k, DumpErrorKind::FormatMismatch { decided_at: 1, .. })
    });
    err_at(strict(b"/a = \"1\"\n/b = \"2\"   (n0)\n"), 2, 12, |k| matches!(k, DumpErrorKind::FormatMismatch { .. }));
    err_at(strict(b"/a = \"1\"   (x0)\n"), 1, 13, |k| matches!(k, DumpErrorKind::BadPerms { .. }));
    err_at(strict(b"/a = \"1\"  (n0)\n"), 1, 9, |k| {
        matches!(k, DumpErrorKind::PermsSpacing { spaces: 2, expected: 3 })
    });
    err_at(strict(b"  (n0)\n"), 1, 1, |k| matches!(k, DumpErrorKind::NotADumpLine));
    err_at(as_format(b"/a:\n  (n0)\n  (n0)\n", Format::FlatPerms), 3, 3, |k| matches!(k, DumpErrorKind::StrayPerms));
}

// ---------------------------------------------------------------------------------------
// Fuzz: nothing panics, whatever the bytes, and every error points into the input.

fn valid_fp() -> Vec<u8> {
    let mut t = Tree::new();
    for (i, v) in
        [&b""[..], b"1", b"a \"quoted\"   (n0)", b"\\\n\t\xff\x00", b"/local/domain/0/backend"].iter().enumerate()
    {
        let p = Path::new(&format!("/local/domain/{i}/k-{i}")).unwrap();
        t.insert(p, Node::new(v.to_vec()).with_perms(Perms::parse(&format!("n0,r{i}"))));
    }
    write_fp(&t).unwrap()
}

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let base = prop_oneof![
        Just(valid_fp()),
        Just(b"local = \"\"\n domain = \"\"\n  0 = \"x\" . . . . . .  (n0)\n  1:\n\n  2 = \"abc\\...\"\n".to_vec()),
        Just(b"# xenstore-ls -f\n> /a = \"1\" \n> (n0)\n  1. /b = \"2\" (n0)\n".to_vec()),
        Just(b"/a=1\n/b=\\x4\\\n# c\n".to_vec()),
    ];
    let edit = (any::<prop::sample::Index>(), prop::sample::select(b"\n\r \"\\=():/.>-#0x9anrt\xff".to_vec()), 0..3u8);
    (base, prop::collection::vec(edit, 0..12)).prop_map(|(mut bytes, edits)| {
        for (at, byte, op) in edits {
            let i = at.index(bytes.len() + 1);
            match op {
                0 => bytes.insert(i, byte),
                1 if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ if i < bytes.len() => bytes[i] = byte,
                _ => bytes.push(byte),
            }
        }
        bytes
    })
}

fn check_never_panics(input: &[u8]) -> Result<(), TestCaseError> {
    let lines = input.split(|&b| b == b'\n').count();
    let formats = [
        None,
        Some(Format::Flat),
        Some(Format::FlatPerms),
        Some(Format::Tree),
        Some(Format::TreePerms),
        Some(Format::Scenario),
    ];
    for format in formats {
        for lenient in [false, true] {
            for tree_width in [None, Some(20)] {
                let opts = ReadOptions { format, lenient, tree_width, base: None };
                if let Err(e) = read(input, &opts) {
                    prop_assert!(e.line >= 1 && e.line <= lines.max(1), "line {} of {}: {}", e.line, lines, e);
                    prop_assert!(e.column >= 1, "{}", e);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../proptest-regressions/xs-adapter/dump_bad_input.txt"
        )))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..400)) {
        check_never_panics(&input)?;
    }

    #[test]
    fn mutated_dumps_never_panic(input in mutated()) {
        check_never_panics(&input)?;
    }
}
