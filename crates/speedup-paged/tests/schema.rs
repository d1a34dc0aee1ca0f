#![allow(missing_debug_implementations)] // rkyv's generated resolver types have no Debug

//! Type identity on disk is the type's structure: field names and types, recursively, in
//! order. Moving or renaming a type keeps its store; changing its fields is a
//! `TypeMismatch` that shows both schemas.

use speedup_paged::{DiskDict, DiskList, Error, Options, schema_of, storable};

fn opts(dir: &tempfile::TempDir) -> Options {
    Options::new().location(dir.path()).size_limit(4).max_pages(2)
}

mod v1 {
    #[speedup_paged::storable]
    #[derive(Debug, Clone, PartialEq)]
    pub struct Rec {
        pub id: u32,
        pub score: i32,
    }
}

/// The same struct, moved to another module.
mod app {
    pub(crate) mod model {
        #[speedup_paged::storable]
        #[derive(Debug, Clone, PartialEq)]
        pub struct Rec {
            pub id: u32,
            pub score: i32,
        }
    }
}

/// The same fields under another name.
#[storable]
#[derive(Debug, Clone, PartialEq)]
struct Record {
    id: u32,
    score: i32,
}

fn write_v1(dir: &tempfile::TempDir) {
    let mut d: DiskDict<u64, v1::Rec> = DiskDict::open_with("recs", &opts(dir)).unwrap();
    for i in 0..20u64 {
        d.insert(i, v1::Rec { id: i as u32, score: -(i as i32) }).unwrap();
    }
    d.close().unwrap();
}

#[test]
fn a_moved_or_renamed_struct_opens_its_store() {
    let dir = tempfile::tempdir().unwrap();
    write_v1(&dir);
    {
        let d: DiskDict<u64, app::model::Rec> = DiskDict::open_with("recs", &opts(&dir)).unwrap();
        assert_eq!(d.get(&7).unwrap(), Some(app::model::Rec { id: 7, score: -7 }));
    }
    let d: DiskDict<u64, Record> = DiskDict::open_with("recs", &opts(&dir)).unwrap();
    assert_eq!(d.get(&19).unwrap(), Some(Record { id: 19, score: -19 }));
    assert_eq!(d.len(), 20);
}

/// Each way a field can change, as its own struct with the same name in its own module.
macro_rules! changed {
    ($($module:ident { $($field:ident : $ty:ty),* })*) => {$(
        mod $module {
            #[speedup_paged::storable]
            #[derive(Debug)]
            pub struct Rec { $(pub $field: $ty),* }
        }
    )*};
}

changed! {
    retyped { id: u32, score: f32 }
    reordered { score: i32, id: u32 }
    swapped_and_retyped { score: f32, id: u32 }
    renamed { id: u32, points: i32 }
    added { id: u32, score: i32, extra: u8 }
    removed { id: u32 }
    widened { id: u64, score: i32 }
}

fn mismatch<V: speedup_paged::Storable>(dir: &tempfile::TempDir) -> String {
    match DiskDict::<u64, V>::open_with("recs", &opts(dir)) {
        Err(e @ Error::TypeMismatch { .. }) => e.to_string(),
        Err(e) => panic!("expected TypeMismatch, got {e}"),
        Ok(_) => panic!("a store of {} opened as {}", schema_of::<v1::Rec>(), schema_of::<V>()),
    }
}

#[test]
fn every_field_change_is_a_type_mismatch_showing_both_schemas() {
    let dir = tempfile::tempdir().unwrap();
    write_v1(&dir);
    let stored = "struct{id:u32,score:i32}";
    for (message, asked) in [
        (mismatch::<retyped::Rec>(&dir), "struct{id:u32,score:f32}"),
        (mismatch::<reordered::Rec>(&dir), "struct{score:i32,id:u32}"),
        (mismatch::<swapped_and_retyped::Rec>(&dir), "struct{score:f32,id:u32}"),
        (mismatch::<renamed::Rec>(&dir), "struct{id:u32,points:i32}"),
        (mismatch::<added::Rec>(&dir), "struct{id:u32,score:i32,extra:u8}"),
        (mismatch::<removed::Rec>(&dir), "struct{id:u32}"),
        (mismatch::<widened::Rec>(&dir), "struct{id:u64,score:i32}"),
    ] {
        assert!(message.contains(stored), "the message shows the stored schema: {message}");
        assert!(message.contains(asked), "and the asked-for one: {message}");
    }
    // Nothing was changed by the refused opens.
    let d: DiskDict<u64, v1::Rec> = DiskDict::open_with("recs", &opts(&dir)).unwrap();
    assert_eq!(d.len(), 20);
}

