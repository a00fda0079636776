//! The application port's certificate in time: when it starts and stops being valid, read
//! from the leaf (the chain's first certificate) each time the master loads one, said in one
//! line then, and looked at again once a day while the cluster runs, so that an operator hears
//! of an expiry in time to renew and send SIGHUP. The end of it also goes to `/metrics`.
//!
//! "In time" is when a renewal is due: when a third of the certificate's lifetime is left, as
//! ACME clients renew (certbot at 30 days left of Let's Encrypt's 90, Caddy at a third), and
//! at most 30 days before. A fixed 30 days would warn about a short-lived certificate (six
//! days, 47 days) for most of its life, and a warning that is always there is not read.
//!
//! A certificate out of its validity is still served: clients decide what they accept (one
//! may not check dates at all), and refusing to start would take a whole site down for what
//! its clients may forgive. It is an error in the log, every day.

use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::Pem;

const DAY: i64 = 86_400;

/// The longest warning before an expiry.
const WARN_AT_MOST: i64 = 30 * DAY;

/// When a certificate is valid, in unix seconds (X.509's notBefore and notAfter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl Validity {
    /// The validity of the first certificate of the PEM chain `cert`, read from `cert_path`;
    /// the error names the file.
    pub(crate) fn of(cert: &[u8], cert_path: &str) -> Result<Self, String> {
        let leaf = CertificateDer::pem_slice_iter(cert)
            .next()
            .ok_or_else(|| {
                format!(
                    "--tls.cert {cert_path}: no certificate in it \
                     (expected PEM: -----BEGIN CERTIFICATE-----)"
                )
            })?
            .map_err(|e| format!("--tls.cert {cert_path}: not a PEM certificate chain: {e}"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf).map_err(|e| {
            format!(
                "--tls.cert {cert_path}: the first certificate is not X.509 as it should be: {e}"
            )
        })?;
        let validity = cert.validity();
        Ok(Self {
            not_before: validity.not_before.timestamp(),
            not_after: validity.not_after.timestamp(),
        })
    }

    /// How long before its end the certificate is due for renewal: a third of its lifetime, at
    /// most 30 days.
    fn warn_before(self) -> i64 {
        (self.not_after.saturating_sub(self.not_before).max(0) / 3).min(WARN_AT_MOST)
    }

    fn state(self, now: i64) -> State {
        if now < self.not_before {
            State::NotYetValid
        } else if now >= self.not_after {
            State::Expired
        } else if self.not_after - now <= self.warn_before() {
            State::DueForRenewal
        } else {
            State::Valid
        }
    }

    /// The next moment after `now` the state may change, or a day from now if sooner: when to
    /// look again.
    fn next_look(self, now: i64) -> i64 {
        [
            self.not_before,
            self.not_after - self.warn_before(),
            self.not_after,
        ]
        .into_iter()
        .filter(|&t| t > now)
        .fold(now + DAY, i64::min)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    NotYetValid,
    Valid,
    DueForRenewal,
    Expired,
}

/// How loud a line about the certificate is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Info,
    Warn,
    Error,
}

/// The master's watch on the certificate it serves: said once when loaded, then looked at
/// again once a day (and at the moment it becomes due for renewal or expires).
#[derive(Debug)]
pub(crate) struct Expiry {
    cert_path: String,
    validity: Validity,
    /// Unix seconds of the next look.
    next_look: i64,
}

impl Expiry {
    /// The validity of `pem`, read from `cert_path`: nothing is said yet ([`Expiry::report`]).
    pub(crate) fn read(pem: &Pem, cert_path: &str) -> Result<Self, String> {
        Ok(Self {
            cert_path: cert_path.to_owned(),
            validity: Validity::of(&pem.cert, cert_path)?,
            next_look: i64::MIN,
        })
    }

    /// [`Expiry::read`] for the certificate served, if any. One that rustls serves but that
    /// does not read as X.509 is only not watched, with a warning: it still serves.
    pub(crate) fn watch(pem: Option<&Pem>, cert_path: Option<&str>) -> Option<Self> {
        match Self::read(pem?, cert_path?) {
            Ok(expiry) => Some(expiry),
            Err(e) => {
                tracing::warn!("{e}: its expiry is not watched");
                None
            }
        }
    }

