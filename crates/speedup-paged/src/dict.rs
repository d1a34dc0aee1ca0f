//! [`DiskDict`]: a hash map paged to disk with extendible hashing.
//!
//! Keys are placed by [`stable_hash`]: the low `global_depth` bits pick a directory slot,
//! which names a bucket; a bucket owns every key whose low `local_depth` bits equal its
//! `prefix`, and stores them in one page sorted by hash. Writes go to a bounded overlay
//! first; [`DiskDict::flush`] (or a full overlay) merges the overlay into the pages it
//! touches, copy-on-write, splitting any page that grows past `size_limit` entries.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::OnceLock;

use rkyv::util::AlignedVec;

use crate::error::{Error, Result};
use crate::extent::Extent;
use crate::file::StoreFile;
use crate::hash::stable_hash;
use crate::header::{HeaderFallback, Identity, Kind};
use crate::options::Options;
use crate::overlay::{Overlay, Pending};
use crate::page::{self, Layout, MAX_PAGE_BYTES, PageView};
use crate::record::{self, RECORD_ALIGN, Storable};
use crate::root::{self, BucketEntry};
use crate::store::{self, Store};
use crate::validated::DictPage;

/// File extension of dict stores: `<location>/<basename>.spdict`.
pub const DICT_EXTENSION: &str = "spdict";
/// Directory growth never goes past this (2^30 slots), whatever the store's size.
const MAX_DEPTH: u8 = 30;
/// The directory may be 2^DEPTH_SLACK times deeper than the pages the entries need
/// (see [`depth_cap`]).
const DEPTH_SLACK: u32 = 3;

/// A dictionary whose entries live in pages of a memory-mapped file, with bounded RAM.
///
/// The original PySpeedup's `DiskDict`, done as a storage engine: O(1) expected `get`/`insert`/`remove`,
/// zero-copy reads ([`DiskDict::get_archived`]), crash-safe [`flush`](DiskDict::flush), and a
/// lock so that only one handle at a time can open a store.
///
/// # Examples
///
/// The original's example, with the context manager turned into `close()`:
///
/// ```
/// use speedup_paged::{DiskDict, Options};
/// # let dir = tempfile::tempdir().unwrap();
/// let opts = Options::new().location(dir.path());
/// let mut d: DiskDict<u64, String> = DiskDict::open_with("test", &opts)?;
/// for i in 0..10u64 {
///     d.insert(i, char::from(b'a' + i as u8).to_string())?;
/// }
/// assert_eq!(d.get(&3)?.as_deref(), Some("d"));
/// d.close()?;
///
/// // Reopening the same basename and location restores every flushed entry.
/// let d: DiskDict<u64, String> = DiskDict::open_with("test", &opts)?;
/// assert_eq!(d.len(), 10);
/// assert_eq!(d.get(&9)?.as_deref(), Some("j"));
/// # Ok::<(), speedup_paged::Error>(())
/// ```
///
/// # Thread safety
///
/// `DiskDict` is `Send + Sync`. Reads take `&self` and never block each other (no lock on
/// the read path); writes take `&mut self`. To share one dict between threads that write,
/// wrap it in a `RwLock`; for read-only sharing an `Arc` is enough.
pub struct DiskDict<K: Storable + Hash + Eq, V: Storable> {
    file: StoreFile,
    size_limit: usize,
    max_pending: usize,
    global_depth: u8,
    /// 2^global_depth slots, each a bucket index.
    dir: Vec<u32>,
    buckets: Vec<Bucket>,
    overlay: Overlay<K, V>,
    len: u64,
    /// Something changed since the last commit.
    dirty: bool,
    /// Seed of the key hash, from the header (random per store).
    hash_seed: u64,
    _types: PhantomData<fn() -> (K, V)>,
}

struct Bucket {
    local_depth: u8,
    prefix: u64,
    /// `len == 0`: no page (the bucket is empty).
    page: Extent,
    count: u32,
    /// Set once the page passed its checksum and record validation (or was written by us).
    layout: OnceLock<Layout>,
}

impl<K: Storable + Hash + Eq, V: Storable> fmt::Debug for DiskDict<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskDict")
            .field("path", &self.file.path())
            .field("len", &self.len)
            .field("pages", &self.buckets.len())
            .field("pending", &self.overlay.len())
            .finish()
    }
}

