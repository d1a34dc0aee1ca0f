//! Shape arithmetic, checked: how many elements a shape holds. Every function in the crate
//! that turns a shape into a length or an offset goes through here, so an overflowing or
//! impossible shape is an [`Error::Shape`], never a wrapped length over too little memory.

use crate::error::{Error, Result};

/// The number of elements in a row-major buffer of `shape`.
///
/// The product of the non-zero dimensions must fit in an `isize` (ndarray's rule, and the
/// largest allocation Rust allows), so every sub-shape (a row, a segment) fits too, even
/// when one dimension is zero and the total is zero.
///
/// # Errors
///
/// [`Error::Shape`] if the product does not fit.
pub(crate) fn element_count(shape: &[usize]) -> Result<usize> {
    let mut nonzero = 1usize;
    for &d in shape.iter().filter(|&&d| d != 0) {
        nonzero = match nonzero.checked_mul(d) {
            Some(n) if isize::try_from(n).is_ok() => n,
            _ => {
                return Err(Error::Shape {
                    reason: format!(
                        "shape {shape:?} holds more than isize::MAX elements; no buffer can be that \
                         large, so check the dimensions"
                    ),
                });
            }
        };
    }
    Ok(if shape.contains(&0) { 0 } else { nonzero })
}

/// [`element_count`] of `shape`, which must describe exactly `len` elements.
///
/// # Errors
///
/// [`Error::Shape`] for an empty or overflowing shape, or one of another size.
pub(crate) fn describing(shape: &[usize], len: usize) -> Result<usize> {
    if shape.is_empty() {
        return Err(Error::Shape { reason: format!("an empty shape cannot describe {len} elements") });
    }
    let elements = element_count(shape)?;
    if elements != len {
        return Err(Error::Shape {
            reason: format!("shape {shape:?} holds {elements} elements, but the data has {len}"),
        });
    }
    Ok(elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miri_products_that_wrap_are_errors() {
        // 6148914691236517208 * 3 == 8 (mod 2^64): the wrapped product of the issue.
        assert!(element_count(&[6_148_914_691_236_517_208, 3]).is_err());
        assert!(element_count(&[usize::MAX, 2]).is_err());
        assert!(element_count(&[1 << 32, 1 << 32]).is_err());
        assert!(element_count(&[0, usize::MAX, usize::MAX]).is_err(), "a row that cannot exist");
        assert_eq!(element_count(&[0, 5]).unwrap(), 0);
        assert_eq!(element_count(&[]).unwrap(), 1);
        assert_eq!(element_count(&[isize::MAX as usize]).unwrap(), isize::MAX as usize);
        assert!(element_count(&[isize::MAX as usize + 1]).is_err());
        assert!(describing(&[], 1).is_err());
        assert!(describing(&[6_148_914_691_236_517_208, 3], 8).is_err());
        assert_eq!(describing(&[2, 4], 8).unwrap(), 8);
    }
}
