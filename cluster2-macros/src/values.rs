//! One option's literal against the shared schema, with the attribute's own messages: each
//! names the key, says what is valid, and shows how to write it.
//!
//! Whether a value is valid is the schema's call ([`Kind::check_int`], [`Kind::check_text`]),
//! the same the runtime makes at start-up; only the wording is decided here.

use proc_macro2::Span;
use syn::{Expr, Lit, LitInt, UnOp};

use crate::schema::{self, Invalid, Kind, Takes};
use cluster2_options_schema::DurationError;

/// A literal, or a negated one (which syn parses as an expression).
enum Literal<'a> {
    Plain(&'a Lit),
    Negative,
}

/// The literal `value` is, if it is a plain one.
pub(crate) fn literal(value: &Expr) -> Option<Lit> {
    match classify(value)? {
        Literal::Plain(lit) => Some(lit.clone()),
        Literal::Negative => None,
    }
}

fn classify(value: &Expr) -> Option<Literal<'_>> {
    match value {
        Expr::Lit(lit) => Some(Literal::Plain(&lit.lit)),
        // What a `macro_rules!` `$value:expr` fragment arrives as.
        Expr::Group(group) => classify(&group.expr),
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => match &*unary.expr {
            Expr::Lit(lit) if matches!(lit.lit, Lit::Int(_) | Lit::Float(_)) => {
                Some(Literal::Negative)
            }
            _ => None,
        },
        _ => None,
    }
}

/// The literal to pass to the runtime for `key`, or why `value` is not valid for it.
pub(crate) fn check_value(key: &str, kind: Kind, value: &Expr) -> Result<Lit, String> {
    let example = schema::example(kind, key);
    let wrong_type = || format!("`{key}` expects {}: {example}", schema::describe(kind));
    let lit = match classify(value) {
        Some(Literal::Plain(lit)) => lit,
        Some(Literal::Negative) if kind.takes() == Takes::Int => {
            return Err(int_message(key, kind, &Invalid::TooSmall));
        }
        Some(Literal::Negative) => return Err(wrong_type()),
        None => {
            return Err(format!(
                "`{key}` takes a literal, not an expression: {example}"
            ));
        }
    };
    match (kind.takes(), lit) {
        (Takes::Int, Lit::Int(i)) => {
            // Past `u64`, it is past every range.
            let n = i
                .base10_parse::<u64>()
                .map_err(|_| int_message(key, kind, &Invalid::TooLarge))?;
            kind.check_int(i128::from(n))
                .map_err(|invalid| int_message(key, kind, &invalid))?;
            Ok(int(n, i.span()))
        }
        (Takes::Bool, Lit::Bool(_)) => Ok(lit.clone()),
        (Takes::Text, Lit::Str(s)) => {
            let text = s.value();
            kind.check_text(&text)
                .map_err(|invalid| text_message(key, kind, &text, &invalid))?;
            Ok(lit.clone())
        }
        // The most likely slips: a number or a boolean in quotes, and a duration without its
        // unit.
        (Takes::Int, Lit::Str(s)) if s.value().parse::<u64>().is_ok() => Err(format!(
            "`{key}` takes a number, not a string: write `{}`",
            schema::written(key, &s.value())
        )),
        (Takes::Bool, Lit::Str(s)) if matches!(s.value().as_str(), "true" | "false") => {
            Err(format!(
                "`{key}` takes `true` or `false`, not a string: write `{}`",
                schema::written(key, &s.value())
            ))
        }
        // A size in bytes written as a number: the same, as text (where it is in range).
        (_, Lit::Int(i)) if matches!(kind, Kind::Size { .. }) => {
            let digits = i.base10_digits();
            let text = if kind.check_text(digits).is_ok() {
                format!("\"{digits}\"")
            } else {
                schema::sample(kind)
            };
            Err(format!(
                "`{key}` takes a size in a string, like \"512MiB\": write `{}`",
                schema::written(key, &text)
            ))
        }
        (_, Lit::Int(i)) if matches!(kind, Kind::Duration { .. }) => {
            if kind.check_duration(std::time::Duration::ZERO).is_err() && i.base10_digits() == "0" {
                return Err(format!(
                    "`{key}` takes a string with a unit, and must be {}: write `{}`",
                    duration_bounds(kind),
                    schema::written(key, &schema::sample(kind))
                ));
            }
            // The first unit that puts the number in range: `spin = 50` means 50us.
            let digits = i.base10_digits();
            let with_unit = ["s", "ms", "us"]
                .map(|unit| format!("{digits}{unit}"))
                .into_iter()
                .find(|text| kind.check_text(text).is_ok())
                .map_or_else(|| schema::sample(kind), |text| format!("\"{text}\""));
            Err(format!(
                "`{key}` takes a string with a unit: write `{}`",
                schema::written(key, &with_unit)
            ))
        }
        _ => Err(wrong_type()),
    }
}

