//! Misuse that must not compile (trybuild): two writers on one segment, a scoped segment
//! outliving its buffer, taking an `AtomicArray` out of a shared `Arc`. The `.stderr`
//! snapshots are regenerated with `TRYBUILD=overwrite` when the compiler's wording changes.

#[test]
fn misuse_does_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
