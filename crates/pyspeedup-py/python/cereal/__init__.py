"""cereal's ``eat`` (distribution ``pyspeedup-rs``): fan one object out to many pointers.

``eat(obj, its, method=list, *args, compute=False, **kwargs)`` returns ``method`` applied
to ``its`` pointers to ``obj`` (no copies): ``~p`` is ``obj``, ``p[i]`` is ``obj[i]``, and
``p[i] = v`` writes ``obj[i]``, so workers in a ``map``, a thread pool or asyncio tasks
traverse and update segments of one data set in place. With ``compute=True`` ``method``
gets ``obj`` itself ``its`` times instead (e.g. ``method=pd.DataFrame, columns=[...]``
builds a table of ``its`` rows; without a ``method``, a pandas DataFrame when pandas is
installed, else a list of lists).

Unlike the original (built on ``pointers.py``, which dereferences raw addresses), a
pointer here is an ordinary reference: it keeps ``obj`` alive, cannot dangle, and writes
through it never crash. ``np.array(..., copy=False)``, as the original's examples write
it, is passed to numpy 2 as ``copy=None`` (numpy 2 made ``copy=False`` mean "raise if a
copy is needed", and building an array of pointers needs one).
"""

__all__ = ["eat", "Pointer"]


class Pointer:
    """A reference to one object: ``~p`` is the object, ``p[i]`` / ``p[i] = v`` /
    ``del p[i]`` index it, and its other public attributes are the object's.

    It deliberately has no ``len()``: numpy then stores pointers in an object array
    instead of copying their contents into a new one."""

    __slots__ = ("_obj", "__weakref__")

    def __init__(self, obj):
        object.__setattr__(self, "_obj", obj)

    def __invert__(self):
        return self._obj

    def __getitem__(self, index):
        return self._obj[index]

    def __setitem__(self, index, value):
        self._obj[index] = value

    def __delitem__(self, index):
        del self._obj[index]

    def __iter__(self):
        return iter(self._obj)

    def __getattr__(self, name):
        # Only public names: numpy and others probe dunder names (``__array__``, ...)
        # to decide how to treat an object, and a pointer must stay a pointer.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._obj, name)

    def __setattr__(self, name, value):
        raise AttributeError("a pointer's attributes are its object's: use (~p).%s = ..." % name)

    def __repr__(self):
        return "<pointer to %s object at %#x>" % (type(self._obj).__name__, id(self._obj))


def _is_numpy_array_function(method):
    return getattr(method, "__module__", None) == "numpy" and getattr(method, "__name__", None) in (
        "array",
        "asarray",
    )


def eat(obj, its, method=None, *args, compute=False, **kwargs):
    """Create an iterable set of ``its`` pointers to ``obj``, structured by ``method``.

    - obj: the object to repeat (never copied).
    - its: the number of pointers (an int >= 0).
    - method: a callable taking the list of pointers (or, with ``compute=True``, of
      ``obj`` repeated) plus ``*args`` and ``**kwargs``: ``list`` (the default),
      ``np.array``, ``pd.DataFrame``, ...
    - compute: False: pointers (``~p`` reads the object); True: the repeated object
      itself (e.g. a DataFrame of ``its`` rows).

    Returns what ``method`` returns.
    """
    if isinstance(its, bool) or not isinstance(its, int):
        raise TypeError("its must be an int, not %s" % type(its).__name__)
    if its < 0:
        raise ValueError("its must be >= 0, not %d" % its)
    if method is None:
        method = list
        if compute:
            try:
                import pandas

                method = pandas.DataFrame
            except ImportError:
                method = list
    if _is_numpy_array_function(method) and kwargs.get("copy") is False:
        import numpy

        if int(numpy.__version__.split(".")[0]) >= 2:
            kwargs["copy"] = None
    if compute:
        items = [obj] * its
        if method is list and not args and not kwargs:
            return [list(obj) if isinstance(obj, (list, tuple)) else obj for obj in items]
        return method(items, *args, **kwargs)
    pointer = Pointer(obj)
    items = [pointer] * its
    if _is_numpy_array_function(method) and "dtype" not in kwargs:
        # An object array of pointers, never an attempt to read through them.
        kwargs["dtype"] = object
    return method(items, *args, **kwargs)
