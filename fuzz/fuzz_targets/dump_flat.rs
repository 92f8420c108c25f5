#![no_main]
use libfuzzer_sys::fuzz_target;
use xs_adapter::dump::Format;

fuzz_target!(|data: &[u8]| xlsync_fuzz::checks::dump(Format::Flat, data));
