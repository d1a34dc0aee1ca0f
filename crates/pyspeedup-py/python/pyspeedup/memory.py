"""Storage classes whose RAM use stays bounded however large they grow.

``DiskDict(file_basename, size_limit=1024, max_pages=16, file_location=~/.PySpeedup)``
and ``DiskList`` (same parameters) are used like a ``dict`` and a ``list``, and persist
across runs: opening the same ``file_basename`` in the same ``file_location`` finds every
entry of the last run. Use them in ``with`` blocks, or call ``close()``; open stores are
also closed (flushed) when the interpreter exits.

Keys and values may be any picklable object; ``int``, ``str``, ``bytes``, ``float``,
``bool`` and ``None`` are stored without pickle. Keys are placed by a stable hash of their
stored bytes, never by Python's salted ``hash()``. As in a ``dict``, ``1``, ``1.0`` and
``True`` are the same key.

Errors: ``KeyError`` and ``IndexError`` as for ``dict`` and ``list``; :class:`Locked` when
the store is open elsewhere (this process or another); :class:`Corrupt` for a damaged or
foreign file; other ``OSError`` for I/O. A store whose newest header is damaged opens as of
its previous flush, with a :class:`RolledBack` warning. Disk I/O runs with the GIL released, and the
objects may be shared between threads.
"""

import atexit
import weakref
from collections.abc import ItemsView, MutableMapping, MutableSequence, ValuesView

from pyspeedup import _native
from pyspeedup._native import Corrupt, Locked, RolledBack, StoreError, TypeMismatch

__all__ = ["DiskDict", "DiskList", "StoreError", "Locked", "Corrupt", "TypeMismatch", "RolledBack"]

_open_stores = weakref.WeakValueDictionary()  # id -> store (stores are unhashable, like dict)


@atexit.register
def _close_all():
    for store in list(_open_stores.values()):
        try:
            store.close()
        except Exception as error:  # noqa: BLE001 - report every store, then go on
            # Not silent: the entries written since the last flush are lost.
            import sys

            print(
                f"pyspeedup: closing {store.path} at exit failed, entries written since its "
                f"last flush are lost: {error}",
                file=sys.stderr,
            )


_MISSING = object()


class _Items(ItemsView):
    """``items()``: iteration goes over the keys present when it starts, skipping those
    removed since (by this thread or another)."""

    __slots__ = ()

    def __iter__(self):
        mapping = self._mapping
        for key in mapping:
            value = mapping.get(key, _MISSING)
            if value is not _MISSING:
                yield (key, value)


class _Values(ValuesView):
    """``values()``: like ``items()``, without the keys."""

    __slots__ = ()

    def __iter__(self):
        mapping = self._mapping
        for key in mapping:
            value = mapping.get(key, _MISSING)
            if value is not _MISSING:
                yield value


class DiskDict(_native.DiskDict, MutableMapping):
    __doc__ = _native.DiskDict.__doc__

    def __init__(self, *args, **kwargs):
        _open_stores[id(self)] = self

    def items(self):
        """A view of the (key, value) pairs."""
        return _Items(self)

    def update(self, *args, **kwargs):
        """As ``dict.update``; ``ValueError`` on a closed store even with nothing to add."""
        if self.closed:
            raise ValueError("operation on a closed store")
        MutableMapping.update(self, *args, **kwargs)

    def values(self):
        """A view of the values."""
        return _Values(self)


class DiskList(_native.DiskList, MutableSequence):
    __doc__ = _native.DiskList.__doc__

    def __init__(self, *args, **kwargs):
        _open_stores[id(self)] = self
