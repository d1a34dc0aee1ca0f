//! The prime sieve as a self-referential producer: each candidate is tested against the
//! primes the buffer has already produced, on the producer's own thread, while the main
//! thread reads ahead.
//!
//! `cargo run --release -p speedup-buffer --example primes`

use std::time::Instant;

use speedup_buffer::Buffer;

fn main() {
    let start = Instant::now();
    let primes = Buffer::builder().lookahead(64).build_with_prefix(|found| {
        (2u64..).filter(move |&n| found.iter().take_while(|&&p| p * p <= n).all(|&p| n % p != 0))
    });
    let first: Vec<u64> = primes.iter().take(10).copied().collect();
    println!("first ten primes: {first:?}");
    println!("the 100,000th prime: {}", primes.get(99_999).expect("infinite"));
    println!("7919 is prime: {}; 7917 is prime: {}", primes.contains(&7919), primes.contains(&7917));
    assert_eq!(first, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
    assert_eq!(primes.get(99_999), Some(&1_299_709));
    println!("done in {:?}", start.elapsed());
}
