//! The life cycle both stores share, in one place: open (name → path, lock, header),
//! the count check against the header, flush (write the pages, commit the root), close,
//! discard and the flush on drop. `DiskDict` and `DiskList` differ only in their pages and
//! root, which they hand over through [`Store::write_pages`].

use crate::error::{Error, Result};
use crate::file::StoreFile;
use crate::header::{Identity, Kind};
use crate::options::Options;

/// Opens (creating if missing) and locks the store `name` of `kind` in `opts`' location.
pub(crate) fn open_file(name: &str, opts: &Options, kind: Kind, identity: &Identity) -> Result<StoreFile> {
    let path = opts.store_path(name, kind.extension())?;
    let _span =
        tracing::debug_span!("speedup_paged::open", store = kind.name(), path = %path.display()).entered();
    StoreFile::open(&path, kind, identity)
}

/// Fails with [`Error::Corrupt`] unless the pages the root names hold as many entries as
/// the header says: a root and a header from different flushes are a damaged file.
pub(crate) fn check_count(file: &StoreFile, counted: u64) -> Result<()> {
    let recorded = file.header().entries;
    if counted == recorded {
        return Ok(());
    }
    Err(Error::corrupt(file.path(), format!("pages hold {counted} entries, the header says {recorded}")))
}

/// A store's side of the shared life cycle; the provided methods are the life cycle.
pub(crate) trait Store {
    /// The store's file.
    fn file(&self) -> &StoreFile;

    /// The store's file, to commit to.
    fn file_mut(&mut self) -> &mut StoreFile;

    /// Whether anything changed since the last commit (read and cleared by the life cycle).
    fn dirty(&mut self) -> &mut bool;

    /// How many entries (or items) the store holds.
    fn entries(&self) -> u64;

    /// Writes every pending change into pages (copy-on-write) and returns the encoded
    /// root that names them.
    fn write_pages(&mut self) -> Result<Vec<u8>>;

    /// Writes the pages, then switches the header to the new root (the commit: two
    /// `fdatasync`s). A no-op when nothing changed.
    fn flush_store(&mut self) -> Result<()> {
        if !*self.dirty() {
            return Ok(());
        }
        let store = self.file().kind().name();
        let path = self.file().path().display().to_string();
        let _span =
            tracing::debug_span!("speedup_paged::flush", store, path, entries = self.entries()).entered();
        let root = self.write_pages()?;
        let entries = self.entries();
        self.file_mut().commit(&root, entries)?;
        *self.dirty() = false;
        Ok(())
    }

    /// Flushes for `close`: the error is the caller's, so the drop that follows must not
    /// retry and log it.
    fn close_store(&mut self) -> Result<()> {
        let result = self.flush_store();
        *self.dirty() = false;
        result
    }

    /// Forgets the changes since the last commit: the drop that follows does not flush.
    fn discard_store(&mut self) {
        *self.dirty() = false;
    }

    /// The flush of `Drop`, whose error can only be logged.
    fn flush_on_drop(&mut self) {
        if let Err(error) = self.flush_store() {
            let store = self.file().kind().name();
            tracing::error!(store, path = %self.file().path().display(), %error, "flush on drop failed; changes since the last successful flush are lost (call close() to see such errors)");
        }
    }
}
