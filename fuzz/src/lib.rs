//! Fuzz targets for xlsync. The laws live in [`checks`], which the stable replay test
//! `xs-adapter/tests/fuzz_regressions.rs` also compiles (by `#[path]`), so a committed crasher
//! is replayed through exactly the assertions that found it.

pub mod checks;
