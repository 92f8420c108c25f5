//! Every libxl JSON document of the shared corpus (`../shared/corpus/libxl-*.json`, third-party
//! files; see CATALOGUE.md) parses under the 4.17 schema, and parse → print → parse is equal,
//! key order included. Printing differs from the file only in whitespace: the files were
//! printed by libxl's generator inside libvirt's tests and some were then edited by hand (a
//! tab-indented line, an empty object without its blank line); the others come back byte for
//! byte.
//!
//! What libxl 4.17 itself makes of them is checked against the real libxl in xs-adapter's
//! `xl_json_fixtures` tests; here only that the answer is a fixed point.

use std::path::{Path, PathBuf};

use merge_core::config::{normalize_libxl_417, parse_document, Document, DomainConfig};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus");

fn corpus_documents() -> Vec<PathBuf> {
    let dir = Path::new(CORPUS);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("the shared corpus must be at {} ({e})", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("libxl-") && name.ends_with(".json")
        })
        .collect();
    files.sort();
    files
}

fn without_whitespace(s: &str) -> String {
    s.chars().filter(|c| !c.is_ascii_whitespace()).collect()
}

/// The first line where two texts differ, for a readable failure.
fn first_difference(a: &str, b: &str) -> String {
    match a.lines().zip(b.lines()).enumerate().find(|(_, (x, y))| x != y) {
        Some((n, (x, y))) => format!("line {}: {x:?} vs {y:?}", n + 1),
        None => format!("lengths {} vs {}", a.len(), b.len()),
    }
}

#[test]
fn every_corpus_document_round_trips() {
    let files = corpus_documents();
    assert!(files.len() >= 16, "expected the 16 libvirt documents, found {}", files.len());
    let mut byte_identical = 0;
    for file in &files {
        let name = file.display();
        let bytes = std::fs::read(file).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let doc = parse_document(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let Document::Bare(config) = &doc else { panic!("{name}: the corpus holds bare configs") };
        assert!(config.warnings().is_empty(), "{name}: {:?}", config.warnings());
        assert!(config.build_type().is_some(), "{name}: no type.* key");
        let printed = doc.to_libxl_json();
        let again = DomainConfig::parse(printed.as_bytes()).unwrap_or_else(|e| panic!("{name}: reparse: {e}"));
        assert_eq!(&again, config, "{name}: parse → print → parse changed the document");
        assert_eq!(again.to_libxl_json(), printed, "{name}: printing is not stable");
        assert_eq!(
            without_whitespace(&printed),
            without_whitespace(&text),
            "{name}: {}",
            first_difference(&printed, &text)
        );
        if printed == text {
            byte_identical += 1;
        } else {
            eprintln!("{name}: whitespace differs from libxl's layout at {}", first_difference(&printed, &text));
        }
    }
    eprintln!("{byte_identical} of {} corpus documents print back byte for byte", files.len());
    assert!(byte_identical > 0, "no corpus document printed back byte for byte");
}

#[test]
fn corpus_documents_through_libxl_4_17_are_fixed_points() {
    for file in corpus_documents() {
        let name = file.display();
        let config = DomainConfig::parse(&std::fs::read(&file).unwrap()).unwrap();
        let normalized = normalize_libxl_417(&config).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(normalized.validate().is_ok(), "{name}");
        assert_eq!(normalize_libxl_417(&normalized).unwrap(), normalized, "{name}: not a fixed point");
        // Same devices, same build type: 4.17 only reorders, drops defaults, adds aggregates.
        for array in merge_core::config::DeviceArray::ALL {
            assert_eq!(normalized.devices(array).len(), config.devices(array).len(), "{name}: {array:?}");
        }
        assert_eq!(normalized.build_type(), config.build_type(), "{name}");
    }
}
