//! A strict JSON tree for untrusted bodies: duplicate keys rejected (never last-one-wins), string
//! lengths and nesting bounded, numbers only where an `f64` can hold them, no trailing data.
//!
//! serde_json does the tokenizing; a seeded visitor builds the tree and enforces the rules.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

use crate::limits::Limits;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(BTreeMap<String, Json>),
}

impl Json {
    /// The JSON type's name, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Number(_) => "a number",
            Self::String(_) => "a string",
            Self::Array(_) => "an array",
            Self::Object(_) => "an object",
        }
    }
}

/// Why a body is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

/// Parses `body` under `limits`.
pub(crate) fn parse(body: &[u8], limits: &Limits) -> Result<Json, JsonError> {
    if body.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(JsonError(
            "the body starts with a byte order mark; send plain UTF-8 JSON".into(),
        ));
    }
    let depth = bankconnect_core::json_guard::nesting_depth(body, limits.max_depth);
    if depth > limits.max_depth {
        return Err(JsonError(format!(
            "JSON nested deeper than {} levels",
            limits.max_depth
        )));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = Seed { limits }
        .deserialize(&mut deserializer)
        .map_err(|err| JsonError(err.to_string()))?;
    deserializer
        .end()
        .map_err(|err| JsonError(format!("trailing data after the JSON value: {err}")))?;
    Ok(value)
}

#[derive(Clone, Copy)]
struct Seed<'a> {
    limits: &'a Limits,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Json;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Seed<'_> {
    fn check_len<E: serde::de::Error>(&self, text: &str) -> Result<(), E> {
        if text.len() > self.limits.max_string {
            return Err(E::custom(format!(
                "a string of {} bytes exceeds the limit of {}",
                text.len(),
                self.limits.max_string
            )));
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Json, E> {
        Ok(Json::Bool(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Json, E> {
        Ok(Json::Number(value as f64))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Json, E> {
        Ok(Json::Number(value as f64))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Json, E> {
        if !value.is_finite() {
            return Err(E::custom("a number too large for a 64-bit float"));
        }
        Ok(Json::Number(value))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Json, E> {
        self.check_len(value)?;
        Ok(Json::String(value.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Json, E> {
        self.check_len(&value)?;
        Ok(Json::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut object = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            self.check_len::<A::Error>(&key)?;
            if object.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(A::Error::custom(format!("duplicate key {shown:?}")));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Json::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_default(text: &str) -> Result<Json, JsonError> {
        parse(text.as_bytes(), &Limits::default())
    }

    #[test]
    fn strictness() {
        assert!(parse_default(r#"{"a": 1, "b": [true, null, "x"]}"#).is_ok());
        let err = parse_default(r#"{"a": 1, "a": 2}"#).unwrap_err();
        assert!(err.0.contains("duplicate key \"a\""), "{err}");
        assert!(parse_default(r#"{"a": {"b": 1, "b": 1}}"#).is_err());
        assert!(parse_default(r#"{"a": 1} {"b": 2}"#).is_err());
        assert!(parse_default(r#"{"a": 1e400}"#).is_err());
        assert!(parse_default(r#"{"a": 123456789012345678901234567890}"#).is_ok());
        assert!(parse_default("\u{feff}{}").is_err());
        assert!(parse(b"{\"a\": \"\xff\"}", &Limits::default()).is_err());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_default(&deep)
            .unwrap_err()
            .0
            .contains("nested deeper"));
        let limits = Limits {
            max_string: 4,
            ..Limits::default()
        };
        assert!(parse(br#"{"abcde": 1}"#, &limits).is_err());
        assert!(parse(br#"{"a": "abcde"}"#, &limits).is_err());
        assert!(parse(br#"{"a": "abcd"}"#, &limits).is_ok());
    }
}
