"""pyspeedup.concurrent: Buffer and Cache, including the originals' failure modes, each
under a deadline (a hang fails the run instead of stalling it)."""

import threading
import time

import pytest

from conftest import run_python
from pyspeedup.concurrent import Buffer, Cache, CycleError, buffer, uniformlyNonDecreasing

pytestmark = pytest.mark.timeout(60)


def join_all(threads, timeout=30):
    for t in threads:
        t.join(timeout=timeout)
        assert not t.is_alive(), "a thread hung"


# --- Buffer -------------------------------------------------------------------------


def test_in_is_not_inverted():
    # The original answered `in` backwards.
    count = Buffer(lambda: iter(range(10**9)))
    assert 100 in count
    assert 15.5 not in count
    assert -1 not in count


def test_in_races_the_producer_and_still_finds_every_item():
    # The producer keeps adding items while `in` decides to stop: items added between the
    # scan and the halting condition's look at the newest item must still be searched.
    import random

    rng = random.Random(7)
    for _ in range(300):
        target = rng.randrange(0, 400)
        assert target in Buffer(lambda: iter(range(10**9)), buffersize=rng.choice([1, 2, 16, 64]))
    for _ in range(100):
        target = rng.randrange(0, 400)
        b = Buffer(lambda: iter(range(10**9)), haltCondition=lambda buf, x, attempts: buf._cache[-1] > x)
        assert target in b


def test_in_ends_at_the_end_of_a_finite_sequence():
    # The original hung here (it waited for an item after the last).
    b = Buffer(range(10))
    assert 50 not in b
    assert 9 in b
    never = Buffer([3, 1, 2], haltCondition=lambda buffer, item, attempts: False)
    assert 7 not in never and 2 in never


def test_finite_iteration_and_indexing_end():
    b = Buffer(iter([1, 2, 3]))
    assert list(b) == [1, 2, 3] and list(b()) == [1, 2, 3]
    with pytest.raises(IndexError):
        b[3]
    with pytest.raises(IndexError):
        b[-1]
    assert b[1:] == [2, 3] and b[0:10:2] == [1, 3]


def test_halt_condition_gets_buffer_item_attempts():
    calls = []

    def halt(buf, item, attempts):
        calls.append((buf is b, item, attempts))
        return attempts >= 3

    b = Buffer((i * 7 % 11 for i in range(100)), buffersize=1, haltCondition=halt)
    b[0]
    assert 1000 not in b
    assert calls and all(is_b and item == 1000 for is_b, item, _ in calls)
    assert [a for _, _, a in calls] == list(range(1, len(calls) + 1))


def test_builtin_halt_is_the_default():
    @buffer()
    def evens():
        n = 0
        while True:
            yield n
            n += 2

    assert 10 in evens and 11 not in evens
    assert uniformlyNonDecreasing(evens, 5, 1) in (True, False)


def test_generator_exception_reaches_the_reader():
    def gen():
        yield 1
        raise ValueError("boom")

    b = Buffer(gen)
    assert b[0] == 1
    with pytest.raises(ValueError, match="boom"):
        b[1]
    with pytest.raises(ValueError, match="boom"):
        list(b)
    with pytest.raises(ValueError, match="boom"):
        5 in b


def test_generator_reading_its_own_buffer():
    # The classic sieve: test candidates against the primes found so far.
    from itertools import takewhile

    @buffer(8)
    def primes():
        yield 2
        n = 3
        while True:
            if all(n % p for p in takewhile(lambda p: p * p <= n, primes)):
                yield n
            n += 2

    assert primes[9] == 29 and 7919 in primes and 7917 not in primes


def test_generator_waiting_for_itself_raises_instead_of_hanging():
    @buffer(2)
    def selfish():
        yield 1
        yield selfish[5]  # not produced yet: would wait for itself

    assert selfish[0] == 1
    with pytest.raises(RuntimeError, match="wait for itself"):
        selfish[1]


def test_waiting_releases_the_gil():
    def slow():
        for i in range(5):
            time.sleep(0.05)
            yield i

    b = Buffer(slow)
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    assert b[4] == 4
    stop.set()
    join_all([t])
    assert len(ticks) > 20  # the ticker ran while the reader waited


def test_many_threads_read_one_buffer():
    b = Buffer(lambda: iter(range(100000)), buffersize=64)
    results = []

    def read():
        results.append(sum(b[0:20000]))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    join_all(threads)
    assert results == [sum(range(20000))] * 4


def test_cache_view():
    b = Buffer(range(5))
    b[4]
    assert len(b._cache) == 5 and b._cache[-1] == 4 and b._cache[0] == 0


def test_dropping_an_infinite_buffer_stops_its_thread():
    before = threading.active_count()
    for _ in range(20):
        b = Buffer(lambda: iter(range(10**12)))
        b[10]
        del b
    assert threading.active_count() <= before + 1


# --- Cache --------------------------------------------------------------------------


def test_each_key_computed_once_across_threads():
    calls = []

    @Cache
    def slow_square(n):
        calls.append(n)
        time.sleep(0.05)
        return n * n

    results = []
    threads = [threading.Thread(target=lambda: results.append(slow_square(7))) for _ in range(8)]
    for t in threads:
        t.start()
    join_all(threads)
    assert results == [49] * 8 and calls == [7]
    assert slow_square.cached(7) and len(slow_square) == 1


