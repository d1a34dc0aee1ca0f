//! speedup-cache (work in progress).
