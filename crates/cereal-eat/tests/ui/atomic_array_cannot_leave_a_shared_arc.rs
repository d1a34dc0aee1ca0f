// Taking the plain values out of an `AtomicArray` needs sole ownership: not through an Arc
// that other threads or tasks may still be writing through.
fn main() {
    let x = std::sync::Arc::new(cereal_eat::AtomicArray::from_vec(vec![1u64, 2], &[2]).unwrap());
    let _values = x.into_vec();
}