def test_failure_is_not_cached_and_does_not_hang():
    # The original hung forever on a key whose computation had raised.
    attempts = []

    @Cache
    def flaky(n):
        attempts.append(n)
        if len(attempts) == 1:
            raise ValueError("first try fails")
        return n + 1

    with pytest.raises(ValueError, match="first try fails"):
        flaky(1)
    assert not flaky.cached(1)
    assert flaky(1) == 2 and attempts == [1, 1]


def test_failure_reaches_every_waiter():
    gate = threading.Event()

    @Cache
    def fails(n):
        gate.wait(5)
        raise KeyError(n)

    outcomes = []

    def call():
        try:
            fails(3)
        except KeyError as e:
            outcomes.append(e.args)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    gate.set()
    join_all(threads)
    assert outcomes == [(3,)] * 4


def test_failure_inside_recursion_propagates():
    @Cache
    def f(n):
        if n == 0:
            raise ArithmeticError("bottom")
        f.apply_async(n - 1)
        return f(n - 1) + 1

    with pytest.raises(ArithmeticError):
        f(30)
    assert len(f) == 0


def test_cycle_raises_instead_of_hanging():
    @Cache
    def loop(n):
        return loop(n)

    with pytest.raises(CycleError, match="depends on itself"):
        loop(1)
    assert isinstance(CycleError("x"), RecursionError)

    @Cache
    def ping(n):
        return pong(n) if n else 0

    @Cache
    def pong(n):
        return ping(n)

    # ping(1) -> pong(1) -> ping(1): a cycle through another cache.
    with pytest.raises((CycleError, RecursionError)):
        ping(1)


def test_cycle_across_threads_raises():
    @Cache
    def a(n):
        a.apply_async(n + 1)
        time.sleep(0.05)
        return a(n + 1) if n == 0 else a(n - 1)

    with pytest.raises(CycleError):
        a(0)


def test_keyword_arguments_and_kinds_of_arguments():
    @Cache
    def f(*args, **kwargs):
        return (args, sorted(kwargs.items()))

    assert f(1, "a", b"b", 2.5, None, (1, 2)) == ((1, "a", b"b", 2.5, None, (1, 2)), [])
    assert f(1, y=2, x=1) == ((1,), [("x", 1), ("y", 2)])
    assert f(1, x=1, y=2) is f(1, y=2, x=1)  # one key, kwargs in any order
    with pytest.raises(TypeError):
        f([1, 2])
    assert f.__name__ == "f" and f.__wrapped__ is not None


def test_single_arguments_and_tuples_are_different_calls():
    # One int or str argument is its own key in the hit index; a tuple argument, several
    # arguments and other types are keyed by the argument tuple: none answers for another.
    @Cache
    def f(*args):
        return args

    for _ in range(2):  # cold, then from the hit index
        assert f(5) == (5,)
        assert f((5,)) == ((5,),)
        assert f("a") == ("a",)
        assert f(("a",)) == (("a",),)
        assert f(5, 6) == (5, 6)
        assert f((5, 6)) == ((5, 6),)
        assert f(10**30) == (10**30,)
        assert f("é" * 100) == ("é" * 100,)
    assert f(int("12345678901234567890")) is f(12345678901234567890)


class S(str):
    pass


class S2(str):
    pass


class AlwaysEqual:
    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return True

    def __hash__(self):
        return 0


def test_the_hit_index_never_answers_for_a_call_the_cache_keeps_apart():
    # Python's == says Decimal(1) == 1 and S("a") == S2("a"); the cache's key encoding
    # tells them apart, and the fast hit index must not answer one with the other's value.
    from decimal import Decimal

    f = Cache(lambda *a: tuple(type(x).__name__ for x in a))
    for _ in range(2):  # cold, then warm
        assert f(S("a")) == ("S",)
        assert f(S2("a")) == ("S2",)
        assert f(1, 2) == ("int", "int")
        assert f(Decimal(1), 2) == ("Decimal", "int")
        assert f(AlwaysEqual(1)) == ("AlwaysEqual",)
        assert f.cached(S2("a")) and f.cached(Decimal(1), 2)
    g = Cache(lambda x: x.n)
    assert g(AlwaysEqual(1)) == 1
    assert g(AlwaysEqual(2)) == 2, "a custom __eq__ does not make two calls one"


def test_apply_async_returns_at_once():
    @Cache
    def slow(n):
        time.sleep(0.3)
        return n

    start = time.perf_counter()
    slow.apply_async(1)
    assert time.perf_counter() - start < 0.2
    assert slow(1) == 1


def test_deep_recursion_needs_no_warm_up():
    import sys

    @Cache
    def count(n):
        return 0 if n == 0 else count(n - 1) + 1

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10000)
    try:
        assert count(2000) == 2000
    finally:
        sys.setrecursionlimit(limit)


def test_interpreter_exits_with_work_in_flight():
    done = run_python(
        """
        from pyspeedup.concurrent import Buffer, Cache
        import time
        b = Buffer(lambda: iter(range(10**12)))
        b[100]
        @Cache
        def slow(n):
            time.sleep(0.01)
            return n
        for i in range(4):
            slow.apply_async(i)
        print("bye")
        """,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "bye\n"
