//! Structural type identity: what a store records about the types it holds.
//!
//! A store must refuse to be read as another type (the bytes would decode as garbage) and
//! must keep opening after changes that do not touch the bytes: moving a type to another
//! module or crate, renaming it, upgrading the compiler. So identity is the type's
//! *structure* — field names and field types, recursively, in order — never its path or
//! `std::any::type_name` (which std documents as unstable across releases).
//!
//! [`Schema`] describes a type as a short canonical text, e.g. `struct{id:u32,score:f32}`;
//! [`#[storable]`](crate::storable) writes the impl for a user's type, and this module has
//! the impls for the standard types rkyv stores. A type that refers to itself (a tree)
//! is written with a back-reference, `^N`: "the type N levels up", so the text stays
//! finite and still depends only on structure.

use std::any::TypeId;

/// A type's structural description, recorded in a store's header; see the
/// [module docs](self) and [`#[storable]`](crate::storable), which implements it.
///
/// Two types with the same description must archive to the same bytes: implement it by
/// hand only for a type whose rkyv archived form is fully determined by what you write.
pub trait Schema: 'static {
    /// Writes this type's description into `out`.
    fn describe(out: &mut SchemaWriter);
}

/// Collects a [`Schema`] description (see [`schema_of`]).
#[derive(Debug, Default)]
pub struct SchemaWriter {
    text: String,
    /// The types being described, outermost first: a type met again is a back-reference.
    open: Vec<TypeId>,
}

impl SchemaWriter {
    /// Appends literal text (punctuation, a field name, a variant name).
    pub fn text(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Appends the description of `T`, or `^N` if `T` is already being described `N`
    /// levels up (a recursive type).
    pub fn type_of<T: Schema + ?Sized>(&mut self) {
        let id = TypeId::of::<T>();
        if let Some(at) = self.open.iter().rposition(|&open| open == id) {
            let up = self.open.len() - at;
            self.text.push_str(&format!("^{up}"));
            return;
        }
        self.open.push(id);
        T::describe(self);
        self.open.pop();
    }
}

/// The canonical description of `T`: what a store's header records and compares.
///
/// ```
/// #[speedup_paged::storable]
/// struct Rec { id: u32, score: f32 }
///
/// assert_eq!(speedup_paged::schema_of::<Rec>(), "struct{id:u32,score:f32}");
/// assert_eq!(speedup_paged::schema_of::<Vec<Option<(u8, String)>>>(), "vec<option<(u8,string)>>");
/// ```
pub fn schema_of<T: Schema + ?Sized>() -> String {
    let mut out = SchemaWriter::default();
    out.type_of::<T>();
    out.text
}

macro_rules! leaf {
    ($($ty:ty => $name:literal),* $(,)?) => {$(
        impl Schema for $ty {
            fn describe(out: &mut SchemaWriter) {
                out.text($name);
            }
        }
    )*};
}

leaf! {
    () => "()", bool => "bool", char => "char",
    u8 => "u8", u16 => "u16", u32 => "u32", u64 => "u64", u128 => "u128", usize => "usize",
    i8 => "i8", i16 => "i16", i32 => "i32", i64 => "i64", i128 => "i128", isize => "isize",
    f32 => "f32", f64 => "f64",
    std::num::NonZeroU8 => "nonzero_u8", std::num::NonZeroU16 => "nonzero_u16",
    std::num::NonZeroU32 => "nonzero_u32", std::num::NonZeroU64 => "nonzero_u64",
    std::num::NonZeroU128 => "nonzero_u128", std::num::NonZeroUsize => "nonzero_usize",
    std::num::NonZeroI8 => "nonzero_i8", std::num::NonZeroI16 => "nonzero_i16",
    std::num::NonZeroI32 => "nonzero_i32", std::num::NonZeroI64 => "nonzero_i64",
    std::num::NonZeroI128 => "nonzero_i128", std::num::NonZeroIsize => "nonzero_isize",
    // `String` archives as `ArchivedString`, `str` (behind a `Box`) as `ArchivedBox<str>`.
    String => "string", str => "str",
    std::time::Duration => "duration",
}

/// One-parameter containers: `name<T>`.
macro_rules! wrapper {
    ($($name:literal => $ty:ident),* $(,)?) => {$(
        impl<T: Schema + ?Sized> Schema for $ty<T> {
            fn describe(out: &mut SchemaWriter) {
                out.text(concat!($name, "<"));
                out.type_of::<T>();
                out.text(">");
            }
        }
    )*};
}

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;

// `Box<T>` archives as a relative pointer to `T`, so `Box<str>` is not `string`.
wrapper! { "box" => Box, "arc" => Arc }

impl<T: Schema> Schema for Vec<T> {
    fn describe(out: &mut SchemaWriter) {
        out.text("vec<");
        out.type_of::<T>();
        out.text(">");
    }
}

// rkyv archives a `VecDeque` exactly as a `Vec`.
impl<T: Schema> Schema for VecDeque<T> {
    fn describe(out: &mut SchemaWriter) {
        out.text("vec<");
        out.type_of::<T>();
        out.text(">");
    }
}

impl<T: Schema> Schema for [T] {
    fn describe(out: &mut SchemaWriter) {
        out.text("slice<");
        out.type_of::<T>();
        out.text(">");
    }
}

impl<T: Schema> Schema for Option<T> {
    fn describe(out: &mut SchemaWriter) {
        out.text("option<");
        out.type_of::<T>();
        out.text(">");
    }
}

impl<T: Schema, E: Schema> Schema for Result<T, E> {
    fn describe(out: &mut SchemaWriter) {
        out.text("result<");
        out.type_of::<T>();
        out.text(",");
        out.type_of::<E>();
        out.text(">");
    }
}

impl<T: Schema, const N: usize> Schema for [T; N] {
    fn describe(out: &mut SchemaWriter) {
        out.text("[");
        out.type_of::<T>();
        out.text(&format!(";{N}]"));
    }
}

impl<T: Schema> Schema for Range<T> {
    fn describe(out: &mut SchemaWriter) {
        out.text("range<");
        out.type_of::<T>();
        out.text(">");
    }
}

impl<T: ?Sized + 'static> Schema for PhantomData<T> {
    fn describe(out: &mut SchemaWriter) {
        out.text("phantom");
    }
}