    /// The end of the certificate's validity, in unix seconds.
    pub(crate) fn not_after(&self) -> i64 {
        self.validity.not_after
    }

    /// Says, in one line, how long the certificate has left: when it was just loaded.
    pub(crate) fn report(&mut self) {
        let line = self.look_at(unix_now(), true);
        log(line);
    }

    /// Says again what is wrong with the certificate if anything is, once a day; in between, a
    /// clock read and a comparison, cheap enough for any periodic task.
    pub(crate) fn look(&mut self) {
        let line = self.look_at(unix_now(), false);
        log(line);
    }

    /// What to say at `now`: always when `loading`, otherwise only when a look is due and
    /// something is wrong.
    fn look_at(&mut self, now: i64, loading: bool) -> Option<(Level, String)> {
        // A clock set back by more than a day must not push the next look that far away.
        let due = now >= self.next_look || self.next_look - now > DAY;
        if !loading && !due {
            return None;
        }
        self.next_look = self.validity.next_look(now);
        let state = self.validity.state(now);
        if !loading && state == State::Valid {
            return None;
        }
        Some(self.line(state, now))
    }

    fn line(&self, state: State, now: i64) -> (Level, String) {
        let Validity {
            not_before,
            not_after,
        } = self.validity;
        let file = format!("--tls.cert {}", self.cert_path);
        match state {
            State::Valid => (
                Level::Info,
                format!(
                    "{file}: the certificate expires on {}, in {}",
                    rfc3339(not_after),
                    days(not_after - now)
                ),
            ),
            State::DueForRenewal => (
                Level::Warn,
                format!(
                    "{file}: the certificate expires on {}, in {}: renew it and send SIGHUP",
                    rfc3339(not_after),
                    days(not_after - now)
                ),
            ),
            State::Expired => (
                Level::Error,
                format!(
                    "{file}: the certificate expired on {}, {} ago: still served, but clients \
                     that check it refuse it: renew it and send SIGHUP",
                    rfc3339(not_after),
                    days(now - not_after)
                ),
            ),
            State::NotYetValid => (
                Level::Error,
                format!(
                    "{file}: the certificate is not valid before {}, in {}: still served, but \
                     clients that check it refuse it until then: check this machine's clock, \
                     or serve a certificate valid now and send SIGHUP",
                    rfc3339(not_before),
                    days(not_before - now)
                ),
            ),
        }
    }
}

fn log(line: Option<(Level, String)>) {
    match line {
        Some((Level::Info, line)) => tracing::info!("{line}"),
        Some((Level::Warn, line)) => tracing::warn!("{line}"),
        Some((Level::Error, line)) => tracing::error!("{line}"),
        None => {}
    }
}

fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Whole days in `secs`, as a person says them.
fn days(secs: i64) -> String {
    match secs / DAY {
        0 => "less than a day".to_owned(),
        1 => "1 day".to_owned(),
        n => format!("{n} days"),
    }
}

/// `secs` as RFC 3339 in UTC (`2026-12-10T00:00:00Z`). X.509 dates are years 0 to 9999, which
/// the formatter of the standard library's neighbours (humantime) does not all take.
fn rfc3339(secs: i64) -> String {
    match x509_parser::time::ASN1Time::from_timestamp(secs) {
        Ok(time) => {
            let t = time.to_datetime();
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        }
        Err(_) => format!("{secs} (unix time)"),
    }
}

