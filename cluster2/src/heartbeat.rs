//! What each worker reports to the master every `heartbeat_interval`. It is measured in
//! `worker::counting` (the request path) and `worker::reporter` (the rest).
//!
//! The same struct crosses the channel in postcard every interval and reaches operators as
//! JSON in the monitor's `/workers`. Its durations are therefore written two ways: as seconds
//! in human-readable formats, where jq and dashboards expect a number, and in serde's compact
//! form in postcard, which the master decodes from every worker on every beat.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default upper bounds, in seconds, of the buckets of
/// [`Heartbeat::request_duration_buckets`] and of the `request_duration_seconds` histograms of
/// `/metrics` (the option `metrics.buckets` sets others); a last bucket takes the longer
/// requests. From a millisecond, for services that answer in microseconds, to ten seconds.
pub const REQUEST_DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One report from a worker. The master keeps the latest of each worker.
///
/// Its words are those of the monitor's `/metrics`: requests, connections, CPU in percent,
/// memory in bytes; counters since the worker started end in `_total`. In JSON every duration
/// is a number of seconds, named with a `_secs` suffix: `"uptime_secs": 12.5`,
/// `"event_loop_lag_secs": 0.0012`. The monitor's `/workers` shows it (without the pid, worker
/// id and uptime, which the worker's entry has) as `heartbeat`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Heartbeat {
    /// The worker's pid.
    pub pid: u32,
    /// The worker's id.
    pub worker: usize,
    /// Time since the worker process started.
    #[serde(rename = "uptime_secs", with = "secs")]
    pub uptime: Duration,
    /// CPU used over the last interval, in percent of one core (may exceed 100 with several
    /// runtime threads).
    pub cpu_percent: f64,
    /// Resident memory, in bytes.
    pub memory_bytes: u64,
    /// Connections open on the shared port right now.
    pub open_connections: u64,
    /// Connections accepted on the shared port since start.
    pub connections_total: u64,
    /// Requests answered over the interval this heartbeat covers.
    pub requests: u64,
    /// Summed time to the response head of those requests (divided by `requests`: their mean
    /// latency).
    #[serde(rename = "request_duration_secs", with = "secs")]
    pub request_duration: Duration,
    /// Requests per second over the interval.
    pub requests_per_second: f64,
    /// Requests answered since start.
    pub requests_total: u64,
    /// Summed time to the response head of every request since start.
    #[serde(rename = "request_duration_total_secs", with = "secs")]
    pub request_duration_total: Duration,
    /// Requests answered since start, by time to the response head: one count per bound of
    /// `metrics.buckets` (by default [`REQUEST_DURATION_BUCKETS`]; up to and including the
    /// bound, and above the previous one), then the requests longer than the last bound. A
    /// fixed size, whatever the traffic: at most 33 counts.
    pub request_duration_buckets: Vec<u64>,
    /// 5xx responses over the interval.
    pub errors: u64,
    /// Handler panics over the interval (each answered with a 500).
    pub panics: u64,
    /// Connections closed since the last heartbeat because their client broke the protocol:
    /// malformed or oversized request heads, HTTP/2 violations such as a flood of streams reset
    /// as soon as they were opened. Such an interval says nothing about the worker's own
    /// health.
    pub protocol_errors: u64,
    /// Access log lines dropped since start because the disk or pipe they go to fell behind
    /// (`log.access`); 0 while the access log is off.
    pub access_log_dropped_total: u64,
    /// How late a short timer fired, at worst, over the last interval: how long the runtime
    /// was kept from running ready tasks.
    #[serde(rename = "event_loop_lag_secs", with = "secs")]
    pub event_loop_lag: Duration,
    /// The interval this heartbeat covers: since the previous one (about `heartbeat_interval`;
    /// shorter for the first and the last).
    #[serde(rename = "interval_secs", with = "secs")]
    pub interval: Duration,
}

/// A `Duration` as seconds (an `f64`) in human-readable formats, and as serde's own compact
/// form (whole seconds and nanoseconds) in the others; either reads back what it wrote.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_f64(value.as_secs_f64())
        } else {
            value.serialize(serializer)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        if deserializer.is_human_readable() {
            let secs = f64::deserialize(deserializer)?;
            Duration::try_from_secs_f64(secs)
                .map_err(|_| de::Error::custom(format!("{secs} is not a duration in seconds")))
        } else {
            Duration::deserialize(deserializer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(uptime: Duration) -> Heartbeat {
        Heartbeat {
            pid: 7,
            worker: 1,
            uptime,
            cpu_percent: 1.5,
            memory_bytes: 1 << 20,
            open_connections: 2,
            connections_total: 9,
            requests: 4,
            request_duration: Duration::from_millis(250),
            requests_per_second: 0.8,
            requests_total: 40,
            request_duration_total: Duration::from_millis(2500),
            request_duration_buckets: vec![30, 10],
            errors: 0,
            panics: 0,
            protocol_errors: 0,
            access_log_dropped_total: 0,
            event_loop_lag: Duration::from_micros(1500),
            interval: Duration::from_secs(5),
        }
    }

    #[test]
    fn json_has_durations_as_seconds_under_secs_names_and_reads_them_back() {
        let beat = beat(Duration::new(1, 5));
        let json = serde_json::to_value(&beat).unwrap();
        assert_eq!(json["uptime_secs"], 1.000000005);
        assert_eq!(json["request_duration_secs"], 0.25);
        assert_eq!(json["request_duration_total_secs"], 2.5);
        assert_eq!(json["event_loop_lag_secs"], 0.0015);
        assert_eq!(json["interval_secs"], 5.0);
        for old in [
            "uptime",
            "request_duration",
            "request_duration_total",
            "event_loop_lag",
            "interval",
        ] {
            assert!(json.get(old).is_none(), "{old} in {json}");
        }

        // Whole numbers of seconds are durations too.
        let mut json = json;
        json["uptime_secs"] = 3.into();
        let back: Heartbeat = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(
            back,
            Heartbeat {
                uptime: Duration::from_secs(3),
                ..beat
            }
        );
        json["interval_secs"] = (-1.0).into();
        let err = serde_json::from_value::<Heartbeat>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("-1 is not a duration in seconds"), "{err}");
    }

    #[test]
    fn postcard_keeps_the_compact_exact_form() {
        // A year and some nanoseconds: more digits than an f64 holds, so only the compact form
        // brings it back exactly.
        let beat = beat(Duration::new(365 * 86_400, 123_456_789));
        let bytes = postcard::to_allocvec(&beat).unwrap();
        assert_eq!(postcard::from_bytes::<Heartbeat>(&bytes).unwrap(), beat);
        // Seconds and nanoseconds as varints, as serde writes a `Duration`: five seconds is
        // two bytes, not the eight of an f64.
        let interval = postcard::to_allocvec(&(5u64, 0u32)).unwrap();
        assert!(bytes.ends_with(&interval), "{bytes:?}");
    }
}
