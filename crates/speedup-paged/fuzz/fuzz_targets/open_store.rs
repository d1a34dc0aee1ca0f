//! Any bytes as a store file: opening and reading gives errors, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| speedup_paged::fuzzing::open_store(data));
