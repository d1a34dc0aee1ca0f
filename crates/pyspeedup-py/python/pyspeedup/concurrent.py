"""Concurrent helpers: ``Buffer`` / ``buffer`` and ``Cache``.

``Buffer(generator, buffersize=16, haltCondition=uniformlyNonDecreasing)`` runs a
generator on another thread, ``buffersize`` items ahead of the furthest item asked for,
and caches what it produces: index it (``count[15]``), iterate it any number of times,
search it (``15 in count``). ``x in buffer`` stops when the halting condition
``f(buffer, item, attempts)`` says ``item`` cannot come later, or when the sequence ends
(the original's test was inverted and hung at the end of a finite sequence). An exception
raised by the generator is raised to the reader that reaches it.

``@Cache`` memoizes a function by its arguments (any hashable, picklable arguments;
``int``, ``str``, ``bytes``, ``float`` without pickle). Two calls are one when their
arguments encode alike: numbers that compare equal as a dict's keys do (``1``, ``1.0``,
``True``) are one argument, as with ``functools.lru_cache``; values of other types are
told apart by type and pickled bytes (``Decimal(1)`` is not ``1``). ``f.apply_async(*args)`` starts a
computation on the pool and returns at once; ``f.batch_async((a,), (b,))`` does so only
when two or more are missing. Each value is computed once however many threads ask; an
exception is raised to every caller waiting for it and is not cached; a call that depends
on itself raises :class:`CycleError` instead of hanging. Waiting releases the GIL.
"""

import functools

from pyspeedup import _native
from pyspeedup._native import CycleError, absolutelyNonDecreasing, uniformlyNonDecreasing

__all__ = [
    "Buffer",
    "buffer",
    "Cache",
    "CycleError",
    "uniformlyNonDecreasing",
    "absolutelyNonDecreasing",
]


class Buffer(_native.Buffer):
    __doc__ = _native.Buffer.__doc__


def buffer(buffersize=16, haltCondition=uniformlyNonDecreasing):
    """A decorator to create a concurrently buffered generator.

    Used as ``@buffer()``, ``@buffer(4)`` or ``@buffer(haltCondition=f)`` (and, as a
    convenience, bare ``@buffer``)."""
    if callable(buffersize) and not isinstance(buffersize, int):
        return Buffer(buffersize)

    def decorator(generator):
        return Buffer(generator, buffersize, haltCondition)

    return decorator


class Cache(_native.Cache):
    __doc__ = _native.Cache.__doc__

    def __init__(self, func):
        functools.update_wrapper(self, func)