/// A real certificate (self-signed, P-256, X.509 v1 as `openssl ca` writes it), valid from
/// 2026-01-01T00:00:00Z to 2026-12-10T00:00:00Z: for tests, and the seed of the fuzz target.
#[cfg(test)]
pub(crate) const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBEDCBtgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwHhcN
MjYwMTAxMDAwMDAwWhcNMjYxMjEwMDAwMDAwWjAUMRIwEAYDVQQDDAlsb2NhbGhv
c3QwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASw3iiAvMGL4FjkPUl2bAbINN9Z
XYhtKs5PmkqfobuZO2XWarXj+hDQHIJJpoYp76kTe0QSz0EJ9nd8DfncqXQFMAoG
CCqGSM49BAMCA0kAMEYCIQCZN0aV7h8Yg2n5sGlHvtmvnUuOW6WDKNGy61ZiQwAX
yAIhALzQto1S/+ww1GMMxOYIGvUvMWjLdxnHdSio28o7F2Ry
-----END CERTIFICATE-----
";

/// `der` as a PEM certificate: for tests that wrap bytes of their own.
#[cfg(test)]
pub(crate) fn pem_of(der: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for (i, chunk) in der.chunks(3).enumerate() {
        if i > 0 && i % 16 == 0 {
            out.push(b'\n');
        }
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for j in 0..4 {
            out.push(if j <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * j) & 63) as usize]
            } else {
                b'='
            });
        }
    }
    out.extend_from_slice(b"\n-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-10T00:00:00Z
    const END: i64 = 1_796_860_800;

    fn expiry(not_before: i64, not_after: i64) -> Expiry {
        Expiry {
            cert_path: "/etc/app/cert.pem".to_owned(),
            validity: Validity {
                not_before,
                not_after,
            },
            next_look: i64::MIN,
        }
    }

    #[test]
    fn dates_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(END), "2026-12-10T00:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // Before the epoch (UTCTime reaches back to 1950) and the end of GeneralizedTime.
        assert_eq!(rfc3339(-631_152_000), "1950-01-01T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn a_year_long_certificate_warns_from_30_days_before_its_end() {
        let mut e = expiry(END - 365 * DAY, END);
        let (level, line) = e.look_at(END - 12 * DAY, true).unwrap();
        assert_eq!(level, Level::Warn);
        assert_eq!(
            line,
            "--tls.cert /etc/app/cert.pem: the certificate expires on 2026-12-10T00:00:00Z, \
             in 12 days: renew it and send SIGHUP"
        );
        let (level, line) = e.look_at(END - 40 * DAY, true).unwrap();
        assert_eq!(level, Level::Info);
        assert!(
            line.ends_with("expires on 2026-12-10T00:00:00Z, in 40 days"),
            "{line}"
        );
    }

    #[test]
    fn a_certificate_loaded_40_days_before_its_end_warns_when_30_are_left() {
        let mut e = expiry(END - 365 * DAY, END);
        let loaded = END - 40 * DAY;
        assert_eq!(e.look_at(loaded, true).unwrap().0, Level::Info);
        // Quiet between looks, and at the daily looks while it is valid.
        let mut now = loaded;
        while now < END - 30 * DAY {
            assert_eq!(e.look_at(now, false), None, "at {now}");
            now += 600;
        }
        // Exactly when 30 days are left, however the looks fell.
        let (level, line) = e.look_at(END - 30 * DAY, false).unwrap();
        assert_eq!(level, Level::Warn);
        assert!(line.contains("in 30 days: renew it"), "{line}");
        // Then once a day, not at every tick.
        assert_eq!(e.look_at(END - 30 * DAY + 600, false), None);
        let (_, line) = e.look_at(END - 29 * DAY, false).unwrap();
        assert!(line.contains("in 29 days"), "{line}");
        // And at the expiry itself, an error.
        let (level, line) = e.look_at(END, false).unwrap();
        assert_eq!(level, Level::Error);
        assert!(
            line.contains("expired on 2026-12-10T00:00:00Z, less than a day ago: still served"),
            "{line}"
        );
        let (_, line) = e.look_at(END + 3 * DAY, false).unwrap();
        assert!(line.contains("3 days ago"), "{line}");
    }

    #[test]
    fn a_short_lived_certificate_warns_when_a_third_of_it_is_left() {
        // Six days long: due for renewal with two days left, not for its whole life.
        let mut e = expiry(END - 6 * DAY, END);
        assert_eq!(e.look_at(END - 5 * DAY, true).unwrap().0, Level::Info);
        assert_eq!(e.look_at(END - 2 * DAY - 1, false), None);
        let (level, line) = e.look_at(END - 2 * DAY, false).unwrap();
        assert_eq!(level, Level::Warn);
        assert!(line.contains("in 2 days"), "{line}");
    }

    #[test]
    fn not_yet_valid_and_expired_are_errors_naming_the_file() {
        let mut e = expiry(END, END + 90 * DAY);
        let (level, line) = e.look_at(END - DAY - 5, true).unwrap();
        assert_eq!(level, Level::Error);
        assert!(
            line.starts_with(
                "--tls.cert /etc/app/cert.pem: the certificate is not valid before \
                 2026-12-10T00:00:00Z, in 1 day: still served"
            ),
            "{line}"
        );
        // Once valid, the daily look is quiet.
        assert_eq!(e.look_at(END, false), None);

        let mut e = expiry(END - 90 * DAY, END);
        let (level, line) = e.look_at(END + 10 * DAY, true).unwrap();
        assert_eq!(level, Level::Error);
        assert!(
            line.contains("expired on 2026-12-10T00:00:00Z, 10 days ago"),
            "{line}"
        );
        // A certificate whose end comes before its start is never valid, and no panic.
        let mut e = expiry(END, END - DAY);
        assert_eq!(e.look_at(END - 2 * DAY, true).unwrap().0, Level::Error);
        assert_eq!(e.look_at(END + 2 * DAY, true).unwrap().0, Level::Error);
    }

    #[test]
    fn a_clock_set_back_does_not_postpone_the_next_look() {
        let mut e = expiry(END - 365 * DAY, END);
        assert_eq!(e.look_at(END - 10 * DAY, true).unwrap().0, Level::Warn);
        // The clock goes back 100 days: the look comes now, not in 100 days and a day.
        assert_eq!(e.look_at(END - 110 * DAY, false), None);
        assert_eq!(e.next_look, END - 109 * DAY);
    }

    #[test]
    fn garbage_is_a_clear_error_naming_the_file() {
        let garbage = |cert: &[u8]| cert.to_vec();
        let e = Validity::of(&garbage(b"not a certificate"), "c.pem").unwrap_err();
        assert!(
            e.starts_with("--tls.cert c.pem: no certificate in it"),
            "{e}"
        );
        let e = Validity::of(
            &garbage(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n"),
            "c.pem",
        )
        .unwrap_err();
        assert!(
            e.starts_with("--tls.cert c.pem: not a PEM certificate chain"),
            "{e}"
        );
        // Well-formed PEM around bytes that are not a certificate.
        let e = Validity::of(
            &garbage(b"-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n"),
            "c.pem",
        )
        .unwrap_err();
        assert!(
            e.starts_with("--tls.cert c.pem: the first certificate is not X.509"),
            "{e}"
        );
        // A DER SEQUENCE claiming more than it holds, and one holding nothing.
        for der in [&b"\x30\x84\xff\xff\xff\xff"[..], b"\x30\x00"] {
            let e = Validity::of(&garbage(&pem_of(der)), "c.pem").unwrap_err();
            assert!(e.starts_with("--tls.cert c.pem: "), "{e}");
        }
    }

    #[test]
    fn a_certificate_reads_as_its_dates_and_the_chain_as_its_first() {
        let expected = Validity {
            not_before: 1_767_225_600,
            not_after: END,
        };
        assert_eq!(Validity::of(TEST_CERT.as_bytes(), "c.pem"), Ok(expected));
        assert_eq!(rfc3339(expected.not_before), "2026-01-01T00:00:00Z");
        // The leaf first, then anything: only the leaf counts.
        let chain = format!(
            "{TEST_CERT}{}",
            String::from_utf8(pem_of(b"\0\0\0")).unwrap()
        );
        assert_eq!(Validity::of(chain.as_bytes(), "c.pem"), Ok(expected));
        // The same bytes wrapped again read the same.
        let der = CertificateDer::from_pem_slice(TEST_CERT.as_bytes()).unwrap();
        assert_eq!(Validity::of(&pem_of(&der), "c.pem"), Ok(expected));
    }
}
