"""pyspeedup.memory: DiskDict and DiskList used like dict and list, across runs, threads and
processes, and against bad files."""

import os
import pickle
import threading
import warnings

import pytest

from conftest import run_python
from pyspeedup.memory import Corrupt, DiskDict, DiskList, Locked, RolledBack, StoreError

pytestmark = pytest.mark.timeout(60)


def test_defaults_and_location(home):
    d = DiskDict("x")
    assert (d.size_limit, d.max_pages) == (1024, 16)
    assert d.path.startswith(str(home / ".PySpeedup"))
    d.close()
    d = DiskDict("y", file_location="")  # the current directory
    assert os.path.dirname(os.path.abspath(d.path)) == str(home)
    d.close()
    with pytest.raises(ValueError):
        DiskDict("z", max_pages=0)
    with pytest.raises(ValueError):
        DiskList("z", size_limit=0)


VALUES = [
    0, -1, 2**63 - 1, -(2**63), 2**200, -(3**90), 1.5, float("inf"), -0.0, "", "héllo", "\ud800",
    b"", b"\x00\xff", None, True, False, (1, "a"), frozenset({1, 2}), [1, [2]], {"k": [1.5]},
    complex(1, 2),
]


def test_round_trip_of_every_kind(home):
    with DiskDict("kinds") as d:
        for i, v in enumerate(VALUES):
            d[i] = v
        for i, v in enumerate(VALUES):
            got = d[i]
            assert got == v and type(got) is type(v), (v, got)
    with DiskDict("kinds") as d:  # and after a reopen
        assert [d[i] for i in range(len(VALUES))] == VALUES


def test_keys_of_every_hashable_kind(home):
    keys = [k for k in VALUES if not isinstance(k, (list, dict))]
    with DiskDict("keys") as d:
        for i, k in enumerate(keys):
            d[k] = i
        assert len(d) == len(set(keys))
        for k in keys:
            assert k in d
        with pytest.raises(TypeError):
            d[[1, 2]] = 1
        assert [1, 2] not in d


def test_equal_numbers_are_one_key_like_dict(home):
    with DiskDict("eq") as d:
        d[1] = "a"
        d[1.0] = "b"
        d[True] = "c"
        assert len(d) == 1 and d[1] == "c" and d[1.0] == "c"
        d[0.5] = "half"
        assert d[0.5] == "half" and 0 not in d


def test_dict_protocol(home):
    with DiskDict("proto", size_limit=4, max_pages=2) as d:
        ref = {}
        for i in range(200):
            d[i] = ref[i] = str(i)
        for i in range(0, 200, 3):
            del d[i]
            del ref[i]
        assert len(d) == len(ref)
        assert sorted(d) == sorted(ref)
        assert sorted(d.keys()) == sorted(ref.keys())
        assert sorted(d.values()) == sorted(ref.values())
        assert sorted(d.items()) == sorted(ref.items())
        assert d == ref
        assert d.get(0) is None and d.get(0, "x") == "x" and d.get(1) == "1"
        assert d.pop(1) == "1" and 1 not in d
        assert d.setdefault(1, "one") == "one"
        d.update({1000: "k"}, more=2)
        assert d[1000] == "k" and d["more"] == 2
        with pytest.raises(KeyError):
            d[0]
        with pytest.raises(KeyError):
            del d[0]
        d.clear()
        assert len(d) == 0 and list(d) == []


def test_persistence_across_processes(home):
    # The writer exits without close(): the interpreter's exit closes (flushes) the store.
    done = run_python(
        """
        from pyspeedup.memory import DiskDict, DiskList
        d = DiskDict("persist")
        for i in range(5000):
            d[i] = i * i
        d["s"] = ("tuple", 1)
        l = DiskList("plist")
        l.extend(range(3000))
        """
    )
    assert done.returncode == 0, done.stderr
    with DiskDict("persist") as d:
        assert len(d) == 5001 and d[4999] == 4999**2 and d["s"] == ("tuple", 1)
    with DiskList("plist") as l:
        assert len(l) == 3000 and l[-1] == 2999