impl<K, V> DiskDict<K, V>
where
    K: Storable + Hash + Eq,
    V: Storable,
{
    /// Opens (or creates) the store `name` in `~/.PySpeedup` with default [`Options`].
    ///
    /// # Errors
    ///
    /// See [`DiskDict::open_with`].
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::new())
    }

    /// Opens (or creates) the store `name` in `opts`' location: the file
    /// `<location>/<name>.spdict`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for an empty name or one with a path separator;
    /// [`Error::LocationMissing`] / [`Error::NoHome`] / [`Error::Io`] if the folder cannot be
    /// used; [`Error::Locked`] if another handle has it open; [`Error::NotAStore`],
    /// [`Error::UnsupportedFormat`], [`Error::TypeMismatch`] or [`Error::Corrupt`] if the
    /// file is not a readable dict of these types.
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        let identity = Identity {
            current: format!("DiskDict<{}, {}>", record::type_identity::<K>(), record::type_identity::<V>()),
            format_1: format!(
                "DiskDict<{}, {}>",
                record::legacy_type_label::<K>(),
                record::legacy_type_label::<V>()
            ),
        };
        let mut file = store::open_file(name, opts, Kind::Dict, &identity)?;
        let header = file.header().clone();
        let path = file.path().to_path_buf();
        let buckets = if header.root.len == 0 {
            vec![Bucket::empty(0, 0)]
        } else {
            root::decode_dict(file.read_checked(header.root)?, MAX_DEPTH)
                .map_err(|e| Error::corrupt(&path, e))?
                .into_iter()
                .map(|b| Bucket {
                    local_depth: b.local_depth,
                    prefix: b.prefix,
                    page: b.page,
                    count: b.count,
                    layout: OnceLock::new(),
                })
                .collect()
        };
        store::check_count(&file, buckets.iter().map(|b| u64::from(b.count)).sum())?;
        // Pages must be real (inside the file, not overlapping) before their depths are
        // trusted to size the directory.
        file.set_live(buckets.iter().map(|b| b.page).filter(|p| p.len > 0))?;
        // A directory never has more slots than twice the file's bytes (see `depth_cap`), so a
        // damaged or crafted root cannot make this allocate more than the file justifies.
        let slots: u64 = (2 * file.len()).max(1 << 20);
        let depth_limit = (u64::BITS - 1 - slots.leading_zeros()).min(u32::from(MAX_DEPTH)) as u8;
        let (global_depth, dir) =
            build_directory(&buckets, depth_limit).map_err(|e| Error::corrupt(&path, e))?;
        Ok(DiskDict {
            file,
            size_limit: opts.get_size_limit(),
            max_pending: opts.get_size_limit().saturating_mul(opts.get_max_pages()),
            global_depth,
            dir,
            buckets,
            overlay: Overlay::default(),
            len: header.entries,
            dirty: false,
            hash_seed: header.hash_seed,
            _types: PhantomData,
        })
    }

    /// Set if this store opened from its older header slot because the newest one was
    /// damaged (a torn write or a bit flip): the entries of the last flush before it are
    /// not in the store. A crash in the middle of a flush does this by design (that flush
    /// never returned `Ok`); after a flush that did return `Ok`, it means the file was
    /// damaged since. Also logged with `tracing::warn!`. The next flush repairs the slot.
    pub fn header_fallback(&self) -> Option<&HeaderFallback> {
        self.file.fallback()
    }

    /// Number of entries. O(1), no I/O.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the dict has no entries. O(1), no I/O.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The store file's path.
    pub fn path(&self) -> &std::path::Path {
        self.file.path()
    }

    /// The value for `key`, deserialized. `Ok(None)` if the key is absent.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the key's page fails its checksum or validation.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        match self.get_archived(key)? {
            Some(archived) => record::to_owned::<V>(archived).map(Some),
            None => Ok(None),
        }
    }

    /// The value for `key`, borrowed in its archived form straight from the mapped page
    /// (or from the write overlay): no copy, no deserialization.
    ///
    /// ```
    /// # use speedup_paged::{DiskDict, Options};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let opts = Options::new().location(dir.path());
    /// let mut d: DiskDict<u32, String> = DiskDict::open_with("zc", &opts)?;
    /// d.insert(1, "one".repeat(100))?;
    /// d.flush()?;
    /// let archived = d.get_archived(&1)?.expect("present");
    /// assert_eq!(archived.len(), 300); // an `ArchivedString` borrowed from the page
    /// # Ok::<(), speedup_paged::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`DiskDict::get`].
    pub fn get_archived(&self, key: &K) -> Result<Option<&V::Archived>> {
        let hash = stable_hash(key, self.hash_seed);
        if let Some(p) = self.overlay.find(hash, key) {
            return Ok(self.pending_value(p));
        }
        Ok(self.find_on_disk(hash, key)?.map(|(_, value)| value))
    }

    /// Whether `key` is present.
    ///
    /// # Errors
    ///
    /// As [`DiskDict::get`].
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        Ok(self.get_archived(key)?.is_some())
    }

    /// Inserts `value` under `key` and returns the value it replaces.
    ///
    /// The entry is readable at once and durable after the next [`flush`](DiskDict::flush).
    ///
    /// # Errors
    ///
    /// [`Error::Serialize`] if the key or value cannot be archived; I/O errors
    /// ([`Error::Io`], [`Error::DiskFull`]) when the write overlay is full and writing it out
    /// to make room fails. On any error nothing changed: the dict holds what it held before
    /// the call, and every earlier write is still there (retry, or `flush` once there is
    /// room on the disk).
    pub fn insert(&mut self, key: K, value: V) -> Result<Option<V>> {
        self.make_room()?;
        let hash = stable_hash(&key, self.hash_seed);
        let old = self.owned_by_hash(hash, &key)?;
        self.overlay.put(hash, key, &value)?;
        if old.is_none() {
            self.len += 1;
        }
        self.dirty = true;
        Ok(old)
    }

    /// Inserts without returning (so without deserializing) the old value.
    fn insert_only(&mut self, key: K, value: V) -> Result<()> {
        self.make_room()?;
        let hash = stable_hash(&key, self.hash_seed);
        let existed = self.overlay.find(hash, &key).map(|p| p.put.is_some());
        let existed = match existed {
            Some(live) => live,
            None => self.find_on_disk(hash, &key)?.is_some(),
        };
        self.overlay.put(hash, key, &value)?;
        if !existed {
            self.len += 1;
        }
        self.dirty = true;
        Ok(())
    }

    /// Removes `key` and returns its value, if it was present.
    ///
    /// # Errors
    ///
    /// As [`DiskDict::insert`].
    pub fn remove(&mut self, key: &K) -> Result<Option<V>> {
        self.make_room()?;
        let hash = stable_hash(key, self.hash_seed);
        let old = if let Some(p) = self.overlay.find(hash, key) {
            let Some(value) = self.pending_value(p) else {
                return Ok(None); // already removed
            };
            let old = record::to_owned::<V>(value)?;
            self.overlay.tombstone_pending(hash, key); // a tombstone that keeps its owned key
            old
        } else {
            let Some((stored_key, archived)) = self.find_on_disk(hash, key)? else {
                return Ok(None);
            };
            let old = record::to_owned::<V>(archived)?;
            self.overlay.tombstone(hash, stored_key);
            old
        };
        self.len -= 1;
        self.dirty = true;
        Ok(Some(old))
    }

    /// Iterates over all keys, in no particular order (values are not deserialized).
    pub fn keys(&self) -> Keys<'_, K, V> {
        Keys { inner: self.iter() }
    }

    /// Iterates over all values, in no particular order.
    pub fn values(&self) -> Values<'_, K, V> {
        Values { inner: self.iter() }
    }

    /// The entry for `key`, to read it or insert it in one step.
    ///
    /// ```
    /// # use speedup_paged::{DiskDict, Options};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut words: DiskDict<String, u32> = DiskDict::open_with("words", &Options::new().location(dir.path()))?;
    /// assert_eq!(words.entry("a".into()).or_insert(1)?, 1);
    /// assert_eq!(words.entry("a".into()).or_insert(5)?, 1); // already there
    /// assert_eq!(words.entry("b".into()).or_default()?, 0);
    /// # Ok::<(), speedup_paged::Error>(())
    /// ```
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        Entry { dict: self, key }
    }

    /// Inserts every pair of `pairs`, in order (later pairs win, as in `HashMap::extend`).
    ///
    /// # Errors
    ///
    /// As [`DiskDict::insert`]: the first error stops the extension; the pairs before it
    /// are in the dict, the failed one and those after it are not.
    pub fn extend(&mut self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        for (key, value) in pairs {
            self.insert_only(key, value)?;
        }
        Ok(())
    }

    /// Removes every entry. No I/O: the pages are freed, and the next
    /// [`flush`](DiskDict::flush) makes the empty dict durable.
    pub fn clear(&mut self) {
        for bucket in std::mem::take(&mut self.buckets) {
            self.file.release(bucket.page);
        }
        self.buckets.push(Bucket::empty(0, 0));
        (self.global_depth, self.dir) = (0, vec![0]);
        self.overlay.clear();
        self.len = 0;
        self.dirty = true;
    }

    /// Keeps only the entries for which `keep(&key, &value)` returns `true`.
    ///
    /// Unlike `HashMap::retain`, `keep` sees the value by shared reference: a value lives
    /// on disk, and changing it means [`insert`](DiskDict::insert)ing it again.
    ///
    /// # Errors
    ///
    /// As [`DiskDict::flush`] (pending writes are merged into their pages first) and
    /// [`DiskDict::remove`]. On an error, the entries visited so far have been filtered;
    /// the rest are unchanged.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) -> Result<()> {
        // With the overlay merged, every entry is in exactly one page. Removing only adds
        // tombstones, which never split a bucket, so bucket indices stay valid.
        self.merge_overlay()?;
        for bucket in 0..self.buckets.len() {
            let mut doomed = Vec::new();
            if let Some(view) = self.page(bucket)? {
                for i in 0..view.len() {
                    let key = record::to_owned::<K>(view.key(i))?;
                    if self.overlay.find(view.hash(i), &key).is_some() {
                        continue; // removed by an earlier step of this call
                    }
                    let value = record::to_owned::<V>(view.value(i))?;
                    if !keep(&key, &value) {
                        doomed.push(key);
                    }
                }
            }
            for key in doomed {
                self.remove(&key)?;
            }
        }
        Ok(())
    }

    /// Iterates over all entries, in no particular order, deserialized.
    ///
    /// A page that fails validation yields one `Err` and the iteration goes on with the next.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter { dict: self, bucket: 0, index: 0, overlay: self.overlay.iter() }
    }

    /// Makes every entry written so far durable: merges the overlay into pages, writes them
    /// copy-on-write, then switches the header atomically (two `fdatasync`s). When it
    /// returns `Ok`, a crash or power cut loses nothing written before the call.
    ///
    /// # Errors
    ///
    /// I/O errors ([`Error::Io`], [`Error::DiskFull`]). The store on disk is then still the
    /// one of the last successful flush, and the unflushed entries are still in memory.
    pub fn flush(&mut self) -> Result<()> {
        self.flush_store()
    }

    /// Flushes and closes the store, reporting any error (dropping a `DiskDict` also flushes,
    /// but can only log an error).
    ///
    /// # Errors
    ///
    /// As [`DiskDict::flush`].
    pub fn close(mut self) -> Result<()> {
        self.close_store()
    }

    /// Closes the store **without** flushing: every change since the last successful flush
    /// is dropped, and the store reopens exactly as that flush left it (a rollback, and
    /// what a crash at this instant would leave).
    pub fn discard(mut self) {
        self.discard_store();
    }

    /// The archived value of a pending write (`None` for a removal).
    fn pending_value<'a>(&'a self, p: &Pending<K>) -> Option<&'a V::Archived> {
        p.put.map(|put| self.overlay.value(put))
    }

    fn owned_by_hash(&self, hash: u64, key: &K) -> Result<Option<V>> {
        let archived = match self.overlay.find(hash, key) {
            Some(p) => self.pending_value(p),
            None => self.find_on_disk(hash, key)?.map(|(_, value)| value),
        };
        archived.map(record::to_owned::<V>).transpose()
    }

    /// The stored copy of `key` and its archived value, from the key's page.
    fn find_on_disk(&self, hash: u64, key: &K) -> Result<Option<(K, &V::Archived)>> {
        let bucket = self.bucket_of(hash);
        let Some(view) = self.page(bucket)? else {
            return Ok(None);
        };
        let mut i = view.lower_bound(hash);
        while i < view.len() && view.hash(i) == hash {
            let stored = record::to_owned::<K>(view.key(i))?;
            if stored == *key {
                return Ok(Some((stored, view.value(i))));
            }
            i += 1;
        }
        Ok(None)
    }

    fn bucket_of(&self, hash: u64) -> usize {
        let mask = (1u64 << self.global_depth) - 1;
        self.dir[(hash & mask) as usize] as usize
    }

    /// The page of `bucket`, validated on first use (checksum, structure, every record).
    fn page(&self, bucket: usize) -> Result<Option<DictPage<'_, K, V>>> {
        let b = &self.buckets[bucket];
        if b.page.len == 0 {
            return Ok(None);
        }
        if let Some(&layout) = b.layout.get() {
            let view = PageView::known(self.file.read(b.page)?, b.count as usize, 2, layout);
            // SAFETY: `layout` is set only after the checks below passed on these bytes, or
            // by `merge_bucket` for a page it encoded from `K` and `V` records; extents are
            // never rewritten while referenced (see `file.rs`, "Why the mapping is sound").
            // Caught by `tests/model.rs` (reads after splits and flushes) and
            // `tests/errors.rs::bit_flips_are_detected` if a page were trusted unchecked.
            return Ok(Some(unsafe { DictPage::trusted(view) }));
        }
        let bytes = self.file.read_checked(b.page)?;
        let corrupt =
            |why: String| Error::corrupt(self.file.path(), format!("page of bucket {bucket}: {why}"));
        let view = PageView::parse(bytes, 2, true).map_err(corrupt)?;
        if view.len() != b.count as usize {
            return Err(corrupt(format!("holds {} entries, the root says {}", view.len(), b.count)));
        }
        let mask = (1u64 << b.local_depth) - 1;
        if let Some(i) = (0..view.len()).find(|&i| view.hash(i) & mask != b.prefix) {
            return Err(corrupt(format!("entry {i} belongs to another bucket")));
        }
        let page = DictPage::validate(view).map_err(corrupt)?;
        // Each stored hash must be the key's hash under this store's seed: otherwise lookups
        // would silently miss keys that iteration still shows (a changed seed or hash, or a
        // key type whose `Hash` impl changed since the store was written).
        for i in 0..page.len() {
            let key = record::to_owned::<K>(page.key(i))?;
            if stable_hash(&key, self.hash_seed) != page.hash(i) {
                return Err(corrupt(format!(
                    "entry {i}'s stored hash is not its key's: the file was altered, or the key type's Hash impl changed since it was written"
                )));
            }
        }
        // Racing readers may validate the same page twice; both reach the same verdict.
        let _ = b.layout.set(view.layout());
        Ok(Some(page))
    }

    /// Writes the overlay out if it is full, *before* a mutation, so that a failure leaves
    /// the dict unchanged and the overlay never grows past its bound.
    fn make_room(&mut self) -> Result<()> {
        if self.overlay.is_full(self.max_pending) {
            self.merge_overlay()?;
        }
        Ok(())
    }

    /// Merges every pending write into its bucket's page. On error, the writes not yet
    /// merged stay in the overlay, so nothing is lost and a retry continues.
    fn merge_overlay(&mut self) -> Result<()> {
        let _span =
            tracing::debug_span!("DiskDict::merge", pending = self.overlay.len(), pages = self.buckets.len())
                .entered();
        let mut overlay = std::mem::take(&mut self.overlay);
        overlay.sort_for_merge(|p| (self.bucket_of(p.hash), p.hash));
        let entries = overlay.entries();
        let mut start = 0;
        let mut failure = None;
        while start < entries.len() {
            // Splitting a bucket only re-points that bucket's slots, so the buckets of the
            // entries still to merge are the ones they were sorted by.
            let bucket = self.bucket_of(entries[start].hash);
            let end = start + entries[start..].partition_point(|p| self.bucket_of(p.hash) == bucket);
            if let Err(e) = self.merge_bucket(bucket, &overlay, &entries[start..end]) {
                failure = Some(e);
                break;
            }
            start = end;
        }
        match failure {
            Some(e) => {
                overlay.restore(start);
                self.overlay = overlay;
                Err(e)
            }
            None => {
                overlay.clear();
                self.overlay = overlay;
                Ok(())
            }
        }
    }

    fn merge_bucket(&mut self, bucket: usize, overlay: &Overlay<K, V>, ops: &[Pending<K>]) -> Result<()> {
        let (local_depth, prefix) = (self.buckets[bucket].local_depth, self.buckets[bucket].prefix);
        // The whole page is read and rewritten: fetch it in one go.
        self.file.prefetch(self.buckets[bucket].page);
        let groups = {
            let view = self.page(bucket)?;
            let merged = merge_entries(view, overlay, ops)?;
            let budget = bucket_budget(self.len, self.size_limit);
            split(merged, local_depth, prefix, (self.size_limit, self.len), self.buckets.len(), budget)
                .into_iter()
                .map(|g| {
                    let bytes = (!g.entries.is_empty()).then(|| encode_group(&g.entries)).transpose();
                    let bytes = bytes.map_err(|reason| Error::Serialize {
                        reason: format!("{reason}: its keys' hashes cannot be told apart (a Hash that ignores the key?); store smaller values or use keys that hash apart"),
                    })?;
                    Ok((g.local_depth, g.prefix, g.entries.len() as u32, bytes))
                })
                .collect::<Result<Vec<_>>>()?
        };
        let mut written = Vec::with_capacity(groups.len());
        for (_, _, _, bytes) in &groups {
            let extent = match bytes {
                Some(bytes) => self.file.write(bytes),
                None => Ok(Extent::default()),
            };
            match extent {
                Ok(extent) => written.push(extent),
                Err(e) => {
                    written.into_iter().for_each(|x| self.file.release(x));
                    return Err(e);
                }
            }
        }
        let old = self.buckets[bucket].page;
        self.file.release(old);
        for (i, ((depth, prefix, count, bytes), page)) in groups.into_iter().zip(written).enumerate() {
            // Our own encoding: its layout is known without validating it again on read.
            let layout = OnceLock::new();
            if let Some(view) = bytes.as_ref().and_then(|b| PageView::parse(b, 2, true).ok()) {
                let _ = layout.set(view.layout());
            }
            let b = Bucket { local_depth: depth, prefix, page, count, layout };
            let index = if i == 0 {
                self.buckets[bucket] = b;
                bucket
            } else {
                self.buckets.push(b);
                self.buckets.len() - 1
            };
            self.point_directory(index);
        }
        Ok(())
    }

    /// Points every directory slot of bucket `index` at it, doubling the directory as needed.
    fn point_directory(&mut self, index: usize) {
        let (depth, prefix) = (self.buckets[index].local_depth, self.buckets[index].prefix);
        while self.global_depth < depth {
            self.dir.extend_from_within(..);
            self.global_depth += 1;
        }
        for j in 0..1u64 << (self.global_depth - depth) {
            self.dir[(prefix | (j << depth)) as usize] = index as u32;
        }
    }
}