mod versioned {
    #[speedup_paged::storable(version = 2)]
    #[derive(Debug, Clone, PartialEq)]
    pub struct Rec {
        pub id: u32,
        pub score: i32,
    }
}

#[test]
fn a_version_marks_an_intentional_change() {
    let dir = tempfile::tempdir().unwrap();
    write_v1(&dir);
    let message = mismatch::<versioned::Rec>(&dir);
    assert!(message.contains("v2 struct{id:u32,score:i32}"), "{message}");
    assert_eq!(schema_of::<versioned::Rec>(), "v2 struct{id:u32,score:i32}");
}

#[storable]
#[derive(Debug, Clone, PartialEq, Hash, Eq)]
enum Shape {
    Empty,
    Circle(u32),
    Rect { w: u32, h: u32 },
}

#[storable]
#[derive(Debug, Clone, PartialEq)]
struct Pair<T> {
    left: T,
    right: T,
}

#[storable]
#[derive(Debug, Clone, PartialEq)]
struct Tree {
    label: String,
    children: Vec<Leaf>,
}

#[storable]
#[derive(Debug, Clone, PartialEq)]
struct Leaf {
    label: String,
    weight: Option<f64>,
}

#[storable]
#[derive(Debug, Clone, PartialEq, Hash, Eq)]
struct Wrapper(u64, String);

#[test]
fn enums_generics_nested_and_tuple_structs_are_storable() {
    assert_eq!(schema_of::<Shape>(), "enum{Empty,Circle(u32),Rect{w:u32,h:u32}}");
    assert_eq!(schema_of::<Pair<u8>>(), "struct{left:u8,right:u8}");
    assert_eq!(
        schema_of::<Tree>(),
        "struct{label:string,children:vec<struct{label:string,weight:option<f64>}>}"
    );
    assert_eq!(schema_of::<Wrapper>(), "struct(u64,string)");

    let dir = tempfile::tempdir().unwrap();
    let tree =
        Tree { label: "root".into(), children: vec![Leaf { label: "leaf".into(), weight: Some(0.5) }] };
    {
        let mut d: DiskDict<Shape, Tree> = DiskDict::open_with("shapes", &opts(&dir)).unwrap();
        d.insert(Shape::Rect { w: 2, h: 3 }, tree.clone()).unwrap();
        d.insert(Shape::Empty, Tree { label: "e".into(), children: vec![] }).unwrap();
        d.close().unwrap();
        let mut l: DiskList<Pair<Wrapper>> = DiskList::open_with("pairs", &opts(&dir)).unwrap();
        l.push(Pair { left: Wrapper(1, "a".into()), right: Wrapper(2, "b".into()) }).unwrap();
        l.close().unwrap();
    }
    let d: DiskDict<Shape, Tree> = DiskDict::open_with("shapes", &opts(&dir)).unwrap();
    assert_eq!(d.get(&Shape::Rect { w: 2, h: 3 }).unwrap(), Some(tree));
    assert_eq!(d.get(&Shape::Circle(1)).unwrap(), None);
    let l: DiskList<Pair<Wrapper>> = DiskList::open_with("pairs", &opts(&dir)).unwrap();
    assert_eq!(l.get(0).unwrap().unwrap().right, Wrapper(2, "b".into()));
    drop(l);
    // A list of the same item schema under other names opens; another item type does not.
    let err = DiskList::<Pair<u8>>::open_with("pairs", &opts(&dir)).unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err}");
}

#[test]
fn keys_and_values_are_told_apart() {
    // Swapping key and value types is a different store even where both are plain.
    let dir = tempfile::tempdir().unwrap();
    DiskDict::<u64, String>::open_with("kv", &opts(&dir)).unwrap().close().unwrap();
    let err = DiskDict::<String, u64>::open_with("kv", &opts(&dir)).unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err}");
}
