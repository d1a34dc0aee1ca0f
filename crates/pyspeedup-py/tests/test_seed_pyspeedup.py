"""The examples of PySpeedup's documentation (shared/seeds/004_*.txt), verbatim, with the
output they print asserted.

Where the document is wrong about its own output, the test says so next to it:
- ``count[0]`` shows no output in the document (it is 0);
- the first Cache example is indented so that the recursive line is unreachable, so
  ``fibonacci(5)`` returns None and prints nothing (as the document shows); the version
  with the intended indentation prints 8;
- Python 3 prints ints without the ``L`` suffix of Python 2;
- ``-1.21 in complexSpiral``: ``1.1j * 1.1j`` is ``(-1.2100000000000002+0j)`` in IEEE
  arithmetic, so the honest answer of ``==`` is False (the item that is there is found);
- the ``with DiskDict("test")`` example prints ``d[3]`` inside the loop, a KeyError on the
  first pass with a new store; once the store holds the key (a second run: the store
  persists), it prints ``d`` ten times. The original's own docstring has the print after
  the loop, which prints ``d`` (not the ``3`` it claims).
"""

import doctest

import pytest

pytestmark = pytest.mark.timeout(60)


def run_doctest(text, globs):
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, globs, "seed", "seed", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"{runner.failures} of {runner.tries} doctest examples failed (see output above)"
    assert runner.tries > 0


BUFFER = '''
>>> from pyspeedup.concurrent import buffer
>>> @buffer(4)
... def count():
...         i=0
...         while 1:
...              yield i
...              i+=1
...
>>> count[0]
0
>>> count[15]
15
>>> for v,i in enumerate(count):
...         if v!=i:
...              print("Fail")
...         if v==5:
...              print ("Success")
...              break
...
Success
'''


def test_buffer_count_example():
    run_doctest(BUFFER, {})


SPIRAL = '''
>>> from pyspeedup.concurrent import buffer
>>> def absolutelyNonDecreasing(buffer, item, attempts):
...         if abs(buffer._cache[-1]) > abs(item):
...             return True
...         return False
...
>>> @buffer(haltCondition = absolutelyNonDecreasing)
... def complexSpiral():
...         i = 1
...         while True:
...             yield i
...             i *= 1.1j
...
>>> complexSpiral[1]
1.1j
>>> -1.21 in complexSpiral
False
>>> complexSpiral[2]
(-1.2100000000000002+0j)
>>> -1.2100000000000002 in complexSpiral
True
>>> -1.331j in complexSpiral
False
>>> complexSpiral[3] in complexSpiral
True
'''


def test_buffer_spiral_example():
    run_doctest(SPIRAL, {})


def test_buffer_spiral_with_builtin_halt():
    from pyspeedup.concurrent import absolutelyNonDecreasing, buffer

    @buffer(haltCondition=absolutelyNonDecreasing)
    def complexSpiral():
        i = 1
        while True:
            yield i
            i *= 1.1j

    assert complexSpiral[1] == 1.1j
    assert complexSpiral[2] in complexSpiral
    assert -1.21 not in complexSpiral


CACHE_VERBATIM = '''
>>> from pyspeedup.concurrent import Cache
>>> @Cache
... def fibonacci(n):
...    if n < 2: # Not bothering with input value checking here.
...        return 1
...        return fibonacci(n-1)+fibonacci(n-2)
...
>>> fibonacci(5)
'''

CACHE_INTENDED = '''
>>> from pyspeedup.concurrent import Cache
>>> @Cache
... def fibonacci(n):
...    if n < 2: # Not bothering with input value checking here.
...        return 1
...    return fibonacci(n-1)+fibonacci(n-2)
...
>>> fibonacci(5)
8
'''

CACHE_APPLY_ASYNC = '''
>>> from pyspeedup.concurrent import Cache
>>> @Cache
... def fibonacci(n):
...     if n < 2: # Not bothering with input value checking here.
...         return 1
...     fibonacci.apply_async(n-1)
...     fibonacci.apply_async(n-2)
...     return fibonacci(n-1)+fibonacci(n-2)
...
>>> fibonacci(100)
573147844013817084101
'''

CACHE_BATCH_ASYNC = '''
>>> from pyspeedup.concurrent import Cache
>>> @Cache
... def fibonacci(n):
...     if n < 2: # Not bothering with input value checking here.
...         return 1
...     fibonacci.batch_async((n-1,),(n-2,))
...     return fibonacci(n-1)+fibonacci(n-2)
...
>>> fibonacci(200)
453973694165307953197296969697410619233826
'''


@pytest.mark.parametrize("text", [CACHE_VERBATIM, CACHE_INTENDED, CACHE_APPLY_ASYNC, CACHE_BATCH_ASYNC])
def test_cache_examples(text):
    run_doctest(text, {})


DISKDICT_SEED = '''
with DiskDict("test") as d:
    for i in range(10):
        d[i] = chr(97+i)
        print(d[3])
'''

DISKDICT_DOCSTRING = '''
>>> from pyspeedup.memory import DiskDict
>>> with DiskDict("test") as d:
...     for i in range(10):
...         d[i] = chr(97+i)
...     print(d[3])
d
'''


def test_diskdict_with_example_as_the_seed_prints_it(home, capsys):
    from pyspeedup.memory import DiskDict

    # First run, new store: d[3] does not exist yet on the first pass.
    with pytest.raises(KeyError) as raised:
        exec(DISKDICT_SEED, {"DiskDict": DiskDict})
    assert raised.value.args == (3,)
    capsys.readouterr()
    # Keys 0 (written before the KeyError) survive the `with` block's close.
    # Fill the store, then the verbatim example prints "d" ten times.
    with DiskDict("test") as d:
        d[3] = "d"
    exec(DISKDICT_SEED, {"DiskDict": DiskDict})
    assert capsys.readouterr().out == "d\n" * 10
    assert (home / ".PySpeedup").is_dir()


def test_diskdict_with_example_as_the_docstring_prints_it():
    run_doctest(DISKDICT_DOCSTRING, {})
