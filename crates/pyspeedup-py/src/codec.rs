//! The bytes a Python key or value is stored as.
//!
//! One tag byte, then the payload. `int` (64-bit and arbitrary size), `str`, `bytes`,
//! `float`, `bool` and `None` have their own tags and never go through pickle; everything
//! else is pickled (protocol 4, fixed so that the bytes of a key do not change with the
//! Python version). Keys are placed in pages by a stable hash of these bytes (speedup-paged's
//! documented hash), never by Python's salted `hash()`, so a store opens and finds every
//! key in any later process.
//!
//! Keys are normalized the way a `dict` compares them: `True`/`False` are `1`/`0`, and a
//! float with an integral value is the `int` of that value, so `d[1]`, `d[1.0]` and
//! `d[True]` are one entry (read back as the `int`). Other keys are equal when their
//! pickles are.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};

const NONE: u8 = b'n';
const FALSE: u8 = b'F';
const TRUE: u8 = b'T';
const INT: u8 = b'i';
const BIG_INT: u8 = b'I';
const FLOAT: u8 = b'f';
const STR: u8 = b's';
const BYTES: u8 = b'b';
const PICKLE: u8 = b'p';

/// The pickle protocol of stored objects: fixed, so equal keys keep equal bytes.
const PICKLE_PROTOCOL: u8 = 4;

/// Whether the bytes encode a key (normalized like `dict` keys) or a value (exact type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Key,
    Value,
}

static PICKLE_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn pickle(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    PICKLE_MODULE
        .get_or_try_init(py, || PyModule::import(py, "pickle").map(Bound::unbind))
        .map(|m| m.bind(py))
}

/// Appends the encoding of `obj` to `out`.
///
/// # Errors
///
/// `TypeError` for an unhashable key or an object pickle refuses.
pub(crate) fn encode(obj: &Bound<'_, PyAny>, role: Role, out: &mut Vec<u8>) -> PyResult<()> {
    if obj.is_none() {
        out.push(NONE);
        return Ok(());
    }
    if obj.is_exact_instance_of::<PyBool>() {
        let b = obj.is_truthy()?;
        match role {
            Role::Key => encode_i64(i64::from(b), out),
            Role::Value => out.push(if b { TRUE } else { FALSE }),
        }
        return Ok(());
    }
    if obj.is_exact_instance_of::<PyInt>() {
        match obj.extract::<i64>() {
            Ok(v) => encode_i64(v, out),
            Err(_) => encode_big_int(obj, out)?,
        }
        return Ok(());
    }
    if obj.is_exact_instance_of::<PyString>() {
        // A str with lone surrogates has no UTF-8 form: pickle keeps it exactly.
        if let Ok(s) = obj.cast::<PyString>()?.to_str() {
            out.push(STR);
            out.extend_from_slice(s.as_bytes());
            return Ok(());
        }
    } else if obj.is_exact_instance_of::<PyBytes>() {
        out.push(BYTES);
        out.extend_from_slice(obj.cast::<PyBytes>()?.as_bytes());
        return Ok(());
    } else if obj.is_exact_instance_of::<PyFloat>() {
        let v = obj.cast::<PyFloat>()?.value();
        // 2^63 is exact in f64; the range check keeps the cast lossless.
        if role == Role::Key
            && v.fract() == 0.0
            && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&v)
        {
            #[allow(clippy::cast_possible_truncation)] // integral and in range: exact
            encode_i64(v as i64, out);
        } else {
            out.push(FLOAT);
            out.extend_from_slice(&v.to_le_bytes());
        }
        return Ok(());
    }
    if role == Role::Key {
        // Like dict: a mutable object is no key, even if it pickles.
        obj.hash().map_err(|e| PyTypeError::new_err(format!("unhashable key: {e}")))?;
    }
    let bytes = pickle(obj.py())?.call_method1("dumps", (obj, PICKLE_PROTOCOL))?;
    out.push(PICKLE);
    out.extend_from_slice(bytes.cast::<PyBytes>()?.as_bytes());
    Ok(())
}