/// One merged entry: hash, key record, value record (borrowed from a page or the overlay).
type Merged<'a> = (u64, &'a [u8], &'a [u8]);

/// The page's entries overridden by the overlay, in hash order.
fn merge_entries<'a, K: Storable + Eq, V: Storable>(
    view: Option<DictPage<'a, K, V>>,
    overlay: &'a Overlay<K, V>,
    ops: &'a [Pending<K>],
) -> Result<Vec<Merged<'a>>> {
    let disk_len = view.map_or(0, |v| v.len());
    let mut out = Vec::with_capacity(disk_len + ops.len());
    let mut next_op = 0;
    let emit_op = |p: &'a Pending<K>, out: &mut Vec<Merged<'a>>| {
        if let Some((key, value)) = p.put {
            out.push((p.hash, overlay.bytes(key), overlay.bytes(value)));
        }
    };
    if let Some(view) = view {
        for i in 0..view.len() {
            let hash = view.hash(i);
            while next_op < ops.len() && ops[next_op].hash < hash {
                emit_op(&ops[next_op], &mut out);
                next_op += 1;
            }
            let same_hash = ops[next_op..].iter().take_while(|p| p.hash == hash);
            let mut overridden = false;
            if same_hash.clone().next().is_some() {
                let key = record::to_owned::<K>(view.key(i))?;
                overridden = same_hash.into_iter().any(|p| p.key == key);
            }
            if !overridden {
                let (key, value) = view.records(i);
                out.push((hash, key, value));
            }
        }
    }
    for p in &ops[next_op..] {
        emit_op(p, &mut out);
    }
    Ok(out)
}

