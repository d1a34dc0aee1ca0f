"""The examples of cereal's documentation (shared/seeds/000_*.txt), as written, with what
they print asserted. Each runs under a deadline.

Where the document cannot run as written, the test says so:
- ``eat(x, its = 4, np.array, copy = False)`` is a SyntaxError in Python (a positional
  argument after a keyword one); the same call spelled ``eat(x, 4, np.array, copy=False)``
  (as the document's own later examples write it) runs;
- ``%%timeit`` is an IPython cell magic: the cell's body runs;
- the asyncio example uses top-level ``await`` (Jupyter): it runs as written with
  ``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT``, the flag Python's own asyncio REPL uses.
"""

import ast
import asyncio
import re

import pytest

np = pytest.importorskip("numpy")

from conftest import run_python  # noqa: E402

pytestmark = pytest.mark.timeout(60)

POINTERS_REPR = re.compile(
    r"array\(\[<pointer to (\w+) object at (0x[0-9a-f]+)>,\n"
    r"       <pointer to \1 object at \2>,\n"
    r"       <pointer to \1 object at \2>,\n"
    r"       <pointer to \1 object at \2>\], dtype=object\)"
)


def test_first_example_as_written_is_a_syntax_error():
    with pytest.raises(SyntaxError):
        compile("yum = eat(x, its = 4, np.array, copy = False)", "seed", "exec")


def test_first_example():
    from cereal import eat

    x = [1, 2, 3, 4]
    yum = eat(x, 4, np.array, copy=False)
    match = POINTERS_REPR.fullmatch(repr(yum))
    assert match, repr(yum)
    assert match.group(1) == "list" and int(match.group(2), 16) == id(x)
    assert (~yum[0])[0] == 1
    yum[0][0] = 4
    assert x == [4, 2, 3, 4]  # it changed!


def test_dataframe_example():
    pd = pytest.importorskip("pandas")
    from cereal import eat

    x = [1, 2, 3, 4]

    yum = eat(x, its=4, method=pd.DataFrame, compute=True, columns=["a", "b", "c", "d"])
    assert str(yum) == "   a  b  c  d\n0  1  2  3  4\n1  1  2  3  4\n2  1  2  3  4\n3  1  2  3  4"
    assert list(yum.columns) == ["a", "b", "c", "d"]


def test_compute_without_method_builds_a_dataframe_when_pandas_is_installed():
    pd = pytest.importorskip("pandas")
    from cereal import eat

    yum = eat([1, 2, 3, 4], its=2, compute=True, columns=["a", "b", "c", "d"])
    assert isinstance(yum, pd.DataFrame) and yum.shape == (2, 4)


def test_map_addone_example():
    from cereal import eat

    x = [1, 2, 3, 4]

    yum = eat(x, its=4, method=np.array, copy=False)

    def addone(x, pos):
        x[pos] += 1

    assert list(map(addone, yum, range(len(yum)))) == [None, None, None, None]
    assert x == [2, 3, 4, 5]


ORCHESTRATION_OUT = """array([[  1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,
         14,  15,  16,  17,  18,  19,  20,  21,  22,  23,  24,  25],
       [ 26,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,
         39,  40,  41,  42,  43,  44,  45,  46,  47,  48,  49,  50],
       [ 51,  52,  53,  54,  55,  56,  57,  58,  59,  60,  61,  62,  63,
         64,  65,  66,  67,  68,  69,  70,  71,  72,  73,  74,  75],
       [ 76,  77,  78,  79,  80,  81,  82,  83,  84,  85,  86,  87,  88,
         89,  90,  91,  92,  93,  94,  95,  96,  97,  98,  99, 100]])"""

ORCHESTRATION = """
import numpy as np
from cereal import eat

x = np.arange(100).reshape(4, 25) # create a basic array, but reshape into segments

yum = eat(x, 4, np.array, copy = False) # create an iterable of len 4, store in an array, (no copy to memory is a numpy arg)

def addone(x, pos):
    for n in range(25):
        x[pos][n] +=1

print(list(map(addone, yum, range(4))))
print(repr(x))
"""


def test_orchestration_example_in_a_fresh_process():
    # The original segfaults here: run it where a crash cannot take pytest down.
    done = run_python(ORCHESTRATION)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[None, None, None, None]\n" + ORCHESTRATION_OUT + "\n"


def test_thread_pool_example():
    from concurrent.futures import ThreadPoolExecutor

    from cereal import eat

    x = np.arange(10000).reshape(16, 625)

    yum = eat(x, 16, np.array, copy=False)

    def addone(slice, n):
        slice[n] += 1

    def traverse(x, pos):
        mem = [addone(x[pos], n) for n in range(625)]
        return mem

    # %%timeit cell body:
    with ThreadPoolExecutor() as executor:
        executor.map(traverse, yum, range(16))

    assert (x == np.arange(1, 10001).reshape(16, 625)).all()


ASYNC_EXAMPLE = """
import random
import asyncio
import numpy as np
from cereal import eat
from time import process_time

x = np.arange(10000).reshape(16, 625)

yum = eat(x, 16, np.array, copy = False) # 16 iterations, 1 for each iteration on dimension 1

async def addone(slice, n):
    await asyncio.sleep(random.random())
    slice[n] += 1

async def traverse(x, pos):
    mem = [asyncio.create_task(addone(x[pos], n)) for n in range(625)] # one computation point for each iteration on dimension 2
    return asyncio.gather(*mem)

async def traverse_gather(x, n):
    fut = await traverse(x, n)

start = process_time()
fut = [await traverse_gather(x, n) for n, x in enumerate(yum)] # in jupyter, asyncio.run() is proper form in pure python
end = process_time()

print(end - start)
"""


def test_asyncio_example(capsys):
    code = compile(ASYNC_EXAMPLE, "seed", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    globs = {}

    async def main():
        coro = eval(code, globs)
        if coro is not None:
            await coro
        # "x # could be complete, or incomplete...": submission returned before the tasks ran.
        submitted = globs["x"].copy()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.gather(*pending)
        return submitted

    submitted = asyncio.run(main())
    printed = capsys.readouterr().out
    assert float(printed) < 5.0  # submission only
    assert (submitted <= np.arange(1, 10001).reshape(16, 625)).all()
    assert (globs["x"] == np.arange(1, 10001).reshape(16, 625)).all()