/// A number outside its option's range. Bounds that are only the limits of the runtime's
/// integer types are left out: "at least 1" says all a user needs.
fn int_message(key: &str, kind: Kind, invalid: &Invalid) -> String {
    let (min, max) = kind.int_range().expect("a kind that takes a number");
    match kind {
        Kind::Port { .. } => format!("`{key}` must be a port number from {min} to {max}"),
        Kind::HttpStatus => format!("`{key}` must be an HTTP status from {min} to {max}"),
        _ if !kind.max_is_type_limit() => format!("`{key}` must be from {min} to {max}"),
        _ if *invalid == Invalid::TooSmall => format!("`{key}` must be at least {min}"),
        _ => format!("`{key}` must be at most {max}"),
    }
}

/// Text that is not valid for its option.
fn text_message(key: &str, kind: Kind, text: &str, invalid: &Invalid) -> String {
    match (kind, invalid) {
        (Kind::Duration { never, .. }, Invalid::Duration(e)) => {
            let detail = match e {
                DurationError::Malformed => {
                    let or = if never { ", or \"never\"" } else { "" };
                    format!(
                        "must be a duration like \"500ms\", \"5s\" or \"1m 30s\"{or}, not `{text}`"
                    )
                }
                DurationError::NoUnit(n) => {
                    format!("needs a unit: write \"{n}s\", \"{n}ms\" or \"{n}m\"")
                }
                DurationError::UnknownUnit(unit) => {
                    format!("has an unknown unit `{unit}`: use us, ms, s, m, h or d")
                }
                DurationError::TooLong => "is longer than any duration the runtime holds".into(),
            };
            format!("`{key}` {detail}")
        }
        // The runtime rejects these too, at start-up.
        (Kind::Duration { .. }, Invalid::TooSmall | Invalid::TooLarge) => {
            format!("`{key}` must be {}", duration_bounds(kind))
        }
        (Kind::Size { .. }, Invalid::Size(e)) => {
            format!("`{key}` must be a size like \"512MiB\" or \"4GiB\": {e}")
        }
        (Kind::Size { min, max }, _) => format!(
            "`{key}` must be from {} to {}",
            schema::format_size(min),
            schema::format_size(max)
        ),
        (Kind::OneOf(choices), _) => {
            let choices: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
            format!("`{key}` must be one of {}", choices.join(", "))
        }
        (Kind::UrlPath { or_url }, _) => {
            let what = if or_url {
                "a path starting with / or an http:// URL"
            } else {
                "a path starting with /"
            };
            if text.contains("://") {
                format!("`{key}` must be {what}, not `{text}`")
            } else {
                format!("`{key}` must be {what}, like \"/{text}\"")
            }
        }
        (Kind::Host, _) => format!(
            "`{key}` must be an IP address or a host name, like \"0.0.0.0\", \"::1\" or \
             \"localhost\", not `{text}`"
        ),
        (Kind::LogFilter, Invalid::LogFilter(e)) => {
            format!("`{key}` must be a log filter like \"info\" or \"warn,my_app=debug\": {e}")
        }
        (Kind::Buckets, Invalid::Buckets(e)) => {
            format!("`{key}` must be bucket bounds in seconds like \"0.005,0.05,0.5\": {e}")
        }
        (Kind::LogDestination, _) => format!(
            "`{key}` must be \"off\", \"stdout\", \"stderr\" or a file path with a / in it, \
             like \"./access.log\", not `{text}`"
        ),
        (Kind::Directory, _) => {
            format!(
                "`{key}` must name a directory: {}",
                schema::example(kind, key)
            )
        }
        _ => format!(
            "`{key}` expects {}: {}",
            schema::describe(kind),
            schema::example(kind, key)
        ),
    }
}

/// The range of a duration kind, completing "must be …": `more than 0s and at most 1day`,
/// `from 10ms to 1h`.
fn duration_bounds(kind: Kind) -> String {
    let (min, max) = kind.duration_range().expect("a duration kind");
    let max = schema::format_duration(max);
    if min == schema::MORE_THAN_ZERO {
        format!("more than 0s and at most {max}")
    } else {
        format!("from {} to {max}", schema::format_duration(min))
    }
}

