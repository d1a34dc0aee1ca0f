//! The producer's life shows in `tracing` at debug level: start, park, end. (One test in
//! this binary: it installs the process-wide subscriber the producer thread reports to.)

use std::sync::{Arc, Mutex};

use speedup_buffer::Buffer;

mod common;

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attributes: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.0.lock().unwrap().push(format!("span {}", attributes.metadata().name()));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        self.0.lock().unwrap().push(message.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn the_producer_reports_start_park_and_end() {
    let recorder = Recorder::default();
    let seen = Arc::clone(&recorder.0);
    tracing::subscriber::set_global_default(recorder).expect("no other global subscriber");
    common::within(30, move || {
        let buffer = Buffer::builder().lookahead(2).build(0..10u32);
        assert_eq!(buffer.get(0), Some(&0));
        // The producer stops 2 items ahead and parks there.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !seen.lock().unwrap().iter().any(|m| m.contains("parks")) {
            assert!(std::time::Instant::now() < deadline, "no park event: {:?}", seen.lock().unwrap());
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(buffer.iter().count(), 10);
        drop(buffer); // joins the producer, which has ended
        let seen = seen.lock().unwrap();
        for expected in
            ["span speedup_buffer::producer", "producer starts", "producer parks", "producer ends"]
        {
            assert!(seen.iter().any(|m| m.contains(expected)), "no {expected:?} in {seen:?}");
        }
    });
}
