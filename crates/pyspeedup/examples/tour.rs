//! A tour of pyspeedup-rs: every example of the two original documents (PySpeedup's and
//! cereal's), translated to Rust, printing what the originals print. Each result is also
//! asserted, so the tour doubles as a test of the translations.
//!
//! Run with `cargo run --release --example tour`; with `RUST_LOG=debug` in the environment
//! it also prints the crates' debug spans (stores opened and flushed, splits and joins, ...)
//! on stderr.

use num_bigint::BigUint;
use pyspeedup::buffer::{Buffer, halt};
use pyspeedup::cache::Cache;
use pyspeedup::paged::{DiskDict, DiskList, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::NEW)
        .with_writer(std::io::stderr)
        .init();
    eat()?;
    buffer();
    cache();
    let dir = tempfile::tempdir()?;
    paged(dir.path())?;
    println!("\ntour complete");
    Ok(())
}

/// cereal's `eat`.
fn eat() -> Result<(), Box<dyn std::error::Error>> {
    use pyspeedup::eat::compute::broadcast_rows;
    use pyspeedup::eat::traverse::par_for_each;
    use pyspeedup::eat::{AtomicArray, Ptr, eat, split, split_mut};

    section("cereal: eat");
    println!(">>> yum = eat(x, its = 4, np.array, copy = False)");
    let yum: Vec<Ptr<Vec<i32>>> = eat(vec![1, 2, 3, 4], 4).collect();
    println!("{yum:?}");
    println!(">>> (~yum[0])[0]\n{}", yum[0].read()[0]);
    yum[0].write()[0] = 4;
    println!(">>> yum[0][0] = 4\n>>> x\n{:?}", *yum[3].read());
    assert_eq!(*yum[3].read(), [4, 2, 3, 4]);

    println!(">>> eat(x, its = 4, method = pd.DataFrame, compute=True, columns = ['a', 'b', 'c', 'd'])");
    let table = broadcast_rows(&[1, 2, 3, 4], 4);
    println!("   a  b  c  d");
    for (i, row) in table.rows().into_iter().enumerate() {
        println!("{i}  {}", row.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("  "));
    }

    println!(">>> list(map(addone, yum, range(len(yum))))");
    let mut x = vec![1, 2, 3, 4];
    let out: Vec<()> = split_mut(&mut x, &[4], 4)?.into_iter().map(|seg| seg[0] += 1).collect();
    println!("[{}]\n>>> x\n{x:?}", out.iter().map(|()| "None").collect::<Vec<_>>().join(", "));
    assert_eq!(x, [2, 3, 4, 5]);

    println!(">>> x = np.arange(100).reshape(4, 25); list(map(addone, yum, range(4)))");
    let (whole, segments) = split((0..100).collect::<Vec<i64>>(), &[4, 25], 4)?;
    let segments: Vec<_> = segments
        .into_iter()
        .map(|mut seg| {
            seg.iter_mut().for_each(|v| *v += 1);
            seg
        })
        .collect();
    let x = whole.join(segments).map_err(|_| "segments missing")?;
    for row in x.chunks(25) {
        println!("{row:?}");
    }
    assert_eq!(x[99], 100);

    println!(">>> x = np.arange(10000).reshape(16, 625); ThreadPoolExecutor().map(traverse, yum, range(16))");
    let (whole, segments) = split((0..10_000).collect::<Vec<i64>>(), &[16, 625], 16)?;
    let start = std::time::Instant::now();
    let segments = par_for_each(segments, 0, |slice| slice.iter_mut().for_each(|v| *v += 1));
    let took = start.elapsed();
    let x = whole.join(segments).map_err(|_| "segments missing")?;
    println!("[{}, {}, {}, ..., {}]  ({took:?}; the original: 111 ms)", x[0], x[1], x[2], x[9_999]);
    assert_eq!(x[9_999], 10_000);

    println!(">>> 10,000 asyncio tasks: await a random delay, then slice[n] += 1");
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let x = std::sync::Arc::new(AtomicArray::from_vec((0..10_000i64).collect(), &[16, 625])?);
        let shared = std::sync::Arc::clone(&x);
        let start = std::time::Instant::now();
        let all = pyspeedup::eat::traverse::spawn_each(10_000, 10_000, move |n| {
            let x = std::sync::Arc::clone(&shared);
            async move {
                let delay = (n as u64).wrapping_mul(2_654_435_761) % 1000;
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                x.fetch_add(n, 1);
            }
        });
        println!("submitted in {:?}", start.elapsed());
        let mid = x.to_vec();
        let done = mid.iter().enumerate().filter(|(i, v)| **v == *i as i64 + 1).count();
        println!(">>> x  # could be complete, or incomplete...\n{done} of 10000 updated so far");
        all.await.map_err(|e| e.to_string())?;
        println!("all done after {:?}: x[0] = {}, x[9999] = {}", start.elapsed(), x.get(0), x.get(9_999));
        assert_eq!(x.get(9_999), 10_000);
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

/// PySpeedup "Concurrent Buffer".
fn buffer() {
    section("Concurrent Module: Buffer");
    println!(">>> @buffer(4)\n... def count(): ...");
    let count = Buffer::builder().lookahead(4).build(0u64..);
    println!(">>> count[0]\n{}", count.get(0).expect("infinite"));
    println!(">>> count[15]\n{}", count.get(15).expect("infinite"));
    assert_eq!((count.get(0), count.get(15)), (Some(&0), Some(&15)));
    println!(">>> for v,i in enumerate(count): ...");
    for (v, i) in count.iter().enumerate() {
        if v as u64 != *i {
            println!("Fail");
        }
        if v == 5 {
            println!("Success");
            break;
        }
    }
    println!(">>> 100 in count\n{}", count.contains(&100));
    assert!(count.contains(&100), "the original printed False here");

    println!(
        ">>> @buffer(haltCondition = absolutelyNonDecreasing)\n... def complexSpiral(): i = 1; yield i; i *= 1.1j"
    );
    // Exact arithmetic: the spiral scaled by 10^k, z(k) = (11i)^k, so rounding cannot
    // decide the answer (1.1j -> 11i, -1.21 -> -121).
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Gaussian(i128, i128);
    impl halt::Magnitude for Gaussian {
        fn magnitude(&self) -> f64 {
            ((self.0 * self.0 + self.1 * self.1) as f64).sqrt()
        }
    }
    let spiral = Buffer::builder()
        .halt(halt::AbsNonDecreasing)
        .build(std::iter::successors(Some(Gaussian(1, 0)), |z| Some(Gaussian(-11 * z.1, 11 * z.0))).take(40));
    println!(">>> complexSpiral[1]\n{:?}  (1.1j, scaled by 10)", spiral.get(1).expect("40 items"));
    println!(">>> -1.21 in complexSpiral\n{}", spiral.contains(&Gaussian(-121, 0)));
    assert!(spiral.contains(&Gaussian(-121, 0)));
}

/// PySpeedup "Concurrent Cache".
fn cache() {
    section("Concurrent Module: Cache");
    let simple = Cache::new(|f: &Cache<u64, BigUint>, n: u64| {
        if n < 2 {
            return BigUint::from(1u32);
        }
        f.get(n - 1) + f.get(n - 2)
    });
    println!(">>> fibonacci(5)\n{}", simple.get(5));
    assert_eq!(simple.get(5).to_string(), "8");
    let with_apply_async = Cache::new(|f: &Cache<u64, BigUint>, n: u64| {
        if n < 2 {
            return BigUint::from(1u32);
        }
        f.apply_async(n - 1);
        f.apply_async(n - 2);
        f.get(n - 1) + f.get(n - 2)
    });
    println!(">>> fibonacci(100)  # with apply_async\n{}", with_apply_async.get(100));
    assert_eq!(with_apply_async.get(100).to_string(), "573147844013817084101");
    let with_batch_async = Cache::new(|f: &Cache<u64, BigUint>, n: u64| {
        if n < 2 {
            return BigUint::from(1u32);
        }
        f.batch_async([n - 1, n - 2]);
        f.get(n - 1) + f.get(n - 2)
    });
    println!(">>> fibonacci(200)  # with batch_async\n{}", with_batch_async.get(200));
    assert_eq!(with_batch_async.get(200).to_string(), "453973694165307953197296969697410619233826");
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
        // The original prints d[3] on every pass: a KeyError until 3 is inserted. Rust says so.
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