struct Group<'a> {
    local_depth: u8,
    prefix: u64,
    entries: Vec<Merged<'a>>,
}

/// How deep the directory may grow: `ceil(log2(pages)) + DEPTH_SLACK` bits, where `pages`
/// is the larger of the pages the entries fill (`entries / size_limit`) and the buckets.
/// So the directory has at most 2^(DEPTH_SLACK+1) slots (4 bytes each) per page the dict
/// has needed, whatever the keys; random keys rarely reach the cap, and keys whose hashes
/// agree on more low bits than that (by chance, or crafted against a known seed) share an
/// oversized page instead of doubling the directory. Each entry keeps at least 8 bytes of
/// the file busy while it lives and the file never shrinks, so the directory also stays
/// under two slots per byte of the file: what `open` checks.
fn depth_cap(entries: u64, size_limit: usize, buckets: u64) -> u8 {
    let pages = entries.div_ceil(size_limit.max(1) as u64).max(buckets).max(1);
    let bits = u64::BITS - (pages - 1).leading_zeros();
    (bits + DEPTH_SLACK).min(u32::from(MAX_DEPTH)) as u8
}

/// How many buckets a dict of `entries` entries may have: four times the pages the entries
/// fill, plus 64. Random keys need about 1.3 times the pages; the rest is room for unlucky
/// hashes. Past it, buckets stop splitting and pages grow past `size_limit` instead, so
/// the page index (about 64 bytes a bucket) and the directory (at most 64 bytes a bucket,
/// see [`depth_cap`]) stay proportional to the data, whatever the keys.
fn bucket_budget(entries: u64, size_limit: usize) -> u64 {
    entries.div_ceil(size_limit.max(1) as u64).saturating_mul(4).saturating_add(64)
}

