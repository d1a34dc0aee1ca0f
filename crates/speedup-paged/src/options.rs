//! Where a store lives and how much of it is held in memory.

use std::path::{Path, PathBuf};

use crate::error::{Activity, Error, Result};

/// The largest `size_limit` accepted (larger values are clamped to it).
pub(crate) const MAX_SIZE_LIMIT: usize = 1_000_000;

/// Default items per page (the original's `size_limit`).
pub const DEFAULT_SIZE_LIMIT: usize = 1024;
/// Default pages held in memory at once (the original's `max_pages`).
pub const DEFAULT_MAX_PAGES: usize = 256;

/// Options for opening a [`DiskDict`](crate::DiskDict) or [`DiskList`](crate::DiskList).
///
/// # Examples
///
/// ```
/// use speedup_paged::Options;
/// let dir = tempfile::tempdir().unwrap();
/// let opts = Options::new().location(dir.path()).size_limit(1024).max_pages(16);
/// assert_eq!(opts.get_size_limit(), 1024);
///
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    location: Option<PathBuf>,
    size_limit: usize,
    max_pages: usize,
    create_location: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// Defaults: location `~/.PySpeedup`, `size_limit` 1024, `max_pages` 256, folder created
    /// when missing.
    pub fn new() -> Self {
        Options {
            location: None,
            size_limit: DEFAULT_SIZE_LIMIT,
            max_pages: DEFAULT_MAX_PAGES,
            create_location: true,
        }
    }

    /// The folder holding the store files (the original's `file_location`).
    ///
    /// Defaults to `~/.PySpeedup`. An empty path means the current directory.
    pub fn location(mut self, dir: impl AsRef<Path>) -> Self {
        self.location = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Items per page (the original's `size_limit`). Clamped to `1..=1_000_000`.
    ///
    /// Every value keeps memory within the crate's bound ("Memory" in the crate docs);
    /// small values cost a page index entry (about 200 bytes for a dict) per few items.
    pub fn size_limit(mut self, items: usize) -> Self {
        self.size_limit = items.clamp(1, MAX_SIZE_LIMIT);
        self
    }

    /// Pages whose entries may be held in anonymous memory at once (the original's `max_pages`).
    /// Clamped to at least 1.
    pub fn max_pages(mut self, pages: usize) -> Self {
        self.max_pages = pages.max(1);
        self
    }

    /// Whether a missing location folder is created (default `true`, like the original).
    /// With `false`, opening in a missing folder is [`Error::LocationMissing`].
    pub fn create_location(mut self, create: bool) -> Self {
        self.create_location = create;
        self
    }

    /// The configured items per page.
    pub fn get_size_limit(&self) -> usize {
        self.size_limit
    }

    /// The configured pages held in memory.
    pub fn get_max_pages(&self) -> usize {
        self.max_pages
    }

    /// Resolves the folder: the configured one, the current directory for an empty path,
    /// or `~/.PySpeedup`.
    pub(crate) fn resolve_location(&self) -> Result<PathBuf> {
        match &self.location {
            Some(dir) if dir.as_os_str().is_empty() => {
                std::env::current_dir().map_err(|e| Error::io(Path::new("."), e))
            }
            Some(dir) => Ok(dir.clone()),
            None => home_dir().map(|home| home.join(".PySpeedup")).ok_or(Error::NoHome),
        }
    }

    /// The file for `basename` with `extension`, creating the folder if allowed.
    pub(crate) fn store_path(&self, basename: &str, extension: &str) -> Result<PathBuf> {
        validate_basename(basename)?;
        let dir = self.resolve_location()?;
        if !dir.is_dir() {
            if !self.create_location {
                return Err(Error::LocationMissing { path: dir });
            }
            std::fs::create_dir_all(&dir).map_err(|e| Error::io_during(&dir, e, Activity::Creating))?;
        }
        Ok(dir.join(format!("{basename}.{extension}")))
    }
}

fn home_dir() -> Option<PathBuf> {
    let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
    std::env::var_os(var).filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// A basename names one file inside the location: no separators, no `..`, not empty.
fn validate_basename(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty; give each store a name"
    } else if name.contains(['/', '\\']) {
        "it contains a path separator; put folders in Options::location instead"
    } else if name == "." || name == ".." {
        "it names a folder, not a file"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName { name: name.to_string(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basenames_with_separators_are_rejected() {
        for bad in ["", "a/b", "a\\b", "..", ".", "x\0"] {
            assert!(matches!(validate_basename(bad), Err(Error::InvalidName { .. })), "{bad:?}");
        }
        validate_basename("test").unwrap();
        validate_basename("test.v2-final").unwrap();
    }

    #[test]
    fn empty_location_is_the_current_directory() {
        let opts = Options::new().location("");
        assert_eq!(opts.resolve_location().unwrap(), std::env::current_dir().unwrap());
    }

    #[test]
    fn missing_location_is_an_error_when_creation_is_off() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let opts = Options::new().location(&missing).create_location(false);
        assert!(matches!(opts.store_path("x", "spdict"), Err(Error::LocationMissing { .. })));
        let opts = Options::new().location(&missing);
        assert_eq!(opts.store_path("x", "spdict").unwrap(), missing.join("x.spdict"));
        assert!(missing.is_dir());
    }

    #[test]
    fn limits_are_clamped() {
        let o = Options::new().size_limit(0).max_pages(0);
        assert_eq!((o.get_size_limit(), o.get_max_pages()), (1, 1));
    }
}
