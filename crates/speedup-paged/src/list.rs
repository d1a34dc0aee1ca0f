//! [`DiskList`]: a list paged to disk, `size_limit` consecutive items per page.
//!
//! Pages are kept in list order with the index of their first item (`starts`), so
//! locating item `i` is one division when pages are full (a list built by `push`) and a
//! binary search over pages otherwise. Pages being written are *resident*: their records
//! sit in an in-memory buffer; at most `max_pages` are resident at once, the least recently
//! written one going back to disk (copy-on-write) when another is needed. Pages that are
//! only read are never loaded: reads borrow from the mapped file.

use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;

use rkyv::util::AlignedVec;

use crate::error::{Error, Result};
use crate::extent::Extent;
use crate::file::StoreFile;
use crate::header::{HeaderFallback, Identity, Kind};
use crate::options::Options;
use crate::page::{self, Layout, MAX_PAGE_BYTES, PageView};
use crate::record::{self, Span, Storable};
use crate::root::{self, PageEntry};
use crate::store::{self, Store};
use crate::validated::ItemPage;

/// File extension of list stores: `<location>/<basename>.splist`.
pub const LIST_EXTENSION: &str = "splist";

/// A list whose items live in pages of a memory-mapped file, with bounded RAM.
///
/// # Examples
///
/// ```
/// use speedup_paged::{DiskList, Options};
/// # let dir = tempfile::tempdir().unwrap();
/// let opts = Options::new().location(dir.path()).size_limit(4);
/// let mut l: DiskList<u64> = DiskList::open_with("list", &opts)?;
/// for i in 0..10 {
///     l.push(i)?;
/// }
/// l.insert(0, 100)?;                 // shifts within one page, splits it if full
/// assert_eq!(l.remove(1)?, 0);
/// assert_eq!(l.pop()?, Some(9));
/// assert_eq!(l.len(), 9);
/// let items: Vec<u64> = l.iter().collect::<Result<_, _>>()?;
/// assert_eq!(items, [100, 1, 2, 3, 4, 5, 6, 7, 8]);
/// assert!(l.set(9, 0).is_err());     // past the end: Error::IndexOutOfRange
/// # Ok::<(), speedup_paged::Error>(())
/// ```
///
/// # Thread safety
///
/// `Send + Sync`: reads take `&self` and run in parallel without locks; writes take
/// `&mut self` (wrap the list in a `RwLock` to share it between writing threads).
pub struct DiskList<T: Storable> {
    file: StoreFile,
    size_limit: usize,
    max_pages: usize,
    /// Page ids in list order.
    order: Vec<u32>,
    /// `starts[p]`: index of the first item of page `order[p]`.
    starts: Vec<u64>,
    /// Pages by id; ids of removed pages are reused.
    pages: Vec<ListPage<T>>,
    free_ids: Vec<u32>,
    /// Ids of the pages that have a buffer (at most `max_pages`, plus the one being written).
    resident: Vec<u32>,
    clock: u64,
    len: u64,
    dirty: bool,
    _items: PhantomData<fn() -> T>,
}

struct ListPage<T> {
    /// Where the page was last written; `len == 0` if never.
    disk: Extent,
    count: u32,
    /// Set once the disk page passed validation (or was written by us).
    layout: OnceLock<Layout>,
    buffer: Option<PageBuffer<T>>,
}

/// A resident page: records in an arena, one span per item, in order.
///
/// Invariant: every span holds a record archived from a `T` (by [`record::append`], or
/// copied from a validated page or buffer of `T`), so [`PageBuffer::item`] is safe.
struct PageBuffer<T> {
    arena: AlignedVec,
    spans: Vec<Span>,
    /// Arena bytes no span refers to any more.
    garbage: usize,
    dirty: bool,
    last_used: u64,
    _items: PhantomData<fn() -> T>,
}

impl<T: Storable> PageBuffer<T> {
    fn new() -> Self {
        PageBuffer {
            arena: AlignedVec::new(),
            spans: Vec::new(),
            garbage: 0,
            dirty: true,
            last_used: 0,
            _items: PhantomData,
        }
    }

    /// Item `i`, archived.
    fn item(&self, i: usize) -> &T::Archived {
        // SAFETY: every span holds an archived `T` (the struct's invariant); the arena does
        // not change while `&self` is borrowed. Caught by `tests/model.rs` if broken.
        unsafe { record::archived::<T>(self.record(i)) }
    }