/// Splits a bucket's entries until each group fits `limit` entries and [`MAX_PAGE_BYTES`]
/// (extendible hashing), never deeper than [`depth_cap`] for the dict's entries and bucket
/// count (`buckets` before the split, plus the groups made so far) and never past
/// `max_buckets` buckets. An oversized group goes
/// straight to the depth its size calls for, as far as the caps allow, in one stable pass
/// (so each group stays sorted by hash). A group whose hashes cannot be told apart below
/// the cap stays whole: one big page, never a runaway directory.
fn split(
    entries: Vec<Merged<'_>>,
    local_depth: u8,
    prefix: u64,
    (limit, dict_entries): (usize, u64),
    buckets: usize,
    max_buckets: u64,
) -> Vec<Group<'_>> {
    let mut out = Vec::new();
    let mut buckets = buckets as u64;
    let mut stack = vec![Group { local_depth, prefix, entries }];
    while let Some(g) = stack.pop() {
        let max_depth = depth_cap(dict_entries, limit, buckets);
        // Splitting into 2^bits groups adds 2^bits - 1 buckets.
        let spare = max_buckets.saturating_sub(buckets);
        let bytes: usize = g.entries.iter().map(|e| 8 + e.1.len() + e.2.len() + 2 * RECORD_ALIGN).sum();
        let small = g.entries.len() <= limit && bytes <= MAX_PAGE_BYTES;
        if small || g.entries.len() <= 1 || g.local_depth >= max_depth || spare == 0 {
            out.push(g);
            continue;
        }
        let depth_mask = ((1u64 << max_depth) - 1) & !((1u64 << g.local_depth) - 1);
        let separable = g
            .entries
            .first()
            .is_some_and(|first| g.entries.iter().any(|e| (e.0 ^ first.0) & depth_mask != 0));
        if !separable {
            out.push(g);
            continue;
        }
        // Aim for groups about 3/4 full (by count and by bytes): 2^bits groups of len / 2^bits.
        let by_count = g.entries.len().div_ceil(limit.saturating_mul(3) / 4 + 1);
        let by_bytes = bytes.div_ceil(MAX_PAGE_BYTES * 3 / 4);
        let wanted = by_count.max(by_bytes).next_power_of_two();
        let affordable = (u64::BITS - 1 - (spare + 1).leading_zeros()) as u8; // floor(log2(spare + 1))
        let bits = (wanted.trailing_zeros() as u8).clamp(1, max_depth - g.local_depth).min(affordable);
        let fanout = 1usize << bits;
        let slot = |e: &Merged<'_>| ((e.0 >> g.local_depth) as usize) & (fanout - 1);
        let mut sizes = vec![0usize; fanout];
        for e in &g.entries {
            sizes[slot(e)] += 1;
        }
        let mut parts: Vec<Vec<Merged<'_>>> = sizes.iter().map(|&n| Vec::with_capacity(n)).collect();
        for e in g.entries {
            parts[slot(&e)].push(e);
        }
        buckets += fanout as u64 - 1;
        for (i, part) in parts.into_iter().enumerate() {
            let prefix = g.prefix | ((i as u64) << g.local_depth);
            stack.push(Group { local_depth: g.local_depth + bits, prefix, entries: part });
        }
    }
    out
}

