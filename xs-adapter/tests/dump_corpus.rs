//! Every xenstore dump in the shared corpus, with the outcome we expect from it: read strictly,
//! read only in lenient mode (with how many repairs), or rejected with a precise error.
//! A file added to the corpus fails `every_corpus_dump_has_an_expectation` until it is listed.

use merge_core::xenstore::{Path, Perms, Tree};
use xs_adapter::dump::{read, DumpError, Format, ReadOptions, RepairKind, Snapshot, WarningKind};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus");

/// What strict mode does with a file.
enum Strict {
    Ok {
        nodes: usize,
    },
    /// Rejected at `line`, `column`, with an error kind of this name.
    Err {
        line: usize,
        column: usize,
        kind: &'static str,
    },
}

/// What lenient mode does with a file.
enum Lenient {
    Ok { nodes: usize, repairs: usize, truncated: usize, base: Option<&'static str> },
    Err { line: usize, column: usize, kind: &'static str },
}

struct Case {
    file: &'static str,
    format: Option<Format>,
    strict: Strict,
    lenient: Lenient,
}

use Format::*;

fn cases() -> Vec<Case> {
    let c = |file, format, strict, lenient| Case { file, format, strict, lenient };
    let not_a_line = |line| Strict::Err { line, column: 1, kind: "NotADumpLine" };
    let ok = |nodes, repairs| Lenient::Ok { nodes, repairs, truncated: 0, base: None };
    let based = |nodes, repairs, base| Lenient::Ok { nodes, repairs, truncated: 0, base: Some(base) };
    vec![
        // Prompt with a back-tick command (no usable base) and a bare prompt at the end; the
        // listing is indented 4 spaces as a whole.
        c(
            "xs-gxentop-xenserver-vbd-subtree.txt",
            Some(Tree),
            Strict::Err { line: 1, column: 5, kind: "NotADumpLine" },
            ok(25, 3),
        ),
        c(
            "xs-mirage65-qubes-vif-backend-partial.txt",
            Some(Tree),
            not_a_line(1),
            based(21, 1, "/local/domain/3/backend/vif"),
        ),
        // Two cut-outs (backend, then frontend) under the same relative names: `vif` twice.
        c(
            "xs-netdev-xsa423-vif.txt",
            Some(Tree),
            Strict::Err { line: 1, column: 1, kind: "BadIndent" },
            Lenient::Err { line: 28, column: 6, kind: "DuplicatePath" },
        ),
        // Pastebin captures: a `- ` or `  N. ` marker on every line, spaces squeezed to one.
        c("xs-pastebin-WmWrnfq8-physmap-fp-partial.txt", Some(FlatPerms), not_a_line(1), ok(28, 29 + 28 + 1)),
        c("xs-pastebin-iNn8rtL5-qdisk-hvm-fp-partial.txt", Some(FlatPerms), not_a_line(1), ok(28, 28 + 28)),
        c("xs-pastebin-s7wa1ee7-freebsd-hvm-fp-partial.txt", Some(FlatPerms), not_a_line(1), ok(23, 23 + 23)),
        c("xs-pastebin-trPaGWXK-freebsd-dom0-fp-partial.txt", Some(FlatPerms), not_a_line(1), ok(19, 19 + 19)),
        // Quoted `-f` taken inside a guest: relative paths.
        c("xs-qemudevel-guest-relative-f.txt", Some(Flat), not_a_line(1), ok(11, 12 + 1)),
        // Docstring indent of 4; two values cut by xenstore-ls at the terminal's width.
        c(
            "xs-singularity-xenserver-guest-tree.txt",
            Some(Tree),
            Strict::Err { line: 1, column: 1, kind: "BadIndent" },
            Lenient::Ok { nodes: 135, repairs: 1, truncated: 2, base: None },
        ),
        // Edited into a PowerShell template: `{BlockID*:51712} = ""` is no node name.
        c(
            "xs-tervis-oraclevm-xend-tree-template.txt",
            Some(Tree),
            Strict::Err { line: 94, column: 7, kind: "NotADumpLine" },
            Lenient::Err { line: 94, column: 7, kind: "NotADumpLine" },
        ),
        c("xs-xendevel-arm-pci-grep-quoted.txt", Some(Flat), not_a_line(1), ok(21, 22 + 1)),
        // Two flowed wraps after ` = `.
        c("xs-xendevel-arm-vdispl-drvdom-f.txt", Some(Flat), not_a_line(1), ok(27, 2 + 1)),
        // Children indented by 2 spaces instead of 1.
        c("xs-xendevel-channel-1.txt", Some(Tree), Strict::Err { line: 2, column: 1, kind: "BadIndent" }, ok(16, 14)),
        c("xs-xendevel-channel-2.txt", Some(Tree), Strict::Err { line: 2, column: 1, kind: "BadIndent" }, ok(10, 9)),
        c("xs-xendevel-channel-3.txt", Some(Tree), Strict::Err { line: 2, column: 1, kind: "BadIndent" }, ok(4, 1)),
        c(
            "xs-xendevel-drvdom-dom0vif-quoted.txt",
            Some(Tree),
            not_a_line(1),
            based(23, 24 + 1, "/local/domain/2/backend/vif/0"),
        ),
        // 17 flowed wraps; 5 of the joins leave fewer than 3 spaces before the permissions.
        // Strictly, line 24 ends in `" ` (unreadable permissions) and line 25 is a stray list.
        c(
            "xs-xendevel-drvdom-fp.txt",
            Some(FlatPerms),
            Strict::Err { line: 25, column: 4, kind: "StrayPerms" },
            ok(202, 17 + 5),
        ),
        c("xs-xendevel-drvdom-leftover-fp.txt", Some(FlatPerms), Strict::Ok { nodes: 7 }, ok(7, 0)),
        c("xs-xendevel-pcipt-usb-before.txt", Some(Tree), Strict::Ok { nodes: 328 }, ok(328, 0)),
        c("xs-xendevel-perm-p-dotpad-dom0.txt", Some(TreePerms), not_a_line(1), based(4, 1, "/local/domain/2/foo")),
        // stderr mixed in: three lines dropped, and the listing stops at `three`.
        c(
            "xs-xendevel-perm-p-dotpad-dom2-errors.txt",
            Some(TreePerms),
            not_a_line(1),
            based(3, 1 + 3, "/local/domain/2/foo"),
        ),
        c("xs-xendevel-qubes-memory-fp.txt", Some(FlatPerms), not_a_line(1), ok(3, 1)),
        c("xs-xendevel-winhvm-pci-libxl-fp.txt", Some(FlatPerms), Strict::Ok { nodes: 76 }, ok(76, 0)),
        c("xs-xenopsd200-pci-plug-f.txt", Some(Flat), Strict::Ok { nodes: 6 }, ok(6, 0)),
        c("xs-xenwiki-xenstore-f.txt", Some(Flat), not_a_line(1), ok(15, 1)),
        c("xs-xenwiki-xenstore-tree.txt", Some(Tree), not_a_line(1), based(15, 1, "/")),
    ]
}

fn load(file: &str) -> Vec<u8> {
    std::fs::read(format!("{CORPUS}/{file}")).unwrap_or_else(|e| panic!("cannot read {CORPUS}/{file}: {e}"))
}

fn strict(bytes: &[u8]) -> Result<Snapshot, DumpError> {
    read(bytes, &ReadOptions::default())
}

fn lenient(bytes: &[u8]) -> Result<Snapshot, DumpError> {
    read(bytes, &ReadOptions { lenient: true, ..Default::default() })
}

fn kind_name(e: &DumpError) -> String {
    format!("{:?}", e.kind).split([' ', '(', '{']).next().unwrap_or_default().to_string()
}

#[test]
fn every_corpus_dump_has_the_expected_outcome() {
    let mut failures = Vec::new();
    for case in cases() {
        let bytes = load(case.file);
        let s = strict(&bytes);
        match (&case.strict, &s) {
            (Strict::Ok { nodes }, Ok(snap)) if snap.tree.len() == *nodes && Some(snap.format) == case.format => {}
            (Strict::Err { line, column, kind }, Err(e))
                if e.line == *line && e.column == *column && kind_name(e) == *kind => {}
            _ => {
                failures.push(format!("{}: strict gave {:?}", case.file, s.as_ref().map(|s| (s.format, s.tree.len()))))
            }
        }
        let l = lenient(&bytes);
        match (&case.lenient, &l) {
            (Lenient::Ok { nodes, repairs, truncated, base }, Ok(snap))
                if snap.tree.len() == *nodes
                    && snap.repairs.len() == *repairs
                    && snap.tree.iter().filter(|(_, n)| n.truncated).count() == *truncated
                    && snap.base.as_ref().map(Path::as_str) == *base
                    && Some(snap.format) == case.format => {}
            (Lenient::Err { line, column, kind }, Err(e))
                if e.line == *line && e.column == *column && kind_name(e) == *kind => {}
            _ => failures.push(format!(
                "{}: lenient gave {:?}",
                case.file,
                l.as_ref().map(|s| (s.format, s.tree.len(), s.repairs.len(), s.base.clone(), s.warnings.clone()))
            )),
        }
        // A strict reading needs no repair, so lenient mode must agree with it.
        if let (Ok(a), Ok(b)) = (&s, &l) {
            assert_eq!(a.tree, b.tree, "{}: strict and lenient trees differ", case.file);
        }
    }
    assert!(failures.is_empty(), "unexpected outcomes:\n{}", failures.join("\n"));
}

#[test]
fn every_corpus_dump_has_an_expectation() {
    let listed: Vec<&str> = cases().iter().map(|c| c.file).collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(CORPUS)
        .unwrap_or_else(|e| panic!("cannot list {CORPUS}: {e}"))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("xs-") && n.ends_with(".txt"))
        .collect();
    on_disk.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(on_disk, sorted);
}

fn text(tree: &Tree, path: &str) -> Option<String> {
    tree.get_str(path).map(|n| String::from_utf8_lossy(&n.value).into_owned())
}

#[test]
fn xenwiki_tree_and_flat_are_the_same_store() {
    let tree = lenient(&load("xs-xenwiki-xenstore-tree.txt")).unwrap();
    let flat = lenient(&load("xs-xenwiki-xenstore-f.txt")).unwrap();
    assert_eq!(tree.tree, flat.tree);
    assert_eq!(text(&flat.tree, "/local/domain/0/memory/freemem-slack").as_deref(), Some("1254331"));
}

#[test]
fn terminal_width_truncation_is_flagged_never_taken_as_a_value() {
    let snap = lenient(&load("xs-singularity-xenserver-guest-tree.txt")).unwrap();
    let cut: Vec<(&Path, String)> = snap
        .tree
        .iter()
        .filter(|(_, n)| n.truncated)
        .map(|(p, n)| (p, String::from_utf8_lossy(&n.value).into_owned()))
        .collect();
    assert_eq!(cut.len(), 2);
    assert!(cut[0].0.as_str().ends_with("/40409783782e"), "{cut:?}");
    assert_eq!(cut[0].1, r#"{"label":"public","ips":[{"netmask":"255.255.255.0",""#);
    assert!(snap.tree.get_str(cut[0].0.as_str()).unwrap().known_value().is_none());
    // The width was inferred from the cut lines (79 with the 4-space docstring indent), so no
    // complete value is wider than it.
    assert!(!snap.warnings.iter().any(|w| matches!(w.kind, WarningKind::WiderThanWidth { .. })), "{:?}", snap.warnings);
}

#[test]
fn flowed_wraps_are_rejoined() {
    let snap = lenient(&load("xs-xendevel-drvdom-fp.txt")).unwrap();
    let node = snap.tree.get_str("/local/domain/0/backend/console/1/0/frontend").unwrap();
    assert_eq!(&*node.value, b"/local/domain/1/console");
    assert_eq!(node.perms, Perms::parse("n0,r1"));
    let node = snap.tree.get_str("/local/domain/1/control/platform-feature-multiprocessor-suspend").unwrap();
    assert_eq!((&*node.value, node.perms.clone()), (&b"1"[..], Perms::parse("n0,r1")));
    assert_eq!(text(&snap.tree, "/local/domain/1/backend/vif/2/0/state").as_deref(), Some("6"));
    let wraps = snap.repairs.iter().filter(|r| r.kind == RepairKind::FlowedWrap).count();
    assert_eq!(wraps, 17);
    let vdispl = lenient(&load("xs-xendevel-arm-vdispl-drvdom-f.txt")).unwrap();
    assert_eq!(
        text(&vdispl.tree, "/local/domain/1/backend/vdispl/2/0/frontend").as_deref(),
        Some("/local/domain/2/device/vdispl/0")
    );
}

#[test]
fn unreadable_nodes_and_aborted_listings() {
    let snap = lenient(&load("xs-xendevel-perm-p-dotpad-dom2-errors.txt")).unwrap();
    let three = snap.tree.get_str("/local/domain/2/foo/three").unwrap();
    assert!(three.unreadable && three.known_value().is_none() && three.perms.is_none());
    assert_eq!(snap.tree.get_str("/local/domain/2/foo/two").unwrap().perms, Perms::parse("n0,r2"));
    assert!(snap.warnings.iter().any(|w| w.line == 8 && matches!(w.kind, WarningKind::ListingAborted { .. })));
    let dom0 = lenient(&load("xs-xendevel-perm-p-dotpad-dom0.txt")).unwrap();
    assert_eq!(dom0.tree.get_str("/local/domain/2/foo/three").unwrap().perms, Perms::parse("n0"));
    assert_eq!(text(&dom0.tree, "/local/domain/2/foo/four").as_deref(), Some("four"));
}

#[test]
fn relative_dumps_resolve_against_a_given_base() {
    let bytes = load("xs-xendevel-drvdom-leftover-fp.txt");
    let relative = strict(&bytes).unwrap();
    assert_eq!(relative.tree.get_str("backend/vif/36").unwrap().perms, Perms::parse("n0,r1"));
    let base = Path::new("/local/domain/1").unwrap();
    let absolute = read(&bytes, &ReadOptions { base: Some(base), ..Default::default() }).unwrap();
    assert_eq!(absolute.tree.get_str("/local/domain/1/backend/vif/46/0").unwrap().perms, Perms::parse("n1,r46"));
    let guest = read(
        &load("xs-qemudevel-guest-relative-f.txt"),
        &ReadOptions { lenient: true, base: Some(Path::new("/local/domain/1").unwrap()), ..Default::default() },
    )
    .unwrap();
    assert_eq!(text(&guest.tree, "/local/domain/1/device/vbd/51712/state").as_deref(), Some("4"));
}

#[test]
fn rejections_name_the_offending_text() {
    let e = lenient(&load("xs-tervis-oraclevm-xend-tree-template.txt")).unwrap_err();
    assert!(e.text.contains("{BlockID*:51712}"), "{e}");
    let e = lenient(&load("xs-netdev-xsa423-vif.txt")).unwrap_err();
    assert!(e.to_string().contains("path vif appears twice (first at line 1)"), "{e}");
}
