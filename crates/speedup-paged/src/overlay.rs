//! The write overlay of a [`DiskDict`](crate::DiskDict): writes not yet merged into pages.
//!
//! Records (archived keys and values) go into one arena, so an insert costs no allocation
//! of its own; entries sit in a `Vec`, found through a hash table of indices keyed by the
//! stable hash (each key is hashed once). Memory is about 80 bytes per pending `u64 -> u64`
//! write; the dict merges once `size_limit × max_pages` writes are pending, or when rewrites
//! of the same keys have left more dead arena bytes than live ones.

use std::marker::PhantomData;

use hashbrown::HashTable;
use rkyv::util::AlignedVec;

use crate::error::Result;
use crate::record::{self, Span, Storable};

/// The overlay is merged once its records take this many bytes, whatever the options: it
/// bounds memory for large values, and keeps record offsets far below 4 GiB (they are u32).
const MAX_OVERLAY_BYTES: usize = 256 << 20;

#[derive(Debug)]
pub(crate) struct Pending<K> {
    pub(crate) hash: u64,
    pub(crate) key: K,
    /// Arena spans of the key and value records; `None` is a removal.
    pub(crate) put: Option<(Span, Span)>,
}

/// Invariant: every `put` span of an entry holds a record archived from a `K` (key) or a
/// `V` (value) by [`record::append`], so the typed accessors below are safe.
#[derive(Debug)]
pub(crate) struct Overlay<K, V> {
    entries: Vec<Pending<K>>,
    index: HashTable<u32>,
    arena: AlignedVec,
    dead_bytes: usize,
    _values: PhantomData<fn() -> V>,
}

impl<K, V> Default for Overlay<K, V> {
    fn default() -> Self {
        Overlay {
            entries: Vec::new(),
            index: HashTable::new(),
            arena: AlignedVec::new(),
            dead_bytes: 0,
            _values: PhantomData,
        }
    }
}

impl<K: Storable + Eq, V: Storable> Overlay<K, V> {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the overlay should be merged into pages now.
    pub(crate) fn is_full(&self, max_entries: usize) -> bool {
        self.entries.len() > max_entries
            || self.arena.len() > MAX_OVERLAY_BYTES
            || (self.dead_bytes > 1 << 20 && self.dead_bytes > self.arena.len() / 2)
    }

    pub(crate) fn find(&self, hash: u64, key: &K) -> Option<&Pending<K>> {
        if self.entries.is_empty() {
            return None;
        }
        let i = self.index.find(hash, |&i| {
            let p = &self.entries[i as usize];
            p.hash == hash && p.key == *key
        })?;
        Some(&self.entries[*i as usize])
    }

    /// The bytes of a record of this overlay.
    pub(crate) fn bytes(&self, span: Span) -> &[u8] {
        &self.arena[span.range()]
    }

    /// The archived key of a pending write.
    pub(crate) fn key(&self, put: (Span, Span)) -> &K::Archived {
        // SAFETY: `put` spans hold records that `put` archived from a `K` and a `V` (the
        // struct's invariant); the arena is not changed while `&self` is borrowed. Caught
        // by `tests/model.rs` if broken.
        unsafe { record::archived::<K>(self.bytes(put.0)) }
    }

    /// The archived value of a pending write.
    pub(crate) fn value(&self, put: (Span, Span)) -> &V::Archived {
        // SAFETY: as in `key`.
        unsafe { record::archived::<V>(self.bytes(put.1)) }
    }

    /// Records `key -> value` (archiving both into the arena).
    pub(crate) fn put(&mut self, hash: u64, key: K, value: &V) -> Result<()> {
        let before = self.arena.len();
        let key_span = record::append(&mut self.arena, &key)?;
        let value_span = match record::append(&mut self.arena, value) {
            Ok(span) => span,
            Err(e) => {
                self.arena.resize(before, 0);
                return Err(e);
            }
        };
        self.set(hash, key, Some((key_span, value_span)));
        Ok(())
    }

    /// Records the removal of a key that is only on disk (the overlay keeps the owned key).
    pub(crate) fn tombstone(&mut self, hash: u64, key: K) {
        self.set(hash, key, None);
    }

    fn set(&mut self, hash: u64, key: K, put: Option<(Span, Span)>) {
        let entries = &mut self.entries;
        let found = self.index.find(hash, |&i| {
            let p = &entries[i as usize];
            p.hash == hash && p.key == key
        });
        match found.copied() {
            Some(i) => {
                let p = &mut entries[i as usize];
                if let Some((k, v)) = std::mem::replace(&mut p.put, put) {
                    self.dead_bytes += (k.len + v.len) as usize;
                }
            }
            None => {
                let i = entries.len() as u32;
                entries.push(Pending { hash, key, put });
                let entries = &self.entries;
                self.index.insert_unique(hash, i, |&j| entries[j as usize].hash);
            }
        }
    }

    /// Sorts the entries by `order` for merging; the index is emptied (see [`Overlay::restore`]).
    pub(crate) fn sort_for_merge<O: Ord>(&mut self, order: impl Fn(&Pending<K>) -> O) {
        self.index.clear();
        self.entries.sort_unstable_by_key(order);
    }

    /// The entries, in their current order.
    pub(crate) fn entries(&self) -> &[Pending<K>] {
        &self.entries
    }

    /// Turns the pending write of `key`, if any, into a removal.
    pub(crate) fn tombstone_pending(&mut self, hash: u64, key: &K) {
        let entries = &mut self.entries;
        let found = self.index.find(hash, |&i| {
            let p = &entries[i as usize];
            p.hash == hash && p.key == *key
        });
        let Some(&i) = found else { return };
        if let Some((k, v)) = entries[i as usize].put.take() {
            self.dead_bytes += (k.len + v.len) as usize;
        }
    }

    /// After a merge stopped early: keep the entries from `first_unmerged` on, re-indexed.
    pub(crate) fn restore(&mut self, first_unmerged: usize) {
        self.entries.drain(..first_unmerged);
        let entries = &self.entries;
        for (i, p) in entries.iter().enumerate() {
            self.index.insert_unique(p.hash, i as u32, |&j| entries[j as usize].hash);
        }
    }

    /// After a complete merge: empty, keeping the allocations for the next round.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.index.clear();
        self.arena.clear();
        self.dead_bytes = 0;
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Pending<K>> {
        self.entries.iter()
    }
}
