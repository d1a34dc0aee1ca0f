//! Compute mode: materialize the repeated structure instead of handing out pointers.

use ndarray::ArrayView2;

/// `row` repeated `its` times as a table (`Vec` of rows): the seed's `compute=True`.
///
/// ```
/// assert_eq!(cereal_eat::repeat_rows(&[1, 2, 3, 4], 2), vec![vec![1, 2, 3, 4], vec![1, 2, 3, 4]]);
/// ```
pub fn repeat_rows<T: Clone>(row: &[T], its: usize) -> Vec<Vec<T>> {
    vec![row.to_vec(); its]
}

/// `row` repeated `its` times as a 2-D view **without copying**: a stride-0 broadcast,
/// `its × row.len()`, every row the same memory.
///
/// ```
/// let x = [1, 2, 3, 4];
/// let table = cereal_eat::broadcast_rows(&x, 4);
/// assert_eq!(table.shape(), [4, 4]);
/// assert_eq!(table[[3, 2]], 3);
/// assert_eq!(table.strides(), [0, 1]); // zero-copy: row stride 0
/// ```
///
/// # Panics
///
/// If `its × row.len()` does not fit in an `isize` (ndarray's limit on a shape).
pub fn broadcast_rows<T>(row: &[T], its: usize) -> ArrayView2<'_, T> {
    use ndarray::ShapeBuilder;
    // Row stride 0: every row is the same `row.len()` elements of `row`.
    match ArrayView2::from_shape((its, row.len()).strides((0, 1)), row) {
        Ok(table) => table,
        Err(e) => panic!("cannot broadcast {} values to {its} rows: {e}", row.len()),
    }
}

/// `row` repeated `its` times as an Arrow `RecordBatch` with the given column names (the
/// seed's `pd.DataFrame(..., columns=['a', 'b', 'c', 'd'])`). Feature `arrow`.
///
/// ```
/// let batch = cereal_eat::to_record_batch(&[1i64, 2, 3, 4], 4, &["a", "b", "c", "d"]).unwrap();
/// assert_eq!((batch.num_rows(), batch.num_columns()), (4, 4));
/// assert_eq!(batch.schema().field(2).name(), "c");
/// ```
///
/// # Errors
///
/// [`crate::Error::Shape`] if the number of names differs from the row's length.
#[cfg(feature = "arrow")]
pub fn to_record_batch(
    row: &[i64],
    its: usize,
    columns: &[&str],
) -> Result<arrow_array::RecordBatch, crate::Error> {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};

    if columns.len() != row.len() {
        return Err(crate::Error::Shape {
            reason: format!("{} column names for rows of {} values", columns.len(), row.len()),
        });
    }
    let fields: Vec<Field> = columns.iter().map(|name| Field::new(*name, DataType::Int64, false)).collect();
    let arrays: Vec<ArrayRef> =
        row.iter().map(|&v| Arc::new(Int64Array::from(vec![v; its])) as ArrayRef).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| crate::Error::Shape { reason: e.to_string() })
}
