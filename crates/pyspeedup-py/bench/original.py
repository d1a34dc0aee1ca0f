"""The original PySpeedup 0.1.2.2, for the `python` benchmark group.

Its sdist does not install (setup.py reads a LICENSE file the sdist does not ship) and its
imports are Python 2's, so `vendor()` takes the package folder out of the sdist that pip
downloads (`pip download --no-clean` keeps it unpacked when its metadata step fails) and
applies the two import patches of shared/PYTHON-ANCHORS.md. Run as a script (with the
vendored folder first on PYTHONPATH), it measures the original and prints RESULT lines
named like bench.py's (on as many items as bench.py: its slowness only shows once a store outgrows its 16 pages of 1,024 items in RAM).
"""

import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

NAME = "PySpeedup 0.1.2.2 (original)"


def vendor(dest):
    """Puts the original's `pyspeedup` package in `dest` (once); returns `dest`."""
    if os.path.isdir(os.path.join(dest, "pyspeedup")):
        return dest
    scratch = tempfile.mkdtemp()
    out = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-clean", "--no-deps", "--no-binary", ":all:",
         "--disable-pip-version-check", "-d", scratch, "pyspeedup==0.1.2.2"],
        capture_output=True, text=True,
    )
    found = re.search(r"(/\S*pip-download-[^/\s]+/pyspeedup_[0-9a-f]+)", out.stdout + out.stderr)
    if not found or not os.path.isdir(os.path.join(found.group(1), "pyspeedup")):
        raise RuntimeError("could not get the PySpeedup 0.1.2.2 sdist:\n" + out.stderr[-2000:])
    os.makedirs(dest, exist_ok=True)
    shutil.copytree(os.path.join(found.group(1), "pyspeedup"), os.path.join(dest, "pyspeedup"))
    shutil.rmtree(os.path.dirname(found.group(1)), ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
    memory = os.path.join(dest, "pyspeedup", "memory")
    for name in os.listdir(memory):
        if name.endswith(".py"):
            path = os.path.join(memory, name)
            with open(path) as f:
                text = f.read()
            text = text.replace("from collections import ", "from collections.abc import ")
            text = text.replace("import cPickle", "import pickle as cPickle")
            with open(path, "w") as f:
                f.write(text)
    return dest


OUT = sys.stdout


def result(workload, value, unit, higher=True):
    print(f"RESULT\tpython\t{workload}\t{NAME}\t{value:.6g}\t{unit}\t{value:.6g}\t{value:.6g}\t1\t{'higher' if higher else 'lower'}", file=OUT)
    OUT.flush()


def count():
    i = 0
    while True:
        yield i
        i += 1


def main():
    global OUT
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    # RESULT lines go to a file: the original's helper processes inherit stdout and keep it
    # open after this process ends.
    if len(sys.argv) > 2:
        OUT = open(sys.argv[2], "a")
    from pyspeedup.concurrent import Buffer, Cache
    from pyspeedup.memory import DiskDict

    assert "_native" not in sys.modules.get("pyspeedup").__dict__, "not the original"
    random.seed(7)
    stores = []
    for kind in ("int", "str"):
        folder = tempfile.mkdtemp()
        keys = list(range(n)) if kind == "int" else ["key-%d" % i for i in range(n)]
        values = keys if kind == "int" else ["value-%d" % i for i in range(n)]
        order = random.sample(range(n), n)
        d = DiskDict("bench", file_location=folder)
        start = time.perf_counter()
        for k, v in zip(keys, values):
            d[k] = v
        inserts = n / (time.perf_counter() - start)
        result(f"DiskDict {kind}->{kind}: inserts + close", inserts, "ops/s")
        start = time.perf_counter()
        for i in order:
            d[keys[i]]
        gets = n / (time.perf_counter() - start)
        result(f"DiskDict {kind}->{kind}: random gets", gets, "ops/s")
        print(f"{kind}->{kind} {NAME}: {inserts:,.0f} inserts/s, {gets:,.0f} gets/s ({n} items)", file=sys.stderr)
        stores.append((kind, d, folder, keys))

    @Cache
    def ident(x):
        return x

    for i in range(100):
        ident(i)
    hits = 2000
    start = time.perf_counter()
    for i in range(hits):
        ident(i % 100)
    per_hit = (time.perf_counter() - start) / hits * 1e9
    print(f"cache hit {NAME}: {per_hit:,.0f} ns", file=sys.stderr)
    result("Cache: hit, 1 int argument", per_hit, "ns", higher=False)

    b = Buffer(count, 16)
    start = time.perf_counter()
    got = 0
    for v in b():
        got += 1
        if got == 2000:
            break
    rate = got / (time.perf_counter() - start)
    print(f"buffer {NAME}: {rate:,.0f} items/s", file=sys.stderr)
    result("Buffer: iterate a counter generator", rate, "items/s")
    # Last, as it may hang: the original's reopen (its page lookup can loop forever on a
    # reloaded store).
    for kind, d, folder, keys in stores:
        d.__exit__(None, None, None)
        start = time.perf_counter()
        d = DiskDict("bench", file_location=folder)
        len(d)
        d[keys[0]]
        reopen = (time.perf_counter() - start) * 1e3
        result(f"DiskDict {kind}->{kind}: reopen + len", reopen, "ms", higher=False)
    sys.stdout.flush()
    os._exit(0)  # its Manager processes and atexit handlers may hang the exit


if __name__ == "__main__":
    main()
