//! Any bytes through the page decoder: never a panic, never an out-of-bounds read.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| speedup_paged::fuzzing::decode_page(data));
