//! Durations in the options, as people write them (`500ms`, `5s`, `3d`, `1h 30m`): serde
//! adapters over the schema's one grammar.

use std::time::Duration;

use cluster2_options_schema::{format_duration, is_never, parse_duration};
use serde::{Deserialize, Deserializer, Serializer, de};

pub(crate) fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*value))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(de::Error::custom)
}

/// `Option<Duration>` where `None` is written `never`.
pub(crate) mod or_never {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => super::serialize(d, serializer),
            None => serializer.serialize_str("never"),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if is_never(&text) {
            return Ok(None);
        }
        parse_duration(&text).map(Some).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
    struct Durations {
        #[serde(with = "super")]
        plain: Duration,
        #[serde(with = "super::or_never")]
        max_age: Option<Duration>,
    }

    #[test]
    fn round_trip_and_never() {
        let value = Durations {
            plain: Duration::from_micros(50),
            max_age: None,
        };
        let json = serde_json::to_value(&value).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"plain": "50us", "max_age": "never"})
        );
        assert_eq!(serde_json::from_value::<Durations>(json).unwrap(), value);
        let err =
            serde_json::from_value::<Durations>(serde_json::json!({"plain": "5", "max_age": "3d"}))
                .unwrap_err();
        assert!(err.to_string().contains("needs a unit"), "{err}");
    }
}
