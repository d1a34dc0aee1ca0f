//! The built-in halting conditions check the order they rely on: a sequence that breaks it
//! is an error, never an answer that depends on what is cached, nor an endless scan.

use speedup_buffer::{Buffer, Error, halt};

mod common;

#[test]
fn an_unsorted_sequence_is_an_error_cold_and_warm() {
    common::within(30, || {
        let cold = Buffer::new(vec![10, 1, 2, 3]);
        assert_eq!(cold.try_contains(&1), Err(Error::Unsorted { index: 1 }));
        let warm = Buffer::new(vec![10, 1, 2, 3]);
        assert_eq!(warm.get(3), Some(&3));
        assert_eq!(warm.try_contains(&1), Err(Error::Unsorted { index: 1 }));
        assert_eq!(warm.try_contains(&10), Err(Error::Unsorted { index: 1 }), "known unsorted: no answer");
    });
}

#[test]
fn a_decreasing_infinite_sequence_ends_with_an_error() {
    common::within(30, || {
        let down = Buffer::new((0i64..).map(|n| -n));
        assert_eq!(down.try_contains(&5), Err(Error::Unsorted { index: 1 }));
        let message = common::message(
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| down.contains(&5))).unwrap_err(),
        );
        assert!(message.contains("item 1") && message.contains("MaxAttempts"), "{message}");
    });
}

#[test]
fn abs_non_decreasing_checks_magnitudes() {
    common::within(30, || {
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
    common::within(30, || {
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
