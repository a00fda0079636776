//! Warnings the HTTP libraries write about clients, rate-limited. h2 warns once for every
//! connection whose client broke the protocol ("remotely-reset pending-accept streams reached
//! limit"), so a flood of such connections (an HTTP/2 rapid-reset attack) would write a line
//! for each of them. Each such warning is let through at most once per [`WINDOW`] from the same
//! place in the library; the next one let through says how many were held back. The server's
//! own counts (`protocol_errors` in the heartbeats) keep the full tally.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// At most one warning per place in a library per window.
const WINDOW: Duration = Duration::from_secs(10);

/// The libraries whose warnings are about what clients do, one connection at a time.
const LIBRARIES: [&str; 3] = ["h2", "hyper", "hyper_util"];

/// The layer that holds back repeated library warnings.
pub(super) struct Throttle;

impl<S: Subscriber> Layer<S> for Throttle {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        !throttled(meta) || admit(meta.callsite(), Instant::now())
    }
}

/// Whether events from `meta` are rate-limited.
fn throttled(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::WARN
        && LIBRARIES.iter().any(|library| {
            meta.target()
                .strip_prefix(library)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// One place's window.
#[derive(Debug)]
struct Window {
    opened: Instant,
    held: u64,
}

#[derive(Debug, Default)]
struct Places {
    windows: HashMap<Identifier, Window>,
    /// What the event being let through should add: how many were held back before it.
    told: HashMap<Identifier, u64>,
}

fn places() -> std::sync::MutexGuard<'static, Places> {
    static PLACES: OnceLock<Mutex<Places>> = OnceLock::new();
    PLACES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Whether an event from `place` is let through at `now`.
fn admit(place: Identifier, now: Instant) -> bool {
    let mut places = places();
    match places.windows.get_mut(&place) {
        Some(window) if now.duration_since(window.opened) < WINDOW => {
            window.held += 1;
            false
        }
        _ => {
            let old = places.windows.insert(
                place.clone(),
                Window {
                    opened: now,
                    held: 0,
                },
            );
            if let Some(held) = old.map(|w| w.held).filter(|&n| n > 0) {
                places.told.insert(place, held);
            }
            true
        }
    }
}

/// For the line being written about `meta`: how many like it were held back before it.
pub(super) fn held_back(meta: &Metadata<'_>) -> Option<u64> {
    if !throttled(meta) {
        return None;
    }
    places().told.remove(&meta.callsite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_warnings_are_throttled_and_others_are_not() {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        struct Record(std::sync::Arc<Mutex<Vec<String>>>);
        impl<S: Subscriber> Layer<S> for Record {
            fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
                let meta = event.metadata();
                let note = held_back(meta).map_or(String::new(), |n| format!(" +{n}"));
                self.0
                    .lock()
                    .unwrap()
                    .push(format!("{}{note}", meta.target()));
            }
        }
        let subscriber = tracing_subscriber::registry()
            .with(Throttle)
            .with(Record(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..100 {
                tracing::warn!(target: "h2::proto::streams::recv", "reached limit");
                tracing::warn!(target: "my_app", "the application's own");
                tracing::debug!(target: "h2::codec", "a debug line is not throttled");
            }
            tracing::warn!(target: "h2x", "not h2");
        });
        let seen = seen.lock().unwrap();
        let count = |t: &str| seen.iter().filter(|l| *l == t).count();
        assert_eq!(count("h2::proto::streams::recv"), 1, "{seen:?}");
        assert_eq!(count("my_app"), 100);
        assert_eq!(count("h2::codec"), 100);
        assert_eq!(count("h2x"), 1);
    }

    #[test]
    fn the_next_window_opens_with_the_count_held_back() {
        struct Place;
        static PLACE: Place = Place;
        impl tracing::Callsite for Place {
            fn set_interest(&self, _: tracing::subscriber::Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                unreachable!()
            }
        }
        let place = Identifier(&PLACE);
        let start = Instant::now();
        assert!(admit(place.clone(), start));
        for i in 1..=5 {
            assert!(!admit(place.clone(), start + Duration::from_secs(i)));
        }
        assert!(admit(place.clone(), start + WINDOW));
        assert_eq!(places().told.remove(&place), Some(5));
        assert!(!admit(
            place.clone(),
            start + WINDOW + Duration::from_secs(1)
        ));
    }
}
