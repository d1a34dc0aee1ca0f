//! Pages whose records are known to be valid archives of the store's types, with safe,
//! typed accessors (as redb's accessors are). This is the one place that turns page bytes
//! into `&K::Archived` / `&V::Archived` / `&T::Archived`.
//!
//! A page becomes one of these in two ways only:
//! - [`DictPage::validate`] / [`ItemPage::validate`] check every record with rkyv's
//!   validator (after the extent's checksum and [`PageView::parse`]'s structural checks);
//! - `trusted` rebuilds one from a layout that the store cached after such a validation, or
//!   after encoding the page itself from records of these very types.

use std::marker::PhantomData;

use crate::page::PageView;
use crate::record::{self, Storable};

/// A dict page: entries of a key record and a value record, sorted by hash.
pub(crate) struct DictPage<'a, K, V> {
    view: PageView<'a>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for DictPage<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for DictPage<'_, K, V> {}

impl<'a, K: Storable, V: Storable> DictPage<'a, K, V> {
    /// Checks every key and value record; the error names the first bad one.
    pub(crate) fn validate(view: PageView<'a>) -> Result<Self, String> {
        for i in 0..view.len() {
            record::check::<K>(view.record(i, 0)).map_err(|e| format!("key {i}: {e}"))?;
            record::check::<V>(view.record(i, 1)).map_err(|e| format!("value {i}: {e}"))?;
        }
        Ok(DictPage { view, _types: PhantomData })
    }

    /// # Safety
    ///
    /// `view` must show bytes that passed [`DictPage::validate`] for these `K` and `V`, or
    /// that the store encoded from records archived as `K` and `V`, and that have not
    /// changed since.
    pub(crate) unsafe fn trusted(view: PageView<'a>) -> Self {
        DictPage { view, _types: PhantomData }
    }

    pub(crate) fn len(&self) -> usize {
        self.view.len()
    }

    pub(crate) fn hash(&self, i: usize) -> u64 {
        self.view.hash(i)
    }

    pub(crate) fn lower_bound(&self, hash: u64) -> usize {
        self.view.lower_bound(hash)
    }

    pub(crate) fn key(&self, i: usize) -> &'a K::Archived {
        // SAFETY: every record of the page is a valid `K` key / `V` value (the type's
        // invariant, upheld by `validate` and the callers of `trusted`). Tests that catch a
        // violation: `tests/errors.rs` (bit flips, truncation) and `tests/model.rs`.
        unsafe { record::archived::<K>(self.view.record(i, 0)) }
    }

    pub(crate) fn value(&self, i: usize) -> &'a V::Archived {
        // SAFETY: as in `key`.
        unsafe { record::archived::<V>(self.view.record(i, 1)) }
    }

    /// The raw bytes of entry `i`'s key and value records (to copy them into a new page).
    pub(crate) fn records(&self, i: usize) -> (&'a [u8], &'a [u8]) {
        (self.view.record(i, 0), self.view.record(i, 1))
    }
}

/// A list page: one item record per entry, in list order.
pub(crate) struct ItemPage<'a, T> {
    view: PageView<'a>,
    _types: PhantomData<fn() -> T>,
}

impl<T> Clone for ItemPage<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ItemPage<'_, T> {}

impl<'a, T: Storable> ItemPage<'a, T> {
    /// Checks every item record; the error names the first bad one.
    pub(crate) fn validate(view: PageView<'a>) -> Result<Self, String> {
        for i in 0..view.len() {
            record::check::<T>(view.record(i, 0)).map_err(|e| format!("item {i}: {e}"))?;
        }
        Ok(ItemPage { view, _types: PhantomData })
    }

    /// # Safety
    ///
    /// As [`DictPage::trusted`], for items of type `T`.
    pub(crate) unsafe fn trusted(view: PageView<'a>) -> Self {
        ItemPage { view, _types: PhantomData }
    }

    pub(crate) fn len(&self) -> usize {
        self.view.len()
    }

    pub(crate) fn item(&self, i: usize) -> &'a T::Archived {
        // SAFETY: every record of the page is a valid `T` (the type's invariant, upheld by
        // `validate` and the callers of `trusted`). Caught by `tests/errors.rs` and
        // `tests/model.rs` if broken.
        unsafe { record::archived::<T>(self.view.record(i, 0)) }
    }

    /// The raw bytes of item `i`'s record.
    pub(crate) fn record(&self, i: usize) -> &'a [u8] {
        self.view.record(i, 0)
    }
}