fn encode_group(entries: &[Merged<'_>]) -> std::result::Result<AlignedVec, String> {
    let hashes: Vec<u64> = entries.iter().map(|e| e.0).collect();
    let records: Vec<&[u8]> = entries.iter().flat_map(|e| [e.1, e.2]).collect();
    page::encode(Some(&hashes), 2, &records)
}

impl Bucket {
    fn empty(local_depth: u8, prefix: u64) -> Self {
        Bucket { local_depth, prefix, page: Extent::default(), count: 0, layout: OnceLock::new() }
    }
}

/// Rebuilds the directory from the buckets' prefixes; every slot must be covered exactly
/// once, and no bucket may be deeper than `max_depth` (checked before the directory is
/// allocated, so a damaged root cannot make `open` allocate gigabytes).
fn build_directory(buckets: &[Bucket], max_depth: u8) -> std::result::Result<(u8, Vec<u32>), String> {
    let depth = buckets.iter().map(|b| b.local_depth).max().unwrap_or(0);
    if depth > max_depth {
        return Err(format!(
            "a bucket has depth {depth}, deeper than {max_depth}, the most its {} pages allow",
            buckets.len()
        ));
    }
    let covered: u64 = buckets.iter().map(|b| 1u64 << (depth - b.local_depth)).sum();
    if covered != 1u64 << depth {
        return Err("the buckets do not cover the hash space exactly once".into());
    }
    let mut dir = vec![u32::MAX; 1 << depth];
    for (index, b) in buckets.iter().enumerate() {
        for j in 0..1u64 << (depth - b.local_depth) {
            let slot = &mut dir[(b.prefix | (j << b.local_depth)) as usize];
            if *slot != u32::MAX {
                return Err(format!("buckets {} and {index} overlap", *slot));
            }
            *slot = index as u32;
        }
    }
    if dir.contains(&u32::MAX) {
        return Err("the buckets leave part of the hash space uncovered".into());
    }
    Ok((depth, dir))
}

impl<K: Storable + Hash + Eq, V: Storable> Drop for DiskDict<K, V> {
    /// Flushes; an error can only be logged here (through `tracing`), so prefer
    /// [`DiskDict::close`] where the error matters.
    fn drop(&mut self) {
        self.flush_on_drop();
    }
}

impl<K: Storable + Hash + Eq, V: Storable> Store for DiskDict<K, V> {
    fn file(&self) -> &StoreFile {
        &self.file
    }

    fn file_mut(&mut self) -> &mut StoreFile {
        &mut self.file
    }

    fn dirty(&mut self) -> &mut bool {
        &mut self.dirty
    }

    fn entries(&self) -> u64 {
        self.len
    }

    fn write_pages(&mut self) -> Result<Vec<u8>> {
        self.merge_overlay()?;
        Ok(root::encode_dict(self.buckets.iter().map(|b| BucketEntry {
            local_depth: b.local_depth,
            prefix: b.prefix,
            page: b.page,
            count: b.count,
        })))
    }
}

/// Iterator over a [`DiskDict`]'s entries; see [`DiskDict::iter`].
pub struct Iter<'a, K: Storable + Hash + Eq, V: Storable> {
    dict: &'a DiskDict<K, V>,
    bucket: usize,
    index: usize,
    overlay: std::slice::Iter<'a, Pending<K>>,
}

impl<K: Storable + Hash + Eq, V: Storable> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").field("bucket", &self.bucket).field("index", &self.index).finish()
    }
}

