//! Computations, tier calls and evictions show in `tracing` at debug level.

use std::sync::{Arc, Mutex};

use speedup_cache::Cache;

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
fn computations_and_evictions_are_traced() {
    let recorder = Recorder::default();
    let seen = Arc::clone(&recorder.0);
    tracing::subscriber::with_default(recorder, || {
        let fib = Cache::builder().capacity(4).build(
            |c: &Cache<u64, u64>, n: u64| {
                if n < 2 { 1 } else { c.get(n - 1) + c.get(n - 2) }
            },
        );
        assert_eq!(fib.get(20), 10946);
    });
    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(|m| m == "span speedup_cache::compute"), "{seen:?}");
    assert!(seen.iter().any(|m| m.contains("evicted")), "{seen:?}");
}

#[cfg(feature = "persist")]
#[test]
fn backing_calls_are_traced() {
    let recorder = Recorder::default();
    let seen = Arc::clone(&recorder.0);
    let dir = tempfile::tempdir().unwrap();
    tracing::subscriber::with_default(recorder, || {
        let options = speedup_paged::Options::new().location(dir.path());
        let dict = speedup_paged::DiskDict::<u64, u64>::open_with("memo", &options).unwrap();
        let square =
            Cache::builder().backing(std::sync::RwLock::new(dict)).build(|_: &Cache<u64, u64>, n: u64| n * n);
        assert_eq!(square.get(7), 49);
    });
    let seen = seen.lock().unwrap();
    for expected in ["span speedup_cache::backing_load", "span speedup_cache::backing_store"] {
        assert!(seen.iter().any(|m| m == expected), "no {expected:?} in {seen:?}");
    }
}