def test_keys_are_found_whatever_pythons_hash_seed(home):
    for seed, action in (("1", "write"), ("2", "read")):
        done = run_python(
            f"""
            from pyspeedup.memory import DiskDict
            with DiskDict("seeded") as d:
                if "{action}" == "write":
                    for i in range(2000):
                        d["key%d" % i] = i
                        d[("t", i)] = i
                else:
                    assert all(d["key%d" % i] == i and d[("t", i)] == i for i in range(2000))
                    print("found", len(d))
            """,
            env={"PYTHONHASHSEED": seed},
        )
        assert done.returncode == 0, done.stderr
    assert done.stdout == "found 4000\n"


def test_second_opener_in_this_process_is_locked(home):
    d = DiskDict("lock")
    with pytest.raises(Locked) as raised:
        DiskDict("lock")
    assert isinstance(raised.value, OSError) and isinstance(raised.value, StoreError)
    assert "close that handle" in str(raised.value)
    d.close()
    DiskDict("lock").close()  # free again


def test_second_opener_in_another_process_is_locked(home):
    d = DiskDict("plock")
    d[1] = 1
    d.flush()
    done = run_python(
        """
        from pyspeedup.memory import DiskDict, Locked
        try:
            DiskDict("plock")
        except Locked as e:
            print("Locked")
        """
    )
    assert done.stdout == "Locked\n", done.stderr
    d.close()


def test_corrupt_file_raises_corrupt(home):
    with DiskDict("bad") as d:
        for i in range(100):
            d[i] = i
        path = d.path
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(os.urandom(size))  # both header slots and every page
    with pytest.raises(StoreError) as raised:
        DiskDict("bad")
    assert isinstance(raised.value, (Corrupt, OSError))


def test_damaged_newest_header_warns_and_rolls_back(home):
    with DiskDict("rolled") as d:
        d[1] = "first"
        d.flush()
        d[2] = "second"
        d.flush()
        path = d.path
    with DiskDict("rolled") as d:  # which slot is newest: damage both, one at a time
        pass
    for offset in (0, 4096):
        with open(path, "rb") as f:
            saved = f.read()
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(os.urandom(4096))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                d = DiskDict("rolled")
            except StoreError:
                d = None  # the older slot was the one damaged beyond use: an error, not garbage
        if d is not None:
            assert all(d.get(k) in (None, v) for k, v in ((1, "first"), (2, "second")))
            d.close()
            if any(issubclass(w.category, RolledBack) for w in caught):
                assert "flush" in str(caught[0].message)
        with open(path, "wb") as f:
            f.write(saved)


def test_foreign_file_raises_corrupt(home):
    folder = home / ".PySpeedup"
    folder.mkdir()
    with DiskDict("probe") as d:
        name = os.path.basename(d.path).replace("probe", "foreign")
    (folder / name).write_bytes(b"this is not a store" * 100)
    with pytest.raises(StoreError):
        DiskDict("foreign")


def test_closed_store_raises_value_error(home):
    d = DiskDict("closed")
    d.close()
    d.close()  # idempotent
    assert d.closed
    with pytest.raises(ValueError):
        d[1] = 1


def test_a_closed_store_raises_value_error_first_everywhere(home):
    # As for a closed file: `with`, iterators made before the close, and calls whose
    # argument cannot be encoded all raise ValueError, not TypeError or a stale answer.
    d = DiskDict("closed_everywhere")
    for i in range(10):
        d[i] = i
    keys = iter(d)
    next(keys)
    d.close()
    with pytest.raises(ValueError):
        next(keys)
    with pytest.raises(ValueError):
        with d:
            pass
    with pytest.raises(ValueError):
        [1] in d
    with pytest.raises(ValueError):
        d.get([1])
    with pytest.raises(ValueError):
        d[1] = lambda: 0  # unpicklable value
    with pytest.raises(ValueError):
        d.update({})  # nothing to add: still a closed store
    l = DiskList("closed_list")
    l.extend(range(1000))
    items = iter(l)
    next(items)
    l.close()
    with pytest.raises(ValueError):
        next(items)  # the rest of its chunk is not handed out after the close
    with pytest.raises(ValueError):
        l.append(lambda: 0)


