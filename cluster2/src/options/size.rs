//! Sizes in the options, as people write them (`512MiB`, `4GiB`): serde adapters over the
//! schema's one grammar, written back in the largest unit that keeps them whole.

use cluster2_options_schema::{format_size, parse_size};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

pub(crate) fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_size(*value))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_size(&text).map_err(de::Error::custom)
}

/// `Option<u64>` where `None` is unset (`none`).
pub(crate) mod or_none {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<u64>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.map(format_size).serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u64>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| parse_size(&text).map_err(de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sizes {
        #[serde(with = "super")]
        memory: u64,
    }

    #[test]
    fn round_trip_in_text_and_on_the_wire() {
        let value = Sizes { memory: 3 << 29 };
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(json, r#"{"memory":"1536MiB"}"#);
        assert_eq!(serde_json::from_str::<Sizes>(&json).unwrap(), value);
        let bytes = postcard::to_stdvec(&value).unwrap();
        assert_eq!(postcard::from_bytes::<Sizes>(&bytes).unwrap(), value);
        assert!(serde_json::from_str::<Sizes>(r#"{"memory":"lots"}"#).is_err());
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Optional {
        #[serde(with = "super::or_none")]
        memory: Option<u64>,
    }

    #[test]
    fn an_unset_size_is_null_in_text_and_none_on_the_wire() {
        for value in [
            Optional { memory: None },
            Optional {
                memory: Some(512 << 20),
            },
        ] {
            let json = serde_json::to_string(&value).unwrap();
            assert_eq!(serde_json::from_str::<Optional>(&json).unwrap(), value);
            let bytes = postcard::to_stdvec(&value).unwrap();
            assert_eq!(postcard::from_bytes::<Optional>(&bytes).unwrap(), value);
        }
        assert_eq!(
            serde_json::to_string(&Optional {
                memory: Some(512 << 20)
            })
            .unwrap(),
            r#"{"memory":"512MiB"}"#
        );
        assert_eq!(
            serde_json::to_string(&Optional { memory: None }).unwrap(),
            r#"{"memory":null}"#
        );
    }
}
