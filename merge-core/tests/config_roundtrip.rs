//! Law 9 of DESIGN.md for the JSON replica, on schema-generated documents (every device kind,
//! random field subsets, nested structs, unknown keys at random positions, shuffled key
//! orders):
//!
//! * parse(print(x)) == x, key order included, and printing is stable;
//! * on libxl-canonical documents (libxl 4.17's own output), normalize is the identity;
//! * normalize is idempotent on anything libxl accepts;
//! * the `xl list -l` wrapper round-trips too.
//!
//! Case counts are modest by default; `XLSYNC_PROPTEST_CASES` raises them.

use merge_core::config::arbitrary::{canonical_config, domain_config, libxl_input};
use merge_core::config::{
    normalize_libxl_417, parse_document, DeviceArray, Document, DomainConfig, ListedDomain, ParseWarning,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

const REGRESSIONS: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../proptest-regressions/merge-core/config_roundtrip.txt");

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(160))]

    #[test]
    fn parse_print_parse_is_the_identity(original in domain_config()) {
        let text = original.to_libxl_json();
        let back = DomainConfig::parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &original);
        prop_assert_eq!(back.to_libxl_json(), text.clone());
        // The userdata form (JSON + NUL) reads back the same.
        let stored = DomainConfig::parse(&original.to_userdata_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&stored, &original);
        let duplicates = stored.warnings().iter().filter(|w| matches!(w, ParseWarning::DuplicateKey { .. })).count();
        prop_assert_eq!(duplicates, 0);
    }

    #[test]
    fn canonical_documents_are_fixed_points(canonical in canonical_config()) {
        prop_assert!(canonical.validate().is_ok(), "libxl's own output is schema-valid");
        let again = normalize_libxl_417(&canonical).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&again, &canonical);
        prop_assert_eq!(again.to_libxl_json(), canonical.to_libxl_json());
        let reparsed = DomainConfig::parse(canonical.to_libxl_json().as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(reparsed, canonical);
    }

    #[test]
    fn normalize_is_idempotent(input in libxl_input()) {
        if let Ok(once) = normalize_libxl_417(&input) {
            let twice = normalize_libxl_417(&once).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(twice, once);
        }
    }

    #[test]
    fn listed_documents_round_trip(domains in vec((any::<u32>(), domain_config()), 0..3)) {
        let doc = Document::Listed(domains.into_iter().map(|(domid, config)| ListedDomain { domid, config }).collect());
        let text = doc.to_libxl_json();
        prop_assert!(text.ends_with("]\n\n"), "xl list -l ends with an empty line");
        let back = parse_document(text.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.to_libxl_json(), text);
        prop_assert_eq!(back, doc);
    }
}

/// The generator reaches every device kind, both wrappers' shapes and every b_info union member.
#[test]
fn generator_covers_every_device_kind_and_union_member() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = domain_config();
    let mut kinds = std::collections::BTreeSet::new();
    let mut members = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let c = strategy.new_tree(&mut runner).unwrap().current();
        for a in DeviceArray::ALL {
            if !c.devices(a).is_empty() {
                kinds.insert(a);
            }
        }
        if let Some(u) = c.b_info_view().and_then(|b| b.union("type")) {
            members.insert(u.member);
        }
    }
    assert_eq!(kinds.len(), DeviceArray::ALL.len(), "device kinds seen: {kinds:?}");
    assert_eq!(members.into_iter().collect::<Vec<_>>(), ["hvm", "invalid", "pv", "pvh"]);
}
