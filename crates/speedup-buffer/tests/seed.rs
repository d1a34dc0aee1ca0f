//! The seed's examples ("Concurrent Buffer"), and the original's bugs, as tests.

use speedup_buffer::{Buffer, halt};
use speedup_test_support::within;

#[test]
fn count_indexing_and_enumerate_until_five() {
    let count = Buffer::builder().lookahead(4).build(0u64..);
    assert_eq!(count.get(0), Some(&0));
    assert_eq!(count.get(15), Some(&15));
    let mut printed = Vec::new();
    for (v, i) in count.iter().enumerate() {
        if v as u64 != *i {
            printed.push("Fail");
        }
        if v == 5 {
            printed.push("Success");
            break;
        }
    }
    assert_eq!(printed, ["Success"]);
}

/// The original's halting check was inverted: `100 in count` returned False, and a value
/// that is absent but below the frontier (3.5 in a counter) never returned.
#[test]
fn contains_is_right_and_always_returns() {
    within(10, || {
        let count = Buffer::new((0u32..).map(f64::from));
        assert!(count.contains(&100.0));
        assert!(!count.contains(&3.5), "absent below the frontier: false, at once");
        assert!(count.contains(&0.0));
        assert!(!count.contains(&-1.0));
        let fresh = Buffer::new((0u32..).map(f64::from));
        assert!(!fresh.contains(&2.5), "searching before any read works (the original raised)");
    });
}

/// A spiral in the complex plane, `z(k+1) = z(k) * 1.1i`, searched with the absolute
/// halting condition. Scaled by 10^k (so `z(k) = (11i)^k`) it stays in exact integers:
/// floating-point rounding cannot decide the answer.
#[test]
fn complex_spiral_with_abs_non_decreasing() {
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Gaussian(i128, i128);
    impl halt::Magnitude for Gaussian {
        fn magnitude(&self) -> f64 {
            ((self.0 * self.0 + self.1 * self.1) as f64).sqrt()
        }
    }
    let spiral = Buffer::builder()
        .halt(halt::AbsNonDecreasing)
        .build(std::iter::successors(Some(Gaussian(1, 0)), |z| Some(Gaussian(-11 * z.1, 11 * z.0))).take(30));
    assert_eq!(spiral.get(1), Some(&Gaussian(0, 11))); // 1.1j, scaled by 10
    assert!(spiral.contains(&Gaussian(-121, 0))); // -1.21, scaled by 100
    assert!(!spiral.contains(&Gaussian(121, 0)), "same magnitude, wrong direction");
}

#[test]
fn finite_sequences_end_explicitly() {
    within(10, || {
        let b = Buffer::new(vec![3, 1, 2]);
        assert_eq!(b.get(2), Some(&2));
        assert_eq!(b.get(3), None, "the original's reader hung here");
        assert_eq!(b.get(100), None);
        assert_eq!(b.iter().copied().collect::<Vec<_>>(), [3, 1, 2]);
        let empty = Buffer::new(Vec::<u8>::new());
        assert_eq!(empty.get(0), None);
        assert!(!empty.contains(&1));
    });
}

#[test]
fn the_prime_sieve_reads_its_own_output() {
    let primes = Buffer::builder().lookahead(8).build_with_prefix(|found| {
        (2u64..).filter(move |&n| found.iter().take_while(|&&p| p * p <= n).all(|&p| n % p != 0))
    });
    let first: Vec<u64> = primes.iter().take(10).copied().collect();
    assert_eq!(first, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
    assert_eq!(primes.get(999), Some(&7919));
    assert!(primes.contains(&7907));
    assert!(!primes.contains(&7917));
}
