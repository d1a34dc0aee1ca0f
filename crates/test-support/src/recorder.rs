//! A `tracing` subscriber that records, for tests that check what the code logged.

use std::sync::{Arc, Mutex, PoisonError};

/// One recorded span or event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The event's level (a span's, for a span).
    pub level: tracing::Level,
    /// `"span <name>"` for a span; the `message` field for an event.
    pub message: String,
    /// Every other field of an event, as `(name, Debug text)`.
    pub fields: Vec<(String, String)>,
}

/// Keeps every span it sees (as `"span <name>"`) and every event (its message and fields),
/// from every thread it is the subscriber of. Clones share one record.
///
/// Install it with `tracing::subscriber::with_default` for one thread, or
/// `set_global_default` when the code logs from threads of its own (a producer, a listener).
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Recorded>>>);

impl Recorder {
    /// Everything recorded so far, oldest first.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The messages (and `"span <name>"` lines) recorded so far, oldest first.
    pub fn messages(&self) -> Vec<String> {
        self.recorded().into_iter().map(|r| r.message).collect()
    }

    fn push(&self, recorded: Recorded) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(recorded);
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attributes: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let metadata = attributes.metadata();
        self.push(Recorded {
            level: *metadata.level(),
            message: format!("span {}", metadata.name()),
            fields: Vec::new(),
        });
        // Spans are not tracked (entered, exited, closed), so one id serves them all.
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        #[derive(Default)]
        struct Fields {
            message: String,
            others: Vec<(String, String)>,
        }
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.message = format!("{value:?}");
                } else {
                    self.others.push((field.name().to_string(), format!("{value:?}")));
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.push(Recorded {
            level: *event.metadata().level(),
            message: fields.message,
            fields: fields.others,
        });
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_spans_messages_and_fields() {
        let recorder = Recorder::default();
        tracing::subscriber::with_default(recorder.clone(), || {
            let _span = tracing::debug_span!("work").entered();
            tracing::warn!(addr = "127.0.0.1:1", "outage");
        });
        let recorded = recorder.recorded();
        assert_eq!(recorded[0].message, "span work");
        assert_eq!(recorded[1].level, tracing::Level::WARN);
        assert_eq!(recorded[1].message, "outage");
        assert_eq!(recorded[1].fields, vec![("addr".to_string(), "\"127.0.0.1:1\"".to_string())]);
    }
}
