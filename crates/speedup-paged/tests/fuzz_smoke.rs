//! The fuzz entry points on a fixed corpus, so CI keeps them compiling and sound; the
//! real fuzzing runs by hand (see `fuzz/Cargo.toml`).
#![cfg(feature = "fuzzing")]

use speedup_paged::fuzzing::{decode_page, open_store};

#[test]
fn fuzz_entry_points_survive_a_corpus() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut corpus: Vec<Vec<u8>> = vec![vec![], b"SPPG".to_vec(), vec![0xff; 64], b"SPDPAGED".to_vec()];
    for name in ["format1.spdict", "format1-u64.spdict", "format1.splist"] {
        let bytes = std::fs::read(fixtures.join(name)).unwrap();
        corpus.push(bytes.clone());
        let mut x = 0x9E37_79B9u64;
        for _ in 0..20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut flipped = bytes.clone();
            let at = x as usize % flipped.len();
            flipped[at] ^= 1 << (x % 8);
            corpus.push(flipped);
        }
        corpus.push(bytes[8192..].to_vec()); // pages without headers
    }
    for input in &corpus {
        decode_page(input);
        open_store(input);
    }
}
