//! Durations as people write them, for every log line and message that reports a measured
//! time: `0.4 ms`, `12 ms`, `1.4 s`, `5 min 3 s`, `2 h 5 min`, `3 d`. One helper, so that
//! the master never says `in 0.0s` in one line and `in 1s 600ms` in the next.
//!
//! Option values keep the option's own syntax in messages (`--death-queue.timeout 30s`): they
//! show what the user wrote and would write again.

use std::time::Duration;

/// `d` with two significant parts at most, in the largest unit that fits.
pub(crate) fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if d < Duration::from_millis(10) {
        let ms = d.as_secs_f64() * 1000.0;
        if ms == 0.0 {
            "0 ms".to_owned()
        } else {
            // `0.0 ms` would read as nothing at all.
            format!("{:.1} ms", ms.max(0.1))
        }
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d < Duration::from_secs(60) {
        format!("{:.1} s", d.as_secs_f64())
    } else if secs < 3600 {
        two_parts(secs / 60, "min", secs % 60, "s")
    } else if secs < 86_400 {
        two_parts(secs / 3600, "h", secs % 3600 / 60, "min")
    } else {
        two_parts(secs / 86_400, "d", secs % 86_400 / 3600, "h")
    }
}

/// `5 min 3 s`, or `5 min` when the second part is zero.
fn two_parts(big: u64, big_unit: &str, small: u64, small_unit: &str) -> String {
    if small == 0 {
        format!("{big} {big_unit}")
    } else {
        format!("{big} {big_unit} {small} {small_unit}")
    }
}

/// [`human`] of a number of seconds (negative and non-finite values read as zero).
pub(crate) fn human_secs(secs: f64) -> String {
    human(Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        let cases = [
            (Duration::ZERO, "0 ms"),
            (Duration::from_micros(3), "0.1 ms"),
            (Duration::from_micros(420), "0.4 ms"),
            (Duration::from_micros(3_250), "3.2 ms"),
            (Duration::from_millis(12), "12 ms"),
            (Duration::from_millis(999), "999 ms"),
            (Duration::from_millis(1_400), "1.4 s"),
            (Duration::from_millis(59_940), "59.9 s"),
            (Duration::from_secs(303), "5 min 3 s"),
            (Duration::from_secs(2 * 3600 + 5 * 60 + 7), "2 h 5 min"),
            (Duration::from_secs(3 * 86_400 + 4 * 3600), "3 d 4 h"),
            (Duration::from_secs(300), "5 min"),
            (Duration::from_secs(3 * 86_400), "3 d"),
        ];
        for (d, text) in cases {
            assert_eq!(human(d), text, "{d:?}");
        }
        assert_eq!(human_secs(-1.0), "0 ms");
        assert_eq!(human_secs(f64::NAN), "0 ms");
        assert_eq!(human_secs(0.012), "12 ms");
    }
}
