"""PySpeedup on a Rust engine (distribution ``pyspeedup-rs``).

- :mod:`pyspeedup.concurrent`: ``Buffer`` / ``@buffer`` (a generator run ahead of its
  readers on another thread) and ``@Cache`` (memoization whose recursive calls may run in
  parallel, once per arguments).
- :mod:`pyspeedup.memory`: ``DiskDict`` and ``DiskList`` (a dict and a list paged to disk:
  bounded RAM, persistent across runs, crash-safe).

The API is the original PySpeedup's; its documented examples run unchanged.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pyspeedup-rs")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["concurrent", "memory", "__version__"]

import atexit as _atexit

from pyspeedup import _native

# Background threads (buffer producers, the cache's pool) must leave the interpreter
# before it finalizes: a thread that takes the GIL after that aborts the process.
_atexit.register(_native._shutdown)
