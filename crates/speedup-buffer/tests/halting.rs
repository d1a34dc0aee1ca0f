//! The built-in halting conditions check the order they rely on: a sequence that breaks it
//! is an error, never an answer that depends on what is cached, nor an endless scan.

use speedup_buffer::{Buffer, Error, halt};
use speedup_test_support::{panic_message, within};

#[test]
fn an_unsorted_sequence_is_an_error_cold_and_warm() {
    within(30, || {
        let cold = Buffer::new(vec![10, 1, 2, 3]);
        assert_eq!(cold.try_contains(&1), Err(Error::Unsorted { index: 1 }));
        let warm = Buffer::new(vec![10, 1, 2, 3]);
        assert_eq!(warm.get(3), Some(&3));
        assert_eq!(warm.try_contains(&1), Err(Error::Unsorted { index: 1 }));
        // The first item is 10: a scan finds it before it reaches the break, cold or warm.
        assert_eq!(warm.try_contains(&10), Ok(true));
    });
}

#[test]
fn a_decreasing_infinite_sequence_ends_with_an_error() {
    within(30, || {
        let down = Buffer::new((0i64..).map(|n| -n));
        assert_eq!(down.try_contains(&5), Err(Error::Unsorted { index: 1 }));
        let message = panic_message(
            &*std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| down.contains(&5))).unwrap_err(),
        );
        assert!(message.contains("item 1") && message.contains("MaxAttempts"), "{message}");
    });
}

#[test]
fn abs_non_decreasing_checks_magnitudes() {
    within(30, || {
        let shrinking = Buffer::builder().halt(halt::AbsNonDecreasing).build((0i64..).map(|n| 100 - n));
        assert_eq!(shrinking.try_contains(&-3), Err(Error::Unsorted { index: 1 }));
        let growing = Buffer::builder()
            .halt(halt::AbsNonDecreasing)
            .build((1i64..).map(|n| if n % 2 == 0 { -n } else { n }));
        assert_eq!(growing.try_contains(&-10), Ok(true));
        assert_eq!(growing.try_contains(&10), Ok(false));
    });
}

#[test]
fn conditions_without_an_order_are_not_checked() {
    within(30, || {
        let b = Buffer::builder().halt(halt::MaxAttempts(10)).build(vec![10, 1, 2, 3]);
        assert_eq!(b.try_contains(&2), Ok(true));
        assert_eq!(b.try_contains(&7), Ok(false));
        let closure = Buffer::builder().halt(|_: &i32, _: &i32, n: usize| n > 3).build(vec![5, 4, 3, 2, 1]);
        assert_eq!(closure.try_contains(&4), Ok(true));
    });
}

#[test]
fn sorted_sequences_answer_as_before() {
    let b = Buffer::new((0u64..).map(|n| n * 2));
    assert_eq!(b.try_contains(&100), Ok(true));
    assert_eq!(b.try_contains(&101), Ok(false));
    assert_eq!(b.try_contains(&3), Ok(false), "below the frontier, by bisection");
}

/// `0, NaN, -1, NaN, -2, ...` never has a decreasing neighbour pair, yet it decreases: an
/// item not comparable with the one before breaks the order too.
#[test]
fn incomparable_items_break_the_order() {
    within(30, || {
        let b = Buffer::new((0..).map(|n: i64| if n % 2 == 1 { f64::NAN } else { -(n as f64) }));
        assert_eq!(b.try_contains(&1.0), Err(Error::Unsorted { index: 1 }));
        let magnitudes = Buffer::builder()
            .halt(halt::AbsNonDecreasing)
            .build((0..).map(|n: i64| if n % 2 == 1 { f64::NAN } else { -(n as f64) }));
        assert_eq!(magnitudes.try_contains(&-1.5), Err(Error::Unsorted { index: 1 }));
    });
}

/// NaN equals nothing: a search for it ends at once, even on an endless sequence.
#[test]
fn a_nan_target_is_never_found_and_never_hangs() {
    within(30, || {
        assert_eq!(Buffer::new((0..).map(|n: i64| n as f64)).try_contains(&f64::NAN), Ok(false));
        assert_eq!(Buffer::new(std::iter::repeat(f64::NAN)).try_contains(&f64::NAN), Ok(false));
    });
}

/// A small deterministic generator (no dev-dependency for one test).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The answer never depends on what is cached: for thousands of short sequences (sorted,
/// nearly sorted, with repeats and drops), every lookahead and every target, a search on a
/// fresh buffer and one on a fully produced buffer agree, and both agree with a scan.
#[test]
fn the_answer_is_the_same_cold_and_warm() {
    within(120, || {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..3000 {
            let len = (next(&mut state) % 7) as usize;
            let mut items = Vec::with_capacity(len);
            let mut value = 0i64;
            for _ in 0..len {
                value +=
                    (next(&mut state) % 4) as i64 - if next(&mut state).is_multiple_of(5) { 3 } else { 0 };
                items.push(value);
            }
            let lookahead = (next(&mut state) % 4) as usize;
            for target in -4..12 {
                let expected = scan(&items, target);
                let cold = Buffer::builder().lookahead(lookahead).build(items.clone()).try_contains(&target);
                let warm = Buffer::builder().lookahead(lookahead).build(items.clone());
                let _ = warm.get(len.saturating_sub(1));
                let warm = warm.try_contains(&target);
                assert_eq!(cold, expected, "cold: {items:?}, lookahead {lookahead}, target {target}");
                assert_eq!(warm, expected, "warm: {items:?}, lookahead {lookahead}, target {target}");
            }
        }
    });
}

/// What `try_contains` under `NonDecreasing` answers: a scan from the first item that stops
/// at the first item past the target, checking every pair it examines and the one after.
fn scan(items: &[i64], target: i64) -> Result<bool, Error> {
    for (index, &item) in items.iter().enumerate() {
        if index > 0 && item < items[index - 1] {
            return Err(Error::Unsorted { index });
        }
        if item == target {
            return Ok(true);
        }
        if item > target {
            return match items.get(index + 1) {
                Some(&after) if after < item => Err(Error::Unsorted { index: index + 1 }),
                _ => Ok(false),
            };
        }
    }
    Ok(false)
}

/// Magnitudes above 2^53 are compared exactly: a decrease an `f64` cannot see (2^60 + 1,
/// then 2^60) is still an error, not an endless search.
#[test]
fn abs_non_decreasing_sees_decreases_beyond_f64_precision() {
    within(30, || {
        let big: i64 = 1 << 60;
        let b = Buffer::builder()
            .halt(halt::AbsNonDecreasing)
            .build((0u64..).map(move |i| if i % 2 == 0 { big + 1 } else { -big }));
        assert_eq!(b.try_contains(&(big + 3)), Err(Error::Unsorted { index: 1 }));
        let unsigned = Buffer::builder()
            .halt(halt::AbsNonDecreasing)
            .build((0u64..).map(|i| if i % 2 == 0 { u64::MAX } else { u64::MAX - 1 }));
        assert_eq!(unsigned.try_contains(&0), Err(Error::Unsorted { index: 1 }));
        let growing = Buffer::builder().halt(halt::AbsNonDecreasing).build((0i64..).map(move |i| big + i));
        assert_eq!(growing.try_contains(&(big + 5)), Ok(true));
        assert_eq!(growing.try_contains(&-(big + 5)), Ok(false), "stops at the first larger magnitude");
    });
}