impl<'a, K, V> Iter<'a, K, V>
where
    K: Storable + Hash + Eq,
    V: Storable,
{
    /// The next live entry: its key, deserialized (needed to tell whether a newer write
    /// shadows it), and its value, still archived, so `keys()` never deserializes values.
    fn next_entry(&mut self) -> Option<Result<(K, &'a V::Archived)>> {
        let dict = self.dict;
        while self.bucket < dict.buckets.len() {
            let view = match dict.page(self.bucket) {
                Ok(Some(view)) if self.index < view.len() => view,
                Ok(_) => {
                    (self.bucket, self.index) = (self.bucket + 1, 0);
                    continue;
                }
                Err(e) => {
                    (self.bucket, self.index) = (self.bucket + 1, 0);
                    return Some(Err(e));
                }
            };
            let i = self.index;
            self.index += 1;
            let key = match record::to_owned::<K>(view.key(i)) {
                Ok(key) => key,
                Err(e) => return Some(Err(e)),
            };
            if dict.overlay.find(view.hash(i), &key).is_some() {
                continue; // shadowed by a newer write, reported from the overlay below
            }
            return Some(Ok((key, view.value(i))));
        }
        for p in self.overlay.by_ref() {
            if let Some((key, value)) = p.put {
                let (k, v) = (dict.overlay.key((key, value)), dict.overlay.value((key, value)));
                return Some(record::to_owned::<K>(k).map(|k| (k, v)));
            }
        }
        None
    }
}

impl<K, V> Iterator for Iter<'_, K, V>
where
    K: Storable + Hash + Eq,
    V: Storable,
{
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = self.next_entry()?;
        Some(entry.and_then(|(k, v)| Ok((k, record::to_owned::<V>(v)?))))
    }
}

impl<'a, K: Storable + Hash + Eq, V: Storable> IntoIterator for &'a DiskDict<K, V> {
    type Item = Result<(K, V)>;
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Iterator over a [`DiskDict`]'s keys; see [`DiskDict::keys`].
pub struct Keys<'a, K: Storable + Hash + Eq, V: Storable> {
    inner: Iter<'a, K, V>,
}

impl<K: Storable + Hash + Eq, V: Storable> fmt::Debug for Keys<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys").field("inner", &self.inner).finish()
    }
}

impl<K: Storable + Hash + Eq, V: Storable> Iterator for Keys<'_, K, V> {
    type Item = Result<K>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.inner.next_entry()?.map(|(k, _)| k))
    }
}

/// Iterator over a [`DiskDict`]'s values; see [`DiskDict::values`].
pub struct Values<'a, K: Storable + Hash + Eq, V: Storable> {
    inner: Iter<'a, K, V>,
}

impl<K: Storable + Hash + Eq, V: Storable> fmt::Debug for Values<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Values").field("inner", &self.inner).finish()
    }
}

impl<K: Storable + Hash + Eq, V: Storable> Iterator for Values<'_, K, V> {
    type Item = Result<V>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.inner.next_entry()?.and_then(|(_, v)| record::to_owned::<V>(v)))
    }
}

/// A key's place in a [`DiskDict`], present or not; see [`DiskDict::entry`].
///
/// Values live on disk, so an entry hands out owned values (a copy of what is stored),
/// not references.
pub struct Entry<'a, K: Storable + Hash + Eq, V: Storable> {
    dict: &'a mut DiskDict<K, V>,
    key: K,
}

impl<K: Storable + Hash + Eq + fmt::Debug, V: Storable> fmt::Debug for Entry<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry").field("key", &self.key).finish()
    }
}

impl<K: Storable + Hash + Eq, V: Storable> Entry<'_, K, V> {
    /// The entry's key.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The stored value, after inserting `default` if the key was absent.
    ///
    /// # Errors
    ///
    /// As [`DiskDict::get`] and [`DiskDict::insert`].
    pub fn or_insert(self, default: V) -> Result<V> {
        self.or_insert_with(|| default)
    }

    /// The stored value, after inserting `make()` if the key was absent (`make` runs only
    /// then).
    ///
    /// # Errors
    ///
    /// As [`DiskDict::get`] and [`DiskDict::insert`].
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> Result<V> {
        if let Some(value) = self.dict.get(&self.key)? {
            return Ok(value);
        }
        let value = make();
        let hash = stable_hash(&self.key, self.dict.hash_seed);
        // Insert the archived bytes, then read them back: no `V: Clone` needed.
        self.dict.make_room()?;
        self.dict.overlay.put(hash, self.key, &value)?;
        self.dict.len += 1;
        self.dict.dirty = true;
        Ok(value)
    }

    /// The stored value, after inserting `V::default()` if the key was absent.
    ///
    /// # Errors
    ///
    /// As [`DiskDict::get`] and [`DiskDict::insert`].
    pub fn or_default(self) -> Result<V>
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }
}

#[cfg(test)]
mod tests {
    //! The bounds on the directory and the bucket count, against keys whose hashes collide,
    //! by chance (tiny pages), by crafting (against the store's own seed), or by a `Hash`
    //! impl that ignores the key.
    use super::*;

    fn open<K: Storable + Hash + Eq>(dir: &tempfile::TempDir, size_limit: usize) -> DiskDict<K, u64> {
        let opts = Options::new().location(dir.path()).size_limit(size_limit).max_pages(1);
        DiskDict::open_with("bounds", &opts).unwrap()
    }

    /// The documented bounds: at most `bucket_budget` buckets, and a directory of at most
    /// 2^(DEPTH_SLACK+1) slots per bucket.
    fn assert_bounded<K: Storable + Hash + Eq>(d: &DiskDict<K, u64>, size_limit: usize) {
        let buckets = d.buckets.len() as u64;
        assert!(buckets <= bucket_budget(d.len, size_limit), "{buckets} buckets for {} entries", d.len);
        assert!(
            d.dir.len() as u64 <= (buckets << (DEPTH_SLACK + 1)).max(1 << DEPTH_SLACK),
            "a directory of {} slots for {buckets} buckets",
            d.dir.len()
        );
    }