    /// Copies records of `T` (from a validated page or another buffer) into a fresh buffer.
    fn from_records<'a>(records: impl Iterator<Item = &'a [u8]>) -> Self {
        let mut buf = PageBuffer::new();
        for r in records {
            buf.push_raw(r);
        }
        buf
    }

    fn push_raw(&mut self, bytes: &[u8]) {
        record::pad(&mut self.arena);
        let start = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        self.spans.push(Span { start, len: bytes.len() as u32 });
    }

    fn record(&self, i: usize) -> &[u8] {
        &self.arena[self.spans[i].range()]
    }

    /// Rewrites the arena without garbage once garbage dominates (keeps `set` bounded).
    fn compact_if_wasteful(&mut self) {
        if self.garbage > 4096 && self.garbage > self.arena.len() / 2 {
            let fresh = PageBuffer::<T>::from_records((0..self.spans.len()).map(|i| self.record(i)));
            (self.arena, self.spans, self.garbage) = (fresh.arena, fresh.spans, 0);
        }
    }
}

impl<T: Storable> fmt::Debug for DiskList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskList")
            .field("path", &self.file.path())
            .field("len", &self.len)
            .field("pages", &self.order.len())
            .field("resident", &self.resident.len())
            .finish()
    }
}

impl<T: Storable> DiskList<T> {
    /// Opens (or creates) the list `name` in `~/.PySpeedup` with default [`Options`].
    ///
    /// # Errors
    ///
    /// See [`DiskList::open_with`].
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, &Options::new())
    }

    /// Opens (or creates) the list `name` in `opts`' location: `<location>/<name>.splist`.
    ///
    /// # Errors
    ///
    /// As [`DiskDict::open_with`](crate::DiskDict::open_with).
    pub fn open_with(name: &str, opts: &Options) -> Result<Self> {
        let identity = Identity {
            current: format!("DiskList<{}>", record::type_identity::<T>()),
            format_1: format!("DiskList<{}>", record::legacy_type_label::<T>()),
        };
        let mut file = store::open_file(name, opts, Kind::List, &identity)?;
        let header = file.header().clone();
        let path = file.path().to_path_buf();
        let pages = if header.root.len == 0 {
            Vec::new()
        } else {
            root::decode_list(file.read_checked(header.root)?)
                .map_err(|e| Error::corrupt(&path, e))?
                .into_iter()
                .map(|p| ListPage { disk: p.page, count: p.count, layout: OnceLock::new(), buffer: None })
                .collect()
        };
        let mut starts = Vec::with_capacity(pages.len());
        let mut len = 0u64;
        for p in &pages {
            starts.push(len);
            len += u64::from(p.count);
        }
        store::check_count(&file, len)?;
        file.set_live(pages.iter().map(|p| p.disk))?;
        Ok(DiskList {
            file,
            size_limit: opts.get_size_limit(),
            max_pages: opts.get_max_pages(),
            order: (0..pages.len() as u32).collect(),
            starts,
            pages,
            free_ids: Vec::new(),
            resident: Vec::new(),
            clock: 0,
            len,
            dirty: false,
            _items: PhantomData,
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

    /// Number of items. O(1), no I/O.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the list is empty. O(1), no I/O.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The store file's path.
    pub fn path(&self) -> &std::path::Path {
        self.file.path()
    }

    /// Item `index`, deserialized; `Ok(None)` past the end, like [`slice::get`].
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if the item's page fails its checksum or validation.
    pub fn get(&self, index: usize) -> Result<Option<T>> {
        self.get_archived(index)?.map(record::to_owned::<T>).transpose()
    }

    /// Item `index` in archived form, borrowed from the mapped page or the resident buffer.
    ///
    /// # Errors
    ///
    /// As [`DiskList::get`].
    pub fn get_archived(&self, index: usize) -> Result<Option<&T::Archived>> {
        let Some((pos, local)) = self.locate(index as u64) else {
            return Ok(None);
        };
        let id = self.order[pos];
        let page = &self.pages[id as usize];
        match &page.buffer {
            Some(buf) => Ok(Some(buf.item(local))),
            None => match self.fixed_item(page, local) {
                Some(item) => Ok(Some(item)),
                None => Ok(Some(self.page(id)?.item(local))),
            },
        }
    }

    /// Item `local` of a validated on-disk page with a fixed layout, found by arithmetic
    /// without building a page view; `None` sends the caller the general way.
    ///
    /// Why it exists: a random `get` on a list larger than the CPU caches ends in a cache
    /// miss on the mapping, and the CPU overlaps the misses of consecutive gets only if the
    /// instructions between them fit its reorder window. This path is a quarter of the
    /// general one and triples random gets (`cargo xtask bench paged`, DiskList random get).
    #[inline]
    fn fixed_item(&self, page: &ListPage<T>, local: usize) -> Option<&T::Archived> {
        let range = page.layout.get()?.fixed_record(local, 0)?;
        let bytes = self.file.read(page.disk).ok()?.get(range)?;
        // SAFETY: as in `page`: the layout is set only for bytes that passed validation
        // (or that `write_back` encoded from `T`s), and `local` is below the page's count
        // (`locate`), so the range holds one archived `T`. Wrong arithmetic here is caught
        // by `tests/api.rs::list_iterates_from_both_ends_with_an_exact_length` (checked by
        // reading the item next door instead) and by `tests/model.rs`.
        Some(unsafe { record::archived::<T>(bytes) })
    }

    /// Appends an item. O(1) amortized: items are archived into the resident last page.
    ///
    /// # Errors
    ///
    /// [`Error::Serialize`]; I/O errors ([`Error::Io`], [`Error::DiskFull`]) when a resident
    /// page has to be written out to make room first. On any error nothing changed.
    pub fn push(&mut self, item: T) -> Result<()> {
        let last_full = self.order.last().is_none_or(|&id| {
            self.pages[id as usize].count as usize >= self.size_limit || self.page_bytes(id) >= MAX_PAGE_BYTES
        });
        // The page to keep resident (no allocation: this runs once per item).
        let tail = if last_full { None } else { self.order.last().copied() };
        self.make_room(tail.as_slice())?;
        let id = if last_full {
            let id = self.new_page();
            self.order.push(id);
            self.starts.push(self.len);
            id
        } else {
            let id = self.order[self.order.len() - 1];
            self.make_resident(id)?;
            id
        };
        let appended = self.with_buffer(id, |buf| {
            let span = record::append(&mut buf.arena, &item)?;
            buf.spans.push(span);
            Ok(())
        });
        if let Err(e) = appended {
            if last_full {
                self.order.pop();
                self.starts.pop();
                self.drop_page(id);
            }
            return Err(e);
        }
        self.pages[id as usize].count += 1;
        self.len += 1;
        self.dirty = true;
        Ok(())
    }

    /// Replaces item `index` and returns the old one.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] past the end; otherwise as [`DiskList::push`].
    pub fn set(&mut self, index: usize, item: T) -> Result<T> {
        let (pos, local) = self.locate(index as u64).ok_or(self.out_of_range(index))?;
        let id = self.order[pos];
        self.make_room(&[id])?;
        self.make_resident(id)?;
        let old = self.with_buffer(id, |buf| {
            let old = record::to_owned::<T>(buf.item(local))?;
            let span = record::append(&mut buf.arena, &item)?;
            buf.garbage += buf.spans[local].len as usize;
            buf.spans[local] = span;
            buf.compact_if_wasteful();
            Ok(old)
        })?;
        self.dirty = true;
        Ok(old)
    }

    /// Inserts `item` at `index`, shifting later items. O(n / size_limit + size_limit): the
    /// items move within one page (split in two when full) and later pages' offsets shift.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] if `index > len`; otherwise as [`DiskList::push`].
    pub fn insert(&mut self, index: usize, item: T) -> Result<()> {
        if index as u64 == self.len {
            return self.push(item);
        }
        let (pos, local) = self.locate(index as u64).ok_or(self.out_of_range(index))?;
        let id = self.order[pos];
        self.make_room(&[id])?;
        self.make_resident(id)?;
        self.with_buffer(id, |buf| {
            let span = record::append(&mut buf.arena, &item)?;
            buf.spans.insert(local, span);
            Ok(())
        })?;
        self.pages[id as usize].count += 1;
        self.shift_starts(pos + 1, 1);
        self.len += 1;
        self.dirty = true;
        let page = &self.pages[id as usize];
        if page.count as usize > self.size_limit || (page.count > 1 && self.page_bytes(id) > MAX_PAGE_BYTES) {
            self.split_page(pos);
        }
        Ok(())
    }

    /// The live bytes of page `id`: its buffer's records if resident, else its disk extent.
    fn page_bytes(&self, id: u32) -> usize {
        let page = &self.pages[id as usize];
        match &page.buffer {
            Some(buf) => buf.arena.len() - buf.garbage,
            None => page.disk.len as usize,
        }
    }

    /// Removes and returns item `index`, shifting later items.
    ///
    /// # Errors
    ///
    /// [`Error::IndexOutOfRange`] past the end; otherwise as [`DiskList::push`].
    pub fn remove(&mut self, index: usize) -> Result<T> {
        let (pos, local) = self.locate(index as u64).ok_or(self.out_of_range(index))?;
        let id = self.order[pos];
        self.make_room(&[id])?;
        self.make_resident(id)?;
        let old = self.with_buffer(id, |buf| {
            let old = record::to_owned::<T>(buf.item(local))?;
            buf.garbage += buf.spans.remove(local).len as usize;
            buf.compact_if_wasteful();
            Ok(old)
        })?;
        self.pages[id as usize].count -= 1;
        self.shift_starts(pos + 1, -1);
        self.len -= 1;
        self.dirty = true;
        if self.pages[id as usize].count == 0 {
            self.order.remove(pos);
            self.starts.remove(pos);
            self.drop_page(id);
        }
        Ok(old)
    }

    /// Removes and returns the last item, or `Ok(None)` if the list is empty.
    ///
    /// # Errors
    ///
    /// As [`DiskList::remove`].
    pub fn pop(&mut self) -> Result<Option<T>> {
        match self.len {
            0 => Ok(None),
            n => self.remove(n as usize - 1).map(Some),
        }
    }

    /// Iterates over the items in order, deserialized; from both ends, with an exact length.
    pub fn iter(&self) -> ListIter<'_, T> {
        ListIter { list: self, index: 0, end: self.len() }
    }

    /// The first item, or `Ok(None)` if the list is empty.
    ///
    /// # Errors
    ///
    /// As [`DiskList::get`].
    pub fn first(&self) -> Result<Option<T>> {
        self.get(0)
    }

    /// The last item, or `Ok(None)` if the list is empty.
    ///
    /// # Errors
    ///
    /// As [`DiskList::get`].
    pub fn last(&self) -> Result<Option<T>> {
        match self.len() {
            0 => Ok(None),
            n => self.get(n - 1),
        }
    }

    /// Appends every item of `items`, in order.
    ///
    /// # Errors
    ///
    /// As [`DiskList::push`]: the first error stops the extension; the items before it are
    /// in the list, the failed one and those after it are not.
    pub fn extend(&mut self, items: impl IntoIterator<Item = T>) -> Result<()> {
        for item in items {
            self.push(item)?;
        }
        Ok(())
    }

    /// Removes every item. No I/O: the pages are freed, and the next
    /// [`flush`](DiskList::flush) makes the empty list durable.
    pub fn clear(&mut self) {
        for id in std::mem::take(&mut self.order) {
            self.drop_page(id);
        }
        self.starts.clear();
        self.len = 0;
        self.dirty = true;
    }

    /// Shortens the list to its first `len` items (nothing happens if it is not longer).
    /// Whole pages past the cut are freed without being read.
    ///
    /// # Errors
    ///
    /// As [`DiskList::pop`], for the items removed from the page the cut falls in.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        let len = len as u64;
        while let (Some(&id), Some(&start)) = (self.order.last(), self.starts.last()) {
            if start < len {
                break;
            }
            self.len -= u64::from(self.pages[id as usize].count);
            self.order.pop();
            self.starts.pop();
            self.drop_page(id);
            self.dirty = true;
        }
        while self.len > len {
            self.pop()?;
        }
        Ok(())
    }

    /// Makes every change so far durable (see [`DiskDict::flush`](crate::DiskDict::flush)).
    ///
    /// # Errors
    ///
    /// I/O errors; the store on disk is then still the one of the last successful flush.
    pub fn flush(&mut self) -> Result<()> {
        self.flush_store()
    }

    /// Flushes and closes the list, reporting any error.
    ///
    /// # Errors
    ///
    /// As [`DiskList::flush`].
    pub fn close(mut self) -> Result<()> {
        self.close_store()
    }

    /// Closes the list **without** flushing: every change since the last successful flush
    /// is dropped, and the list reopens exactly as that flush left it.
    pub fn discard(mut self) {
        self.discard_store();
    }

    fn out_of_range(&self, index: usize) -> Error {
        Error::IndexOutOfRange { index: index as u64, len: self.len }
    }

    /// (position in `order`, index within the page) of item `index`.
    fn locate(&self, index: u64) -> Option<(usize, usize)> {
        if index >= self.len {
            return None;
        }
        let count = |pos: usize| u64::from(self.pages[self.order[pos] as usize].count);
        let guess = ((index / self.size_limit as u64) as usize).min(self.order.len() - 1);
        let pos = if self.starts[guess] <= index && index < self.starts[guess] + count(guess) {
            guess
        } else {
            self.starts.partition_point(|&s| s <= index) - 1
        };
        Some((pos, (index - self.starts[pos]) as usize))
    }

    fn shift_starts(&mut self, from: usize, by: i64) {
        for s in &mut self.starts[from..] {
            *s = s.wrapping_add_signed(by);
        }
    }

    /// The validated on-disk page of `id` (checksum, structure, every record, once).
    fn page(&self, id: u32) -> Result<ItemPage<'_, T>> {
        let p = &self.pages[id as usize];
        if let Some(&layout) = p.layout.get() {
            let view = PageView::known(self.file.read(p.disk)?, p.count as usize, 1, layout);
            // SAFETY: `layout` is set only after the checks below passed on these bytes, or
            // by `write_back` for a page it encoded from a buffer of `T`; extents are never
            // rewritten while referenced (see `file.rs`, "Why the mapping is sound").
            // Caught by `tests/model.rs` (reads after write-backs and flushes) and
            // `tests/errors.rs::bit_flips_are_detected` if a page were trusted unchecked.
            return Ok(unsafe { ItemPage::trusted(view) });
        }
        let corrupt = |why: String| Error::corrupt(self.file.path(), format!("list page {id}: {why}"));
        let view = PageView::parse(self.file.read_checked(p.disk)?, 1, false).map_err(corrupt)?;
        if view.len() != p.count as usize {
            return Err(corrupt(format!("holds {} items, the root says {}", view.len(), p.count)));
        }
        let page = ItemPage::validate(view).map_err(corrupt)?;
        let _ = p.layout.set(view.layout());
        Ok(page)
    }

    fn new_page(&mut self) -> u32 {
        let page = ListPage {
            disk: Extent::default(),
            count: 0,
            layout: OnceLock::new(),
            buffer: Some(PageBuffer::new()),
        };
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.pages[id as usize] = page;
                id
            }
            None => {
                self.pages.push(page);
                (self.pages.len() - 1) as u32
            }
        };
        self.resident.push(id);
        id
    }

    fn drop_page(&mut self, id: u32) {
        let page = &mut self.pages[id as usize];
        page.buffer = None;
        page.count = 0;
        let disk = std::mem::take(&mut page.disk);
        self.file.release(disk);
        self.resident.retain(|&r| r != id);
        self.free_ids.push(id);
    }

    fn with_buffer<R>(&mut self, id: u32, f: impl FnOnce(&mut PageBuffer<T>) -> Result<R>) -> Result<R> {
        self.clock += 1;
        let clock = self.clock;
        let Some(buf) = self.pages[id as usize].buffer.as_mut() else {
            return Err(Error::corrupt(
                self.file.path(),
                format!("list page {id} is not resident (internal error)"),
            ));
        };
        buf.last_used = clock;
        let result = f(buf)?;
        buf.dirty = true;
        Ok(result)
    }

    fn make_resident(&mut self, id: u32) -> Result<()> {
        if self.pages[id as usize].buffer.is_some() {
            return Ok(());
        }
        self.file.prefetch(self.pages[id as usize].disk);
        let view = self.page(id)?;
        let mut buf = PageBuffer::from_records((0..view.len()).map(|i| view.record(i)));
        buf.dirty = false;
        self.pages[id as usize].buffer = Some(buf);
        self.resident.push(id);
        Ok(())
    }

    /// Splits the page at `pos` in two halves; returns the new page's id.
    fn split_page(&mut self, pos: usize) -> u32 {
        let id = self.order[pos];
        let new_id = self.new_page();
        let (moved, keep) = {
            let page = &mut self.pages[id as usize];
            let Some(buf) = page.buffer.as_mut() else {
                unreachable!("split_page is called right after make_resident");
            };
            let keep = buf.spans.len() / 2;
            let moved = PageBuffer::from_records((keep..buf.spans.len()).map(|i| buf.record(i)));
            buf.garbage += buf.spans[keep..].iter().map(|s| s.len as usize).sum::<usize>();
            buf.spans.truncate(keep);
            buf.dirty = true;
            page.count = keep as u32;
            (moved, keep)
        };
        let new_page = &mut self.pages[new_id as usize];
        new_page.count = moved.spans.len() as u32;
        new_page.buffer = Some(moved);
        self.order.insert(pos + 1, new_id);
        self.starts.insert(pos + 1, self.starts[pos] + keep as u64);
        new_id
    }

    /// Writes resident pages back (least recently written first, never one of `keep`) until
    /// one more page fits under `max_pages`. Called *before* a mutation, so that a failed
    /// write leaves the list unchanged. (A split adds one page for the rest of that call.)
    fn make_room(&mut self, keep: &[u32]) -> Result<()> {
        while self.resident.len() >= self.max_pages {
            let victim = self
                .resident
                .iter()
                .copied()
                .filter(|id| !keep.contains(id))
                .min_by_key(|&id| self.pages[id as usize].buffer.as_ref().map_or(0, |b| b.last_used));
            let Some(victim) = victim else {
                return Ok(());
            };
            self.write_back(victim)?;
            self.pages[victim as usize].buffer = None;
            self.resident.retain(|&r| r != victim);
        }
        Ok(())
    }

    /// Writes a dirty resident page to a new extent (copy-on-write); it stays resident.
    fn write_back(&mut self, id: u32) -> Result<()> {
        let Some(buf) = self.pages[id as usize].buffer.as_ref().filter(|b| b.dirty) else {
            return Ok(());
        };
        let records: Vec<&[u8]> = (0..buf.spans.len()).map(|i| buf.record(i)).collect();
        let bytes = page::encode(None, 1, &records).map_err(|reason| Error::Serialize { reason })?;
        let extent = self.file.write(&bytes)?;
        let page = &mut self.pages[id as usize];
        let old = std::mem::replace(&mut page.disk, extent);
        page.layout = OnceLock::new();
        if let Ok(view) = PageView::parse(&bytes, 1, false) {
            let _ = page.layout.set(view.layout());
        }
        if let Some(buf) = page.buffer.as_mut() {
            buf.dirty = false;
        }
        self.file.release(old);
        Ok(())
    }
}

