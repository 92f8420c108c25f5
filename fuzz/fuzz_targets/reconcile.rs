#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xlsync_fuzz::checks::reconcile_both(data));