    #[test]
    fn crafted_keys_sharing_low_hash_bits_cannot_grow_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut d: DiskDict<u64, u64> = open(&dir, 4);
        // Keys whose hashes under this store's seed share their low 14 bits: extendible
        // hashing alone would need a directory of 2^16 or more slots to split them.
        const BITS: u32 = 14;
        let crafted: Vec<u64> =
            (0u64..).filter(|k| stable_hash(k, d.hash_seed) & ((1 << BITS) - 1) == 0).take(600).collect();
        for (i, &k) in crafted.iter().enumerate() {
            d.insert(k, i as u64).unwrap();
            if i % 50 == 0 {
                d.flush().unwrap();
                assert_bounded(&d, 4);
            }
        }
        d.flush().unwrap();
        assert_bounded(&d, 4);
        assert!(d.dir.len() < 1 << BITS, "directory of {} slots", d.dir.len());
        for (i, k) in crafted.iter().enumerate() {
            assert_eq!(d.get(k).unwrap(), Some(i as u64));
        }
        eprintln!(
            "{} crafted keys: {} buckets, {} directory slots",
            crafted.len(),
            d.buckets.len(),
            d.dir.len()
        );
        // Reopening checks the stored depths against the same cap.
        let path_dir = dir;
        drop(d);
        let d: DiskDict<u64, u64> = open(&path_dir, 4);
        assert_eq!(d.len(), 600);
    }

    #[test]
    fn keys_sharing_a_few_low_bits_still_split_as_the_dict_grows() {
        // Keys whose seeded hashes agree on their low 3 bits (1 key in 8 qualifies): the
        // directory's cap grows with the entries, so they spread over many pages instead
        // of piling into one page that every merge rewrites.
        let dir = tempfile::tempdir().unwrap();
        let mut d: DiskDict<u64, u64> = open(&dir, 16);
        let keys: Vec<u64> = (0u64..).filter(|k| stable_hash(k, d.hash_seed) & 7 == 0).take(20_000).collect();
        for (i, &k) in keys.iter().enumerate() {
            d.insert(k, i as u64).unwrap();
        }
        d.flush().unwrap();
        assert_bounded(&d, 16);
        let largest = d.buckets.iter().map(|b| b.count).max().unwrap();
        assert!(largest <= 64, "a page of {largest} entries (size_limit 16)");
        assert!(d.buckets.len() > 20_000 / 64, "{} pages", d.buckets.len());
        assert_eq!(d.get(&keys[12_345]).unwrap(), Some(12_345));
    }

    /// A key whose `Hash` ignores it: every key has the same hash.
    #[derive(PartialEq, Eq, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
    #[rkyv(crate = rkyv)]
    struct Degenerate(u64);
    impl Hash for Degenerate {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            state.write_u8(0);
        }
    }
    impl crate::Schema for Degenerate {
        fn describe(out: &mut crate::SchemaWriter) {
            out.text("degenerate");
        }
    }

    #[test]
    fn a_hash_that_ignores_the_key_makes_one_big_page_not_a_big_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut d: DiskDict<Degenerate, u64> = open(&dir, 1);
        for i in 0..2_000 {
            d.insert(Degenerate(i), i).unwrap();
        }
        d.flush().unwrap();
        assert_bounded(&d, 1);
        assert!(d.dir.len() <= 1 << DEPTH_SLACK, "directory of {} slots", d.dir.len());
        assert_eq!(d.get(&Degenerate(1_234)).unwrap(), Some(1_234));
    }

    #[test]
    fn random_keys_on_one_item_pages_stay_within_the_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let mut d: DiskDict<u64, u64> = open(&dir, 1);
        let mut x = 1u64;
        for i in 0..20_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            d.insert(x, i).unwrap();
        }
        d.flush().unwrap();
        assert_bounded(&d, 1);
        let oversized = d.buckets.iter().filter(|b| b.count > 1).count();
        eprintln!(
            "20k random keys, size_limit 1: {} buckets, {} directory slots, {oversized} pages over the limit",
            d.buckets.len(),
            d.dir.len()
        );
    }

    #[test]
    fn pages_split_by_bytes_as_well_as_by_count() {
        // 200 entries of 1 MiB values (slices of one buffer: no I/O, little memory) fit a
        // size_limit of 1000 by count but not the page byte limit.
        let big = vec![0u8; 1 << 20];
        let mut x = 1u64;
        let entries: Vec<Merged<'_>> = (0..200)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x, &big[..8], &big[..])
            })
            .collect();
        let groups = split(entries, 0, 0, (1000, 200), 1, bucket_budget(200, 1000));
        assert!(groups.len() > 1);
        for g in &groups {
            let bytes: usize = g.entries.iter().map(|e| e.1.len() + e.2.len()).sum();
            assert!(bytes <= MAX_PAGE_BYTES, "a group of {bytes} bytes");
        }
        assert_eq!(groups.iter().map(|g| g.entries.len()).sum::<usize>(), 200);
    }

    #[test]
    fn a_root_deeper_than_its_buckets_allow_is_corrupt_before_any_allocation() {
        let buckets: Vec<Bucket> = (0..2u64).map(|p| Bucket::empty(1, p)).collect();
        assert!(build_directory(&buckets, 3).is_ok());
        // Two buckets claiming depth 30 would need a 4 GiB directory.
        let deep = vec![Bucket::empty(30, 0), Bucket::empty(30, 1)];
        assert!(build_directory(&deep, depth_cap(0, 1, 2)).unwrap_err().contains("deeper"));
        // Depths that do not add up to the whole hash space.
        let gap = vec![Bucket::empty(1, 0), Bucket::empty(2, 1)];
        assert!(build_directory(&gap, 3).unwrap_err().contains("cover"));
    }
}
