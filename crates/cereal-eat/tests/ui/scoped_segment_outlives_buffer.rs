// A scoped segment cannot outlive the buffer it borrows.
fn main() {
    let segment;
    {
        let mut data = vec![0u8; 8];
        segment = cereal_eat::split_mut(&mut data, &[8], 2).unwrap().remove(0);
    }
    segment[0] = 1;
}