impl<K: Schema, V: Schema, S: 'static> Schema for HashMap<K, V, S> {
    fn describe(out: &mut SchemaWriter) {
        out.text("hashmap<");
        out.type_of::<K>();
        out.text(",");
        out.type_of::<V>();
        out.text(">");
    }
}

impl<T: Schema, S: 'static> Schema for HashSet<T, S> {
    fn describe(out: &mut SchemaWriter) {
        out.text("hashset<");
        out.type_of::<T>();
        out.text(">");
    }
}

impl<K: Schema, V: Schema> Schema for BTreeMap<K, V> {
    fn describe(out: &mut SchemaWriter) {
        out.text("btreemap<");
        out.type_of::<K>();
        out.text(",");
        out.type_of::<V>();
        out.text(">");
    }
}

impl<T: Schema> Schema for BTreeSet<T> {
    fn describe(out: &mut SchemaWriter) {
        out.text("btreeset<");
        out.type_of::<T>();
        out.text(">");
    }
}

macro_rules! tuple {
    ($first:ident $(, $rest:ident)*) => {
        impl<$first: Schema $(, $rest: Schema)*> Schema for ($first, $($rest,)*) {
            fn describe(out: &mut SchemaWriter) {
                out.text("(");
                out.type_of::<$first>();
                $(
                    out.text(",");
                    out.type_of::<$rest>();
                )*
                out.text(")");
            }
        }
    };
}

tuple!(A);
tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D);
tuple!(A, B, C, D, E);
tuple!(A, B, C, D, E, F);
tuple!(A, B, C, D, E, F, G);
tuple!(A, B, C, D, E, F, G, H);
tuple!(A, B, C, D, E, F, G, H, I);
tuple!(A, B, C, D, E, F, G, H, I, J);
tuple!(A, B, C, D, E, F, G, H, I, J, K);
tuple!(A, B, C, D, E, F, G, H, I, J, K, L);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_types() {
        assert_eq!(schema_of::<u64>(), "u64");
        assert_eq!(schema_of::<(u32, i64)>(), "(u32,i64)");
        assert_eq!(schema_of::<(u32,)>(), "(u32)");
        assert_eq!(schema_of::<[u8; 4]>(), "[u8;4]");
        assert_eq!(schema_of::<Box<str>>(), "box<str>");
        assert_ne!(schema_of::<Box<String>>(), schema_of::<Box<str>>());
        assert_eq!(schema_of::<HashMap<String, Vec<f32>>>(), "hashmap<string,vec<f32>>");
        assert_eq!(schema_of::<Result<u8, String>>(), "result<u8,string>");
    }

    /// A recursive type gets a back-reference instead of an endless description.
    struct Tree(#[allow(dead_code)] Vec<Tree>);
    impl Schema for Tree {
        fn describe(out: &mut SchemaWriter) {
            out.text("struct(");
            out.type_of::<Vec<Tree>>();
            out.text(")");
        }
    }

    #[test]
    fn recursive_types_refer_back() {
        assert_eq!(schema_of::<Tree>(), "struct(vec<^2>)");
        assert_eq!(schema_of::<Option<Tree>>(), "option<struct(vec<^2>)>");
    }
}