/// The encoding of `obj`, as a new vector.
pub(crate) fn to_bytes(obj: &Bound<'_, PyAny>, role: Role) -> PyResult<Vec<u8>> {
    let mut out = Vec::with_capacity(16);
    encode(obj, role, &mut out)?;
    Ok(out)
}

fn encode_i64(v: i64, out: &mut Vec<u8>) {
    out.push(INT);
    out.extend_from_slice(&v.to_le_bytes());
}

fn encode_big_int(obj: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    let bits: usize = obj.call_method0("bit_length")?.extract()?;
    // `signed=True`: two's complement, so negative numbers round-trip.
    let kwargs = pyo3::types::PyDict::new(obj.py());
    kwargs.set_item("signed", true)?;
    let bytes = obj.call_method("to_bytes", (bits / 8 + 1, "little"), Some(&kwargs))?;
    out.push(BIG_INT);
    out.extend_from_slice(bytes.cast::<PyBytes>()?.as_bytes());
    Ok(())
}

/// The object `bytes` encode.
///
/// # Errors
///
/// [`crate::errors::Corrupt`] for bytes no encoder wrote; unpickling errors as raised.
pub(crate) fn decode<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let Some((&tag, payload)) = bytes.split_first() else {
        return Err(crate::errors::corrupt("an empty entry"));
    };
    Ok(match tag {
        NONE => py.None().into_bound(py),
        TRUE => PyBool::new(py, true).to_owned().into_any(),
        FALSE => PyBool::new(py, false).to_owned().into_any(),
        INT => {
            let arr: [u8; 8] =
                payload.try_into().map_err(|_| crate::errors::corrupt("an int entry of the wrong size"))?;
            i64::from_le_bytes(arr).into_pyobject(py)?.into_any()
        }
        BIG_INT => {
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("signed", true)?;
            py.get_type::<PyInt>().call_method(
                "from_bytes",
                (PyBytes::new(py, payload), "little"),
                Some(&kwargs),
            )?
        }
        FLOAT => {
            let arr: [u8; 8] =
                payload.try_into().map_err(|_| crate::errors::corrupt("a float entry of the wrong size"))?;
            PyFloat::new(py, f64::from_le_bytes(arr)).into_any()
        }
        STR => {
            let s = std::str::from_utf8(payload)
                .map_err(|_| crate::errors::corrupt("a str entry that is not UTF-8"))?;
            PyString::new(py, s).into_any()
        }
        BYTES => PyBytes::new(py, payload).into_any(),
        PICKLE => pickle(py)?.call_method1("loads", (PyBytes::new(py, payload),))?,
        other => return Err(crate::errors::corrupt(&format!("an entry with the unknown tag {other:#04x}"))),
    })
}

/// A short, GIL-free rendering of an encoding, for error messages (`5`, `'abc'`, ...).
pub(crate) fn describe(bytes: &[u8]) -> String {
    let Some((&tag, payload)) = bytes.split_first() else { return "<empty>".into() };
    match tag {
        NONE => "None".into(),
        TRUE => "True".into(),
        FALSE => "False".into(),
        INT => {
            payload.try_into().map(|a| i64::from_le_bytes(a).to_string()).unwrap_or_else(|_| "<int?>".into())
        }
        FLOAT => payload
            .try_into()
            .map(|a| f64::from_le_bytes(a).to_string())
            .unwrap_or_else(|_| "<float?>".into()),
        STR => {
            let s = String::from_utf8_lossy(payload);
            if s.chars().count() > 40 {
                format!("{:?}...", s.chars().take(40).collect::<String>())
            } else {
                format!("{s:?}")
            }
        }
        BYTES => format!("<{} bytes>", payload.len()),
        BIG_INT => "<big int>".into(),
        _ => format!("<pickled object, {} bytes>", payload.len()),
    }
}
