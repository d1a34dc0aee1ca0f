//! The producer's life shows in `tracing` at debug level: start, park, end. (One test in
//! this binary: it installs the process-wide subscriber the producer thread reports to.)

use speedup_buffer::Buffer;
use speedup_test_support::{Recorder, within};

#[test]
fn the_producer_reports_start_park_and_end() {
    let recorder = Recorder::default();
    let seen = recorder.clone();
    tracing::subscriber::set_global_default(recorder).expect("no other global subscriber");
    within(30, move || {
        let buffer = Buffer::builder().lookahead(2).build(0..10u32);
        assert_eq!(buffer.get(0), Some(&0));
        // The producer stops 2 items ahead and parks there.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !seen.messages().iter().any(|m| m.contains("parks")) {
            assert!(std::time::Instant::now() < deadline, "no park event: {:?}", seen.messages());
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(buffer.iter().count(), 10);
        drop(buffer); // joins the producer, which has ended
        let seen = seen.messages();
        for expected in
            ["span speedup_buffer::producer", "producer starts", "producer parks", "producer ends"]
        {
            assert!(seen.iter().any(|m| m.contains(expected)), "no {expected:?} in {seen:?}");
        }
    });
}
