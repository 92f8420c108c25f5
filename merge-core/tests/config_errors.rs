//! Bad input gets a clear, typed error naming the place (line and column for text, a JSON path
//! for values), and never a panic: a table of hand-written cases, then mutated documents.

use merge_core::config::arbitrary::domain_config;
use merge_core::config::{parse_document, parse_document_unvalidated, ConfigError, DomainConfig, ParseWarning};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

const REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../proptest-regressions/merge-core/config_errors.txt");

fn error(text: &str) -> String {
    match parse_document(text.as_bytes()) {
        Ok(doc) => panic!("accepted: {text}\n{doc:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn value_errors_name_the_json_path() {
    let cases: &[(&str, &str)] = &[
        (r#"{"disks": [{"vdev": "xvda"}, {"vdev": 7}]}"#, "disks[1].vdev: expected a string or null, found 7"),
        (r#"{"b_info": {"max_vcpus": "4"}}"#, "b_info.max_vcpus: expected an integer, found \"4\""),
        (
            r#"{"b_info": {"max_vcpus": 2147483648}}"#,
            "b_info.max_vcpus: 2147483648 is out of range for int (-2147483648..=2147483647)",
        ),
        (
            r#"{"b_info": {"max_memkb": -1}}"#,
            "b_info.max_memkb: -1 is out of range for MemKB (0..=18446744073709551615)",
        ),
        (r#"{"b_info": {"max_memkb": 1.5}}"#, "b_info.max_memkb: expected a non-negative integer, found 1.5"),
        (
            r#"{"c_info": {"uuid": "nope"}}"#,
            "c_info.uuid: \"nope\" is not a UUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
        ),
        (
            r#"{"nics": [{"mac": "00:16:3e"}]}"#,
            "nics[0].mac: \"00:16:3e\" is not a MAC address (expected xx:xx:xx:xx:xx:xx)",
        ),
        (r#"{"c_info": {"hap": "yes"}}"#, "c_info.hap: expected \"True\", \"False\" or \"<default>\", found \"yes\""),
        (
            r#"{"b_info": {"avail_vcpus": [0, -1]}}"#,
            "b_info.avail_vcpus[1]: -1 is out of range for a bitmap index (0..=2147483646)",
        ),
        (
            r#"{"b_info": {"type.pv": {}, "type.hvm": {}}}"#,
            "b_info.type.hvm: a second keyed-union member after \"type.pv\"; libxl 4.17 aborts on such a document",
        ),
        (r#"{"b_info": {"type.pv": []}}"#, "b_info.type.pv: expected an object, found an array"),
        (
            r#"{"b_info": {"type.pv": {"bootloader_args": ["-q", 3]}}}"#,
            "b_info.type.pv.bootloader_args[1]: expected a string, found 3",
        ),
        (
            r#"{"vsnds": [{"pcms": [{"streams": [{"params": {"sample_rates": [48000, "x"]}}]}]}]}"#,
            "vsnds[0].pcms[0].streams[0].params.sample_rates[1]: expected a non-negative integer, found \"x\"",
        ),
        (r#"{"c_info": {"xsdata": {"a": 1}}}"#, "c_info.xsdata.a: expected a string or null, found 1"),
        (
            r#"{"usbdevs": [{"type.hostdev": {"hostbus": 256}}]}"#,
            "usbdevs[0].type.hostdev.hostbus: 256 is out of range for uint8 (0..=255)",
        ),
        (
            r#"{"channels": [{"connection.socket": {"path": false}}]}"#,
            "channels[0].connection.socket.path: expected a string or null, found false",
        ),
        (r#"{"c_info": {"name": "x"}, "disks": {}}"#, "disks: expected an array, found an object"),
        (r#"{"on_reboot": 1}"#, "on_reboot: expected a string (an enum value) or null, found 1"),
        (
            r#"{"b_info": {"type.hvm": {"ms_vm_genid": [1, 2]}}}"#,
            "b_info.type.hvm.ms_vm_genid: expected an array of 16 integers, found an array",
        ),
        (
            r#"{"c_info": {"name": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "domid": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}"#,
            "c_info.domid: expected a non-negative integer, found \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"…",
        ),
        ("5", "(document root): expected a libxl_domain_config object or an `xl list -l` array, found 5"),
        (r#"[{"domid": 1}]"#, "[0]: missing \"config\""),
        (r#"[{"domid": -1, "config": {}}]"#, "[0].domid: expected a domid (0..=4294967295), found -1"),
        (r#"[{"domid": 1, "config": {}, "extra": 0}]"#, "[0].extra: unexpected key in an `xl list -l` element"),
        (
            r#"[{"domid": 1, "config": {"disks": [{"vdev": 7}]}}]"#,
            "[0].config.disks[0].vdev: expected a string or null, found 7",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), *expected, "{text}");
    }
}

#[test]
fn text_errors_have_line_and_column() {
    match parse_document(b"{\n    \"c_info\": {\n        \"name\": \"x\",\n    }\n}\n") {
        Err(ConfigError::Syntax { line: 4, column, .. }) => assert!(column >= 5, "{column}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parse_document(b"{\"c_info\": {\"name\": \"caf\xe9\"}}").unwrap_err().to_string(),
        "invalid UTF-8 at line 1, column 25 (byte offset 24)"
    );
    assert_eq!(parse_document(b"").unwrap_err(), ConfigError::Empty);
    assert_eq!(parse_document(b"\0").unwrap_err(), ConfigError::Empty);
    assert!(matches!(parse_document(b"{} {}"), Err(ConfigError::Syntax { line: 1, column: 4, .. })));
    assert!(matches!(DomainConfig::parse(b"[]"), Err(ConfigError::Invalid { .. })));
}

#[test]
fn tolerated_input_is_reported() {
    let text = br#"{"c_info": {"name": "a", "name": "b", "type": "PVX"}, "b_info": {"type.pv": {}}, "future_key": [1]}
"#;
    let mut bytes = text.to_vec();
    bytes.extend_from_slice(b"\0trailing");
    let config = DomainConfig::parse(&bytes).unwrap();
    assert_eq!(config.name(), Some("a"), "the first duplicate wins, as in libxl");
    let warnings: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "8 bytes after the NUL terminator are ignored",
            "c_info.name: duplicate key; the first occurrence is kept",
            "c_info.type: \"PVX\" is not a libxl 4.17 spelling; kept as is",
        ]
    );
    assert!(config.warnings().iter().any(|w| matches!(w, ParseWarning::UnknownEnumValue { .. })));
    assert_eq!(config.as_object()["future_key"], serde_json::json!([1]), "unknown keys are kept");
    let printed = config.to_libxl_json();
    assert!(printed.contains("\"type\": \"PVX\""), "unknown spellings are kept as written");
}

#[test]
fn unvalidated_parsing_accepts_what_libxl_reads() {
    let doc =
        parse_document_unvalidated(br#"{"disks": [{"vdev": 7}], "b_info": {"type.pv": {}, "type.hvm": {}}}"#).unwrap();
    assert_eq!(doc.configs().len(), 1);
}

proptest! {
    #![proptest_config(Config {
        cases: std::env::var("XLSYNC_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..Config::default()
    })]

    /// Cutting, flipping or splicing bytes of a valid document never panics; an error always
    /// renders, and one found after reading names a JSON path.
    #[test]
    fn mutated_documents_never_panic(config in domain_config(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4)) {
        let mut bytes = config.to_libxl_json().into_bytes();
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, byte),
            }
        }
        for result in [parse_document(&bytes), parse_document_unvalidated(&bytes)] {
            match result {
                Ok(doc) => {
                    for c in doc.configs() {
                        let _ = merge_core::config::normalize_libxl_417(c);
                    }
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    /// Arbitrary bytes, too.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_document(&bytes).map(|d| d.to_libxl_json());
    }
}
