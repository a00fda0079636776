//! Sizes in the options, as people write them (`512MiB`, `4GiB`): serde adapters over the
//! schema's one grammar, written back in the largest unit that keeps them whole.

use cluster2_options_schema::{format_size, parse_size};
use serde::{Deserialize, Deserializer, Serializer, de};

pub(crate) fn serialize<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_size(*value))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_size(&text).map_err(de::Error::custom)
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
}
