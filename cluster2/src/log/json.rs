//! Log lines as JSON (`log.format = json`): one object per line, for collectors that read
//! standard error (journald, Docker, Kubernetes, Vector):
//!
//! `{"timestamp":"2026-11-28T06:16:11.123456Z","level":"INFO","target":"cluster2::master",
//! "message":"ready","role":"master","pid":41,"fields":{"workers":"2"}}`
//!
//! `worker` (the worker id) is there for workers only. The event's other fields are under
//! `fields`, as the monitor streams them, so that none can shadow the process's own. A line
//! the throttle let through after holding others back says how many in `held_back`.

use std::fmt;

use serde_json::{Map, Value};
use tracing::Event;
use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;

use super::Who;

/// The line writer's JSON format, with what it knows of its process.
pub(super) struct JsonLine {
    role: &'static str,
    pid: u32,
    worker: Option<usize>,
}

impl JsonLine {
    pub(super) fn new(who: Who) -> Self {
        Self {
            role: who.role(),
            pid: std::process::id(),
            worker: match who {
                Who::Worker(id) => Some(id),
                _ => None,
            },
        }
    }

    pub(super) fn write(&self, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = Map::new();
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        line.insert("timestamp".into(), now.to_string().into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        line.insert("message".into(), fields.message.into());
        line.insert("role".into(), self.role.into());
        line.insert("pid".into(), self.pid.into());
        if let Some(worker) = self.worker {
            line.insert("worker".into(), worker.into());
        }
        if !fields.others.is_empty() {
            line.insert("fields".into(), Value::Object(fields.others));
        }
        if let Some(held) = super::throttle::held_back(meta) {
            line.insert("held_back".into(), held.into());
        }
        // A map of strings and numbers always serializes.
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writer.write_str(&text)?;
        writer.write_char('\n')
    }
}

/// An event's fields: `message` apart, the others as JSON values (numbers and booleans as
/// such, everything else as text).
#[derive(Default)]
struct Fields {
    message: String,
    others: Map<String, Value>,
}

impl Fields {
    fn keep(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
        } else {
            self.others.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.keep(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.keep(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.keep(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.keep(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.keep(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.keep(field, format!("{value:?}").into());
    }
}
