//! Durations as humans write them: `500ms`, `5s`, `3d`, `1h 30m`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer, de};

pub(crate) fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_duration(*value))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(de::Error::custom)
}

pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    // A bare `0` is unambiguous; any other number needs a unit.
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 5s or 3d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_numbers_without_units() {
        assert!(parse("5").unwrap_err().contains("like 500ms"));
        assert!(parse("fast").is_err());
    }
}

/// `Option<Duration>` where `None` is written `never`.
pub(crate) mod or_never {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => serializer.collect_str(&humantime::format_duration(*d)),
            None => serializer.serialize_str("never"),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().eq_ignore_ascii_case("never") {
            return Ok(None);
        }
        super::parse(&text).map(Some).map_err(de::Error::custom)
    }
}