/// A suffixed literal, so that the generated `.option(key, 8080i64)` needs neither inference
/// nor a cast (a cast trips `trivial_numeric_casts` in crates that deny it).
fn int(value: u64, span: Span) -> Lit {
    Lit::Int(LitInt::new(&format!("{value}i64"), span))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::ToTokens;

    fn check(key: &str, value: Expr) -> Result<String, String> {
        let kind = schema::kind(key).expect("a known key");
        check_value(key, kind, &value).map(|lit| lit.to_token_stream().to_string())
    }

    fn check_str(key: &str, text: &str) -> Result<String, String> {
        check(key, syn::parse_str(text).unwrap())
    }

    #[test]
    fn values_the_runtime_rejects_are_rejected() {
        use syn::parse_quote as q;
        assert_eq!(check("max_age", q!("never")).as_deref(), Ok("\"never\""));
        assert_eq!(check("max_age", q!("3d")).as_deref(), Ok("\"3d\""));
        assert!(
            check("max_age", q!("forever"))
                .unwrap_err()
                .contains("or \"never\"")
        );
        assert_eq!(check("stop_timeout", q!("0s")).as_deref(), Ok("\"0s\""));
        for (key, range) in [
            ("heartbeat_interval", "from 10ms to 1h"),
            ("startup_timeout", "more than 0s and at most 1day"),
            ("nanny.tolerance", "more than 0s and at most 1day"),
            ("death_queue.timeout", "more than 0s and at most 1day"),
            ("cache.timeout", "more than 0s and at most 1h"),
            ("restart.delay", "from 10ms to 1h"),
        ] {
            let err = check(key, q!("0ms")).unwrap_err();
            assert_eq!(err, format!("`{key}` must be {range}"));
            assert!(check(key, q!(0)).unwrap_err().contains(range));
        }
        // Every duration has a top.
        assert_eq!(
            check("stop_timeout", q!("8d")).unwrap_err(),
            "`stop_timeout` must be from 0s to 7days"
        );
        assert!(
            check("workers", q!(100000))
                .unwrap_err()
                .contains("from 1 to 1024")
        );
        assert!(
            check("threads", q!(100000))
                .unwrap_err()
                .contains("from 0 to 1024")
        );
        assert_eq!(check("ecv.expect_status", q!(204)).as_deref(), Ok("204i64"));
        for bad in [q!(99), q!(600), q!(-1)] {
            assert!(
                check("ecv.expect_status", bad)
                    .unwrap_err()
                    .contains("100 to 599")
            );
        }
        assert_eq!(check("death_queue.retries", q!(1)).as_deref(), Ok("1i64"));
        assert!(
            check("death_queue.retries", q!(0))
                .unwrap_err()
                .contains("from 1 to 100")
        );
        assert!(check("death_queue.retries", q!(101)).is_err());
        assert!(check("cache.max_value", q!(1073741825)).is_err());
        assert!(
            check("ecv.root", q!("health"))
                .unwrap_err()
                .contains("\"/health\"")
        );
        assert!(check("ecv.monitor", q!("http://10.0.0.1/ping")).is_ok());
        assert!(check("ecv.monitor", q!("https://example.com")).is_err());
        assert!(check("pids", q!("")).is_err());
        assert!(check("cache.persist_path", q!("")).is_err());
        assert_eq!(check("nanny.enable", q!(false)).as_deref(), Ok("false"));
        assert!(
            check("nanny.enable", q!("false"))
                .unwrap_err()
                .contains("not a string")
        );
        assert!(check("cache.mode", q!("master")).is_ok());
        assert!(check("ecv.mode", q!("probe")).is_err());
        assert_eq!(
            check("warm_up_port", q!(0)).as_deref().map_err(|e| &e[..]),
            Err("`warm_up_port` must be a port number from 1 to 65535")
        );
        assert_eq!(
            check("cache.spin", q!("5ms")).unwrap_err(),
            "`cache.spin` must be from 0s to 1ms"
        );
        assert_eq!(
            check("cache.spin", q!(50)).unwrap_err(),
            "`cache.spin` takes a string with a unit: write `cache(spin = \"50us\")`"
        );
        assert_eq!(
            check("stop_timeout", q!(30)).unwrap_err(),
            "`stop_timeout` takes a string with a unit: write `stop_timeout = \"30s\"`"
        );
        assert_eq!(
            check("log.level", q!("infoo")).unwrap_err(),
            "`log.level` must be a log filter like \"info\" or \"warn,my_app=debug\": \
             `infoo` is not a level; did you mean `info`?"
        );
    }

    /// Every range in the schema, at and just past its bounds, as the runtime's own test
    /// checks it at start-up.
    #[test]
    fn ranges_are_the_schemas() {
        for spec in schema::OPTIONS {
            if let Some((min, max)) = spec.kind.int_range() {
                for ok in [min, max] {
                    assert_eq!(
                        check_str(spec.key, &ok.to_string()),
                        Ok(format!("{ok}i64")),
                        "{}",
                        spec.key
                    );
                }
                let below = i128::from(min) - 1;
                let above = i128::from(max) + 1;
                for bad in [below, above] {
                    assert!(
                        check_str(spec.key, &bad.to_string()).is_err(),
                        "{}",
                        spec.key
                    );
                }
            }
            if let Some((min, max)) = spec.kind.duration_range() {
                let quoted = |d| format!("\"{}\"", schema::format_duration(d));
                assert!(check_str(spec.key, &quoted(min)).is_ok(), "{}", spec.key);
                assert!(check_str(spec.key, &quoted(max)).is_ok(), "{}", spec.key);
                let past = max + std::time::Duration::from_nanos(1);
                assert!(check_str(spec.key, &quoted(past)).is_err(), "{}", spec.key);
                if !min.is_zero() {
                    let below = min - std::time::Duration::from_nanos(1);
                    assert!(check_str(spec.key, &quoted(below)).is_err(), "{}", spec.key);
                    assert!(check_str(spec.key, "\"0s\"").is_err(), "{}", spec.key);
                }
            }
        }
    }
}
