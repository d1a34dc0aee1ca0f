// Two live `&mut` to the same segment: rejected by the borrow checker.
fn main() {
    let (_whole, mut segments) = cereal_eat::split(vec![0u8; 8], &[8], 2).unwrap();
    let seg = &mut segments[0];
    let a: &mut [u8] = &mut *seg;
    let b: &mut [u8] = &mut *seg;
    a[0] = b[0];
}
