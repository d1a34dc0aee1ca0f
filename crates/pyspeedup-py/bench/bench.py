"""The `python` group of `cargo xtask bench`: pyspeedup-rs against its Python peers, all in
one run of one interpreter.

Prints one tab-separated RESULT line per measurement (the format of
crates/speedup-bench/src/harness.rs, crate `python`), and progress on stderr. Peers that
are not installed are skipped. Usage: python bench.py [--quick] [--no-original]

The original PySpeedup 0.1.2.2 runs in a second interpreter (it has the same import
name), see original.py.
"""

import functools
import os
import random
import shelve
import signal
import subprocess
import sys
import tempfile
import time

QUICK = "--quick" in sys.argv
N = 10_000 if QUICK else 100_000
HITS = 100_000 if QUICK else 1_000_000


def result(workload, implementation, value, unit, higher=True):
    print(f"RESULT\tpython\t{workload}\t{implementation}\t{value:.6g}\t{unit}\t{value:.6g}\t{value:.6g}\t1\t{'higher' if higher else 'lower'}")
    sys.stdout.flush()


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


def stores(folder):
    """name -> (open(), close(store)) for each installed key-value store."""
    from pyspeedup.memory import DiskDict

    out = {
        "pyspeedup-rs": (lambda: DiskDict("bench", file_location=folder), lambda s: s.close()),
    }
    try:
        import diskcache

        out["diskcache"] = (lambda: diskcache.Cache(os.path.join(folder, "dc")), lambda s: s.close())
    except ImportError:
        progress("diskcache not installed: skipped")
    try:
        from sqlitedict import SqliteDict

        def close(s):
            s.commit()
            s.close()

        out["sqlitedict"] = (lambda: SqliteDict(os.path.join(folder, "sq.sqlite"), autocommit=False), close)
    except ImportError:
        progress("sqlitedict not installed: skipped")
    out["shelve"] = (lambda: shelve.open(os.path.join(folder, "shelf")), lambda s: s.close())
    try:
        import lmdbm

        out["lmdbm"] = (lambda: lmdbm.Lmdb.open(os.path.join(folder, "lmdb"), "c", map_size=2**32), lambda s: s.close())
    except ImportError:
        progress("lmdbm not installed: skipped")
    return out


# Keys each store accepts: shelve and lmdbm take str (or bytes) keys only.
STR_KEYS_ONLY = {"shelve", "lmdbm"}


def bench_stores():
    random.seed(7)
    for kind in ("int", "str"):
        if kind == "int":
            keys = list(range(N))
            values = keys
        else:
            keys = ["key-%d" % i for i in range(N)]
            values = ["value-%d" % i for i in range(N)]
        order = random.sample(range(N), N)
        for name, (open_, close) in stores(tempfile.mkdtemp()).items():
            ks = [str(k) for k in keys] if name in STR_KEYS_ONLY and kind == "int" else keys
            vs = [str(v) for v in values] if name == "lmdbm" else values
            store = open_()
            start = time.perf_counter()
            for k, v in zip(ks, vs):
                store[k] = v
            close(store)
            inserts = N / (time.perf_counter() - start)
            start = time.perf_counter()
            store = open_()
            len(store)
            reopen = (time.perf_counter() - start) * 1e3
            start = time.perf_counter()
            for i in order:
                store[ks[i]]
            gets = N / (time.perf_counter() - start)
            close(store)
            progress(f"{kind}->{kind} {name}: {inserts:,.0f} inserts/s, {gets:,.0f} gets/s, reopen {reopen:.1f} ms")
            result(f"DiskDict {kind}->{kind}: inserts + close", name, inserts, "ops/s")
            result(f"DiskDict {kind}->{kind}: random gets", name, gets, "ops/s")
            result(f"DiskDict {kind}->{kind}: reopen + len", name, reopen, "ms", higher=False)


def bench_cache():
    from pyspeedup.concurrent import Cache

    def ident(n):
        return n

    impls = {"pyspeedup-rs": Cache(ident), "functools.lru_cache": functools.lru_cache(maxsize=None)(ident)}
    try:
        import cachetools

        impls["cachetools.cached"] = cachetools.cached(cachetools.LRUCache(maxsize=1 << 20))(ident)
    except ImportError:
        progress("cachetools not installed: skipped")
    for name, f in impls.items():
        for i in range(1000):
            f(i)
        start = time.perf_counter()
        for i in range(HITS // 1000):
            for j in range(1000):
                f(j)
        per_hit = (time.perf_counter() - start) / HITS * 1e9
        progress(f"cache hit {name}: {per_hit:.0f} ns")
        result("Cache: hit, 1 int argument", name, per_hit, "ns", higher=False)


def bench_buffer():
    from pyspeedup.concurrent import Buffer

    def gen():
        for i in range(N * 2):
            yield i

    impls = {"pyspeedup-rs": lambda: Buffer(gen, 16)}
    try:
        from prefetch_generator import BackgroundGenerator

        impls["prefetch_generator"] = lambda: BackgroundGenerator(gen(), 16)
    except ImportError:
        progress("prefetch_generator not installed: skipped")
    impls["plain generator (no thread)"] = gen
    for name, make in impls.items():
        start = time.perf_counter()
        count = sum(1 for _ in make())
        rate = count / (time.perf_counter() - start)
        progress(f"buffer {name}: {rate:,.0f} items/s")
        result("Buffer: iterate a counter generator", name, rate, "items/s")


def bench_original():
    """The original PySpeedup, in its own interpreter (same import name), under a deadline."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    import original

    try:
        folder = original.vendor(os.path.join(tempfile.gettempdir(), "pyspeedup-0.1.2.2-vendored"))
    except Exception as e:  # noqa: BLE001 - the original is optional
        progress(f"the original PySpeedup is not available: {e}")
        return
    env = dict(os.environ, PYTHONPATH=folder)
    results = os.path.join(tempfile.mkdtemp(), "results.txt")
    open(results, "w").close()
    log = open(results + ".log", "w")
    # Its own session, so that its helper processes (multiprocessing) can be ended with it.
    child = subprocess.Popen(
        [sys.executable, os.path.join(here, "original.py"), str(500 if QUICK else N), results],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=tempfile.mkdtemp(), start_new_session=True,
    )
    try:
        child.wait(timeout=120 if QUICK else 1200)
    except subprocess.TimeoutExpired:
        progress("the original PySpeedup hung: the figures it produced before are kept")
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()
    log.close()
    with open(results + ".log") as f:
        sys.stderr.write(f.read()[-3000:])
    with open(results) as f:
        sys.stdout.write(f.read())
    sys.stdout.flush()


if __name__ == "__main__":
    bench_stores()
    bench_cache()
    bench_buffer()
    if "--no-original" not in sys.argv:
        bench_original()
