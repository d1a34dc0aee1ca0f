//! The fixed hash that places keys in pages.
//!
//! A store written today must find every key after any dependency or compiler upgrade, so
//! the hash cannot be std's `DefaultHasher` (SipHash with unspecified keys, "may change")
//! or ahash (per-process random keys). We use **XXH3-64 with seed 0** over the byte stream
//! the key's [`Hash`] impl writes, with every integer written little-endian and
//! `usize`/`isize` widened to 64 bits, so the stream is the same on every platform.
//! The seed is drawn at random when a store is created and kept in its header, so the same
//! key lands in the same place for the store's whole life, while keys cannot be crafted in
//! advance to collide in a store (stores of format 1 have seed 0).
//! The header records this choice as [`HASH_ALGORITHM`]; `tests::golden_values` pins the
//! output for sample keys so that any drift (in std's `Hash` impls or in xxhash-rust)
//! fails CI instead of silently hiding stored keys.

use std::hash::{Hash, Hasher};

/// Identifier of the key hash recorded in every store header.
pub(crate) const HASH_ALGORITHM: u32 = 1;

/// Keys whose byte stream fits here are hashed without touching the heap.
const INLINE: usize = 64;

/// Hashes `key` with the store's fixed algorithm and the store's `seed`.
pub(crate) fn stable_hash<K: Hash + ?Sized>(key: &K, seed: u64) -> u64 {
    let mut hasher = StableHasher { inline: [0; INLINE], len: 0, spill: Vec::new(), seed };
    key.hash(&mut hasher);
    hasher.digest()
}

/// Collects the canonical byte stream, then digests it with one-shot XXH3
/// (faster than streaming XXH3 for the short keys that dominate).
struct StableHasher {
    inline: [u8; INLINE],
    len: usize,
    spill: Vec<u8>,
    seed: u64,
}

impl StableHasher {
    fn digest(&self) -> u64 {
        // XXH3 defines seed 0 as its unseeded form, so format-1 stores (seed 0) hash as before.
        let bytes = if self.spill.is_empty() { &self.inline[..self.len] } else { &self.spill[..] };
        xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.seed)
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        if self.spill.is_empty() && self.len + bytes.len() <= INLINE {
            self.inline[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
            return;
        }
        if self.spill.is_empty() {
            self.spill.extend_from_slice(&self.inline[..self.len]);
        }
        self.spill.extend_from_slice(bytes);
    }

    fn finish(&self) -> u64 {
        self.digest()
    }

    fn write_u8(&mut self, i: u8) {
        self.write(&[i]);
    }
    fn write_u16(&mut self, i: u16) {
        self.write(&i.to_le_bytes());
    }
    fn write_u32(&mut self, i: u32) {
        self.write(&i.to_le_bytes());
    }
    fn write_u64(&mut self, i: u64) {
        self.write(&i.to_le_bytes());
    }
    fn write_u128(&mut self, i: u128) {
        self.write(&i.to_le_bytes());
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_i8(&mut self, i: i8) {
        self.write_u8(i as u8);
    }
    fn write_i16(&mut self, i: i16) {
        self.write_u16(i as u16);
    }
    fn write_i32(&mut self, i: i32) {
        self.write_u32(i as u32);
    }
    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }
    fn write_i128(&mut self, i: i128) {
        self.write_u128(i as u128);
    }
    fn write_isize(&mut self, i: isize) {
        self.write_u64(i as i64 as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changing any of these values makes every existing store unreadable: never update
    /// them to make this test pass; add a new `HASH_ALGORITHM` and a format migration instead.
    const SEEDED_42: u64 = 0xfc72_f81e_1561_6341;

    #[test]
    fn golden_values() {
        assert_eq!(stable_hash(&1u64, 0), 0x2fbc_5935_64db_792e);
        assert_eq!(stable_hash(&42u64, 0), 0xd5a6_f8c8_38df_27c8);
        assert_eq!(stable_hash(&-5i32, 0), 0x932d_29d1_88c0_83ed);
        assert_eq!(stable_hash("a", 0), 0x13ac_ce35_37d6_b799);
        assert_eq!(stable_hash(&(1u32, -1i64), 0), 0xe4db_34fc_f3c1_ddbe);
        // The stream itself: little-endian integers, str as bytes + 0xff.
        assert_eq!(stable_hash(&42u64, 0), xxhash_rust::xxh3::xxh3_64(&42u64.to_le_bytes()));
        assert_eq!(stable_hash("hello", 0), xxhash_rust::xxh3::xxh3_64(b"hello\xff"));
        assert_eq!(stable_hash(&"hello".to_string(), 0), stable_hash("hello", 0));
        // A store's seed: XXH3-64 with that seed over the same stream.
        let seed = 0x9e37_79b9_7f4a_7c15;
        assert_eq!(
            stable_hash(&42u64, seed),
            xxhash_rust::xxh3::xxh3_64_with_seed(&42u64.to_le_bytes(), seed)
        );
        assert_eq!(stable_hash(&42u64, seed), SEEDED_42);
        // usize is widened, so 32- and 64-bit targets agree.
        assert_eq!(stable_hash(&7usize, 0), stable_hash(&7u64, 0));
    }

    #[test]
    fn long_keys_spill_and_agree_with_one_shot() {
        let long = "x".repeat(1000);
        let mut bytes = long.as_bytes().to_vec();
        bytes.push(0xff);
        assert_eq!(stable_hash(long.as_str(), 0), xxhash_rust::xxh3::xxh3_64(&bytes));
    }
}
