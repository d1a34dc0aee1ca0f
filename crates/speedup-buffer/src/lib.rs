//! speedup-buffer (work in progress).
