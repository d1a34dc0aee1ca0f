//! Every example of the seed (cereal's `eat` document) as a test with asserted output.

#[cfg(feature = "tokio")]
use std::sync::Arc;

#[cfg(feature = "tokio")]
use cereal_eat::AtomicArray;
use cereal_eat::{Ptr, eat, split, split_mut};

/// `yum = eat(x, its=4, np.array)`; `(~yum[0])[0]` is 1; `yum[0][0] = 4` changes `x`.
#[test]
fn pointers_read_and_write_the_original() {
    let yum: Vec<Ptr<Vec<i32>>> = eat(vec![1, 2, 3, 4], 4).collect();
    assert_eq!(yum.len(), 4);
    assert!(yum.iter().all(|p| p.ptr_eq(&yum[0])), "4 pointers to the original object");
    assert!(format!("{:?}", yum[0]).starts_with("<pointer to [1, 2, 3, 4] at 0x"));
    assert_eq!(yum[0].read()[0], 1);
    yum[0].write()[0] = 4;
    let x = recover(yum);
    assert_eq!(x, [4, 2, 3, 4], "it changed!");
}

fn recover<T>(handles: Vec<Ptr<T>>) -> T {
    handles.into_iter().fold(None, |_, p| p.into_inner().ok()).expect("the last handle returns the object")
}

/// Memory does not grow with `its` beyond the handles: one pointer each.
#[test]
fn a_handle_is_one_pointer() {
    assert_eq!(size_of::<Ptr<Vec<u64>>>(), size_of::<usize>());
    let big = vec![0u8; 1 << 20];
    let yum: Vec<Ptr<Vec<u8>>> = eat(big, 100_000).collect();
    let handle_bytes = yum.len() * size_of::<Ptr<Vec<u8>>>();
    println!(
        "100,000 handles to 1 MiB: {handle_bytes} bytes of handles, 1 object of {} bytes",
        yum[0].read().len()
    );
    assert_eq!(handle_bytes, 800_000);
    assert_eq!(yum[0].handles(), 100_000);
}

/// `eat(x, its=4, method=pd.DataFrame, compute=True, columns=['a','b','c','d'])`.
#[test]
fn compute_mode_repeats_the_row() {
    let x = [1i64, 2, 3, 4];
    assert_eq!(cereal_eat::compute::repeat_rows(&x, 4), vec![vec![1, 2, 3, 4]; 4]);
    let view = cereal_eat::compute::broadcast_rows(&x, 4);
    assert_eq!(view.shape(), [4, 4]);
    assert_eq!(view.row(3).to_vec(), [1, 2, 3, 4]);
    #[cfg(feature = "arrow")]
    {
        let df = cereal_eat::compute::to_record_batch(&x, 4, &["a", "b", "c", "d"]).unwrap();
        let names: Vec<_> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(df.num_rows(), 4);
        assert!(cereal_eat::compute::to_record_batch(&x, 4, &["a"]).is_err());
    }
}

/// `def addone(x, pos): x[pos] += 1`; `list(map(addone, yum, range(len(yum))))`.
#[test]
fn addone_through_positions() {
    let mut x = vec![1, 2, 3, 4];
    let yum = split_mut(&mut x, &[4], 4).unwrap();
    let out: Vec<()> = yum.into_iter().map(|seg| seg[0] += 1).collect();
    assert_eq!(out, [(), (), (), ()], "[None, None, None, None]");
    assert_eq!(x, [2, 3, 4, 5]);
}

/// Orchestration: `x = np.arange(100).reshape(4, 25)`, `addone` over 4 row segments.
#[test]
fn orchestration_4x25() {
    let (whole, segments) = split((0..100).collect::<Vec<i64>>(), &[4, 25], 4).unwrap();
    let segments: Vec<_> = segments
        .into_iter()
        .enumerate()
        .map(|(pos, mut seg)| {
            assert_eq!(seg.pos(), pos);
            for n in 0..25 {
                seg[n] += 1;
            }
            seg
        })
        .collect();
    let x = whole.join(segments).unwrap();
    assert_eq!(x, (1..=100).collect::<Vec<i64>>());
}

/// Parallelization: `x = np.arange(10000).reshape(16, 625)` on a thread pool, 16 segments.
#[test]
fn thread_pool_16x625() {
    let (whole, segments) = split((0..10_000).collect::<Vec<i64>>(), &[16, 625], 16).unwrap();
    let segments = cereal_eat::traverse::par_for_each(segments, 0, |slice| {
        for n in 0..625 {
            slice[n] += 1;
        }
    });
    let x = whole.join(segments).unwrap();
    assert_eq!(x[0], 1);
    assert_eq!(x[9_999], 10_000);
    assert!(x.iter().enumerate().all(|(i, &v)| v == i as i64 + 1));
}

/// Async: 10,000 tasks that each await a random delay, then add one to one element.
/// Submission returns at once; the array can be read (consistently) while they run.
// `spawn_each` is behind the `tokio` feature (`cargo test --all-features` runs this).
#[cfg(feature = "tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_async_tasks() {
    let x = Arc::new(AtomicArray::from_vec((0..10_000i64).collect(), &[16, 625]).unwrap());
    let shared = Arc::clone(&x);
    let all = cereal_eat::traverse::spawn_each(10_000, 10_000, move |n| {
        let x = Arc::clone(&shared);
        async move {
            // A pseudo-random delay of 0..200 ms (the seed used up to 1 s).
            let delay = (n as u64).wrapping_mul(2_654_435_761) % 200;
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            x.fetch_add(n, 1);
        }
    });
    // Mid-flight: every element is either its old value or old + 1, never anything else.
    let mid = x.to_vec();
    assert!(mid.iter().enumerate().all(|(i, &v)| v == i as i64 || v == i as i64 + 1));
    all.await.unwrap();
    assert_eq!(x.to_vec(), (1..=10_000).collect::<Vec<i64>>());
}