def test_a_close_that_fails_keeps_the_entries_for_the_next_close(home):
    # A full disk (a file-size limit) makes close() fail; the store stays open with its
    # entries, and a close() once there is room again flushes them all.
    done = run_python(
        """
        import os, resource, signal
        from pyspeedup.memory import DiskDict
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        d = DiskDict("full")
        d[0] = "first"
        d.flush()
        for i in range(1, 20000):
            d[i] = "x" * 50
        # No room to grow the file: the close's flush cannot write its pages.
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(d.path), hard))
        try:
            d.close()
            raise SystemExit("close() succeeded on a full disk")
        except OSError:
            pass
        assert not d.closed, "a failed close released the store"
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        d.close()
        with DiskDict("full") as again:
            assert len(again) == 20000, len(again)
        print("ok")
        """
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stdout + done.stderr


def test_a_store_dropped_unclosed_on_a_full_disk_says_so(home):
    done = run_python(
        """
        import gc, os, resource, signal
        from pyspeedup.memory import DiskDict
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        d = DiskDict("dropped")
        d[0] = 0
        d.flush()
        for i in range(1, 3000):
            d[i] = "x" * 50
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(d.path), hard))
        del d
        gc.collect()
        """
    )
    assert "flush failed" in done.stderr and "lost" in done.stderr, done.stderr


def test_threads_share_one_dict(home):
    d = DiskDict("threads", size_limit=64, max_pages=4)
    errors = []

    def work(t):
        try:
            for i in range(2000):
                d[(t, i)] = i
                assert d[(t, i)] == i
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "deadlock"
    assert errors == []
    assert len(d) == 8000
    d.close()


def test_list_protocol(home):
    with DiskList("list", size_limit=3, max_pages=2) as l:
        ref = []
        for i in range(20):
            l.append(i)
            ref.append(i)
        l.insert(0, "first")
        ref.insert(0, "first")
        l.insert(-1, "before-last")
        ref.insert(-1, "before-last")
        l.insert(1000, "end")
        ref.insert(1000, "end")
        assert list(l) == ref and len(l) == len(ref)
        assert l[0] == "first" and l[-1] == "end" and l[2:8:2] == ref[2:8:2]
        l[3] = "three"
        ref[3] = "three"
        del l[1]
        del ref[1]
        del l[::5]
        del ref[::5]
        assert list(l) == ref
        assert l.pop() == ref.pop() and l.pop(0) == ref.pop(0)
        assert "three" in l and l.index("three") == ref.index("three")
        l += ["x", "y"]
        ref += ["x", "y"]
        assert list(l) == ref
        assert list(reversed(l)) == list(reversed(ref))
        with pytest.raises(IndexError):
            l[len(ref)]
        with pytest.raises(IndexError):
            l[-len(ref) - 1] = 0
        l.clear()
        with pytest.raises(IndexError):
            l.pop()
        assert list(l) == []


def test_list_iterator_sees_appends(home):
    with DiskList("grow") as l:
        l.extend(range(3))
        seen = []
        for v in l:
            seen.append(v)
            if v < 600:
                l.append(v + 3)
        assert seen == list(range(603))


def test_unpicklable_value_is_a_type_error_and_nothing_is_stored(home):
    with DiskDict("objs") as d:
        with pytest.raises((TypeError, pickle.PicklingError)):
            d["p"] = pickle  # a module does not pickle
        assert "p" not in d and len(d) == 0


def test_items_and_values_skip_keys_removed_by_another_thread(home):
    d = DiskDict("churn", size_limit=32, max_pages=2)
    for i in range(3000):
        d[i] = i
    stop = threading.Event()

    def churn():
        j = 3000
        while not stop.is_set():
            d[j] = j
            d.pop(j - 3000, None)
            j += 1

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(3):
            assert all(k == v for k, v in d.items())
            assert all(isinstance(v, int) for v in d.values())
    finally:
        stop.set()
        t.join(timeout=30)
    assert not t.is_alive()
    d.close()


def test_close_while_another_thread_writes(home):
    d = DiskDict("closing")
    outcome = []

    def write():
        try:
            for i in range(10**6):
                d[i % 100] = i
            outcome.append("finished")
        except ValueError:
            outcome.append("closed")

    t = threading.Thread(target=write)
    t.start()
    d.close()
    t.join(timeout=30)
    assert not t.is_alive() and outcome in (["closed"], ["finished"])
    with DiskDict("closing") as again:  # released, and readable
        assert len(again) <= 100


def test_huge_list_index_is_an_index_error(home):
    with DiskList("huge") as l:
        l.append(1)
        for bad in (10**30, -(10**30)):
            with pytest.raises(IndexError):
                l[bad]
        with pytest.raises(TypeError):
            l["0"]
