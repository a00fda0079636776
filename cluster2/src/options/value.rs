//! One option's value against its schema entry: text from the command line or the environment
//! read as the option's kind wants it, and every value, typed or not, checked against the kind
//! and its range, so that serde only ever sees values it accepts.

use cluster2_options_schema::{DurationError, Invalid, SizeError, Spec, Takes};
use serde_json::Value;

/// Reads text the way its option wants it; anything unreadable stays text, so that [`check`]
/// reports it with the option's name and what is valid.
pub(crate) fn coerce(text: &str, spec: &Spec) -> Value {
    let trimmed = text.trim();
    if spec.optional && (trimmed.is_empty() || trimmed.eq_ignore_ascii_case("none")) {
        return Value::Null;
    }
    match spec.kind.takes() {
        Takes::Bool => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Value::Bool(true),
            "false" | "no" | "off" | "0" => Value::Bool(false),
            _ => Value::String(text.to_owned()),
        },
        Takes::Int => {
            if let Ok(n) = trimmed.parse::<u64>() {
                Value::from(n)
            } else if let Ok(n) = trimmed.parse::<i64>() {
                Value::from(n)
            } else {
                Value::String(text.to_owned())
            }
        }
        Takes::Text => Value::String(text.to_owned()),
    }
}

/// Checks a value (after [`coerce`], or as a config file typed it) against its option.
pub(crate) fn check(spec: &Spec, value: &Value) -> Result<(), Invalid> {
    match (value, spec.kind.takes()) {
        (Value::Null, _) if spec.optional => Ok(()),
        (Value::Bool(_), Takes::Bool) => Ok(()),
        (Value::Number(n), Takes::Int) => {
            let n = n
                .as_u64()
                .map(i128::from)
                .or_else(|| n.as_i64().map(i128::from));
            // `None`: a fraction, like `workers = 2.5` in a config file.
            n.map_or(Err(Invalid::Type), |n| spec.kind.check_int(n))
        }
        (Value::String(text), Takes::Text) => spec.kind.check_text(text),
        _ => Err(Invalid::Type),
    }
}

/// What follows "expected …" when the reason is more precise than the option's `expected`.
pub(crate) fn detail(invalid: &Invalid) -> Option<String> {
    match invalid {
        Invalid::LogFilter(e) => Some(e.to_string()),
        Invalid::Buckets(e) => Some(e.to_string()),
        Invalid::Duration(e @ (DurationError::NoUnit(_) | DurationError::UnknownUnit(_))) => {
            Some(e.to_string())
        }
        Invalid::Size(e @ (SizeError::UnknownUnit(_) | SizeError::Fraction)) => Some(e.to_string()),
        _ => None,
    }
}

/// A typed value as a user would name it: `the string "9400"`, `the number 2.5`.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a table".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster2_options_schema::spec;
    use serde_json::json;

    fn checked(key: &str, text: &str) -> Result<Value, Invalid> {
        let spec = spec(key).unwrap();
        let value = coerce(text, spec);
        check(spec, &value).map(|()| value)
    }

    #[test]
    fn text_is_typed_by_kind() {
        assert_eq!(checked("port", " 8080 "), Ok(json!(8080)));
        assert_eq!(checked("port", "-1"), Err(Invalid::TooSmall));
        assert_eq!(checked("port", "eighty"), Err(Invalid::Type));
        assert_eq!(checked("cache.enable", "off"), Ok(json!(false)));
        assert_eq!(checked("warm_up_port", "none"), Ok(Value::Null));
        assert_eq!(checked("workers", "none"), Err(Invalid::Type));
        // Text options keep their text as given, spaces included.
        assert_eq!(checked("ecv.up_body", " up "), Ok(json!(" up ")));
    }

    #[test]
    fn typed_values_must_have_the_right_type() {
        let port = spec("port").unwrap();
        assert_eq!(check(port, &json!("9400")), Err(Invalid::Type));
        assert_eq!(check(port, &json!(9400.5)), Err(Invalid::Type));
        assert_eq!(describe(&json!("9400")), "the string \"9400\"");
        assert_eq!(describe(&json!(2.5)), "the number 2.5");
        assert_eq!(describe(&json!(["a"])), "a list");
    }
}