impl<T: Storable> Drop for DiskList<T> {
    /// Flushes; errors are logged through `tracing` (use [`DiskList::close`] to see them).
    fn drop(&mut self) {
        self.flush_on_drop();
    }
}

impl<T: Storable> Store for DiskList<T> {
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
        for id in self.resident.clone() {
            self.write_back(id)?;
        }
        Ok(root::encode_list(self.order.iter().map(|&id| {
            let p = &self.pages[id as usize];
            PageEntry { page: p.disk, count: p.count }
        })))
    }
}

/// Iterator over a [`DiskList`]'s items; see [`DiskList::iter`].
pub struct ListIter<'a, T: Storable> {
    list: &'a DiskList<T>,
    /// The next index from the front.
    index: usize,
    /// One past the next index from the back.
    end: usize,
}

impl<T: Storable> fmt::Debug for ListIter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListIter").field("index", &self.index).field("end", &self.end).finish()
    }
}

impl<T: Storable> Iterator for ListIter<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.end {
            return None;
        }
        let item = self.list.get(self.index).transpose()?;
        self.index += 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end.saturating_sub(self.index);
        (left, Some(left))
    }

    fn nth(&mut self, n: usize) -> Option<Self::Item> {
        self.index = self.index.saturating_add(n).min(self.end);
        self.next()
    }
}

impl<T: Storable> DoubleEndedIterator for ListIter<'_, T> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.index >= self.end {
            return None;
        }
        let item = self.list.get(self.end - 1).transpose()?;
        self.end -= 1;
        Some(item)
    }
}

impl<T: Storable> ExactSizeIterator for ListIter<'_, T> {}

impl<T: Storable> std::iter::FusedIterator for ListIter<'_, T> {}

impl<'a, T: Storable> IntoIterator for &'a DiskList<T> {
    type Item = Result<T>;
    type IntoIter = ListIter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
