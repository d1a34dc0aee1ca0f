//! Compute mode: materialize the repeated structure instead of handing out pointers, and
//! work on rows of n-dimensional data without deep copies (insert, replace, sample).

use ndarray::{ArrayView1, ArrayView2};

/// Sample rows of a 2-D array as zero-copy views (batched sampling without deep copies).
///
/// ```
/// let table = ndarray::Array2::from_shape_fn((100, 3), |(r, c)| (r * 3 + c) as u32);
/// let batch = cereal_eat::compute::sample_rows(&table.view(), &[7, 42, 99]);
/// assert_eq!(batch[1].to_vec(), [126, 127, 128]);
/// ```
///
/// # Panics
///
/// If a row index is out of range (as indexing does).
pub fn sample_rows<'a, T>(table: &ArrayView2<'a, T>, rows: &[usize]) -> Vec<ArrayView1<'a, T>> {
    rows.iter().map(|&r| (*table).index_axis_move(ndarray::Axis(0), r)).collect()
}

/// `row` repeated `its` times as a table (`Vec` of rows): the original cereal's `compute=True`.
///
/// ```
/// assert_eq!(cereal_eat::compute::repeat_rows(&[1, 2, 3, 4], 2), vec![vec![1, 2, 3, 4], vec![1, 2, 3, 4]]);
/// ```
pub fn repeat_rows<T: Clone>(row: &[T], its: usize) -> Vec<Vec<T>> {
    vec![row.to_vec(); its]
}

/// `row` repeated `its` times as a 2-D view **without copying**: a stride-0 broadcast,
/// `its × row.len()`, every row the same memory.
///
/// ```
/// let x = [1, 2, 3, 4];
/// let table = cereal_eat::compute::broadcast_rows(&x, 4);
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
/// original's `pd.DataFrame(..., columns=['a', 'b', 'c', 'd'])`). Feature `arrow`.
///
/// ```
/// let batch = cereal_eat::compute::to_record_batch(&[1i64, 2, 3, 4], 4, &["a", "b", "c", "d"]).unwrap();
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

/// Inserts `rows` (whole rows, row-major) before row `at` of `data` with `shape`, updating
/// the shape: one move of the rows after `at`, no copy of the rest.
///
/// ```
/// let mut data = vec![1, 2, 3, 4];
/// let mut shape = vec![2, 2];
/// cereal_eat::compute::insert_rows(&mut data, &mut shape, 1, &[9, 9])?;
/// assert_eq!((data, shape), (vec![1, 2, 9, 9, 3, 4], vec![3, 2]));
/// # Ok::<(), cereal_eat::Error>(())
/// ```
///
/// # Errors
///
/// [`crate::Error::Shape`] if `shape` does not describe `data`, `at` is past the last row,
/// or `rows` is not a whole number of rows.
pub fn insert_rows<T: Clone>(
    data: &mut Vec<T>,
    shape: &mut [usize],
    at: usize,
    rows: &[T],
) -> crate::Result<()> {
    let row_len = row_len(data, shape)?;
    if at > shape[0]
        || (row_len == 0 && !rows.is_empty())
        || (row_len > 0 && !rows.len().is_multiple_of(row_len))
    {
        return Err(crate::Error::Shape {
            reason: format!(
                "cannot insert {} values as rows of {row_len} at row {at} of {}",
                rows.len(),
                shape[0]
            ),
        });
    }
    let added = rows.len().checked_div(row_len).unwrap_or(0);
    let fits = data.len().checked_add(rows.len()).filter(|&n| n <= isize::MAX as usize).is_some()
        && shape[0].checked_add(added).is_some();
    if !fits {
        return Err(crate::Error::Shape {
            reason: format!(
                "cannot insert {} values: the data would hold more than isize::MAX elements",
                rows.len()
            ),
        });
    }
    let start = at * row_len;
    data.splice(start..start, rows.iter().cloned());
    shape[0] += added;
    Ok(())
}

/// Replaces row `at` of `data` (with `shape`) by `row`, in place.
///
/// # Errors
///
/// [`crate::Error::Shape`] if `shape` does not describe `data`, `at` is past the last row,
/// or `row` is not exactly one row long.
pub fn replace_row<T: Clone>(data: &mut [T], shape: &[usize], at: usize, row: &[T]) -> crate::Result<()> {
    let row_len = row_len(data, shape)?;
    if at >= shape[0] || row.len() != row_len {
        return Err(crate::Error::Shape {
            reason: format!(
                "cannot replace row {at} of {} rows with {} values: a row holds {row_len}",
                shape[0],
                row.len()
            ),
        });
    }
    data[at * row_len..(at + 1) * row_len].clone_from_slice(row);
    Ok(())
}

fn row_len<T>(data: &[T], shape: &[usize]) -> crate::Result<usize> {
    crate::shape::describing(shape, data.len())?;
    // A sub-shape of a shape that passed `describing` cannot overflow.
    crate::shape::element_count(&shape[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserting_past_isize_max_zero_sized_rows_is_a_shape_error() {
        let (mut data, mut shape) = (vec![(); 1], [1usize]);
        let err = insert_rows(&mut data, &mut shape, 0, &[(); usize::MAX]).unwrap_err();
        assert!(matches!(err, crate::Error::Shape { .. }), "{err}");
        assert_eq!((data.len(), shape), (1, [1]));
        let err = replace_row(&mut [0u8; 10], &[2, 5], 0, &[1, 2, 3]).unwrap_err();
        assert!(err.to_string().contains("a row holds 5"), "{err}");
    }

    #[test]
    fn rows_insert_and_replace_in_3d() {
        let mut data: Vec<u8> = (0..12).collect();
        let mut shape = vec![3, 2, 2];
        insert_rows(&mut data, &mut shape, 3, &[100, 101, 102, 103]).unwrap();
        assert_eq!(shape, [4, 2, 2]);
        assert_eq!(&data[12..], [100, 101, 102, 103]);
        replace_row(&mut data, &shape, 0, &[7, 7, 7, 7]).unwrap();
        assert_eq!(&data[..5], [7, 7, 7, 7, 4]);
        assert!(insert_rows(&mut data, &mut shape, 5, &[0; 4]).is_err());
        assert!(insert_rows(&mut data, &mut shape, 0, &[0; 3]).is_err());
        assert!(replace_row(&mut data, &shape, 4, &[0; 4]).is_err());
        assert!(replace_row(&mut data, &[5], 0, &[0]).is_err());
        // 6148914691236517208 * 3 wraps to 8: an error, not a wrong row length.
        let mut eight = vec![0u8; 8];
        assert!(replace_row(&mut eight, &[6_148_914_691_236_517_208, 3], 1, &[1, 2, 3]).is_err());
        let mut shape = [6_148_914_691_236_517_208, 3];
        assert!(insert_rows(&mut eight, &mut shape, 1, &[1, 2, 3]).is_err());
        assert_eq!(eight, [0; 8]);
    }
}
