//! A strict JSON tree for untrusted bodies: duplicate keys rejected (never last-one-wins), string
//! lengths and nesting bounded, numbers only where an `f64` can hold them, no trailing data.
//!
//! serde_json does the tokenizing; a seeded visitor builds the tree and enforces the rules.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::limits::Limits;

/// A parsed JSON value, borrowing strings from the body where it can (no escapes).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(f64),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Members in document order; keys are unique (checked while parsing).
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// The member `key` of an object.
    pub(crate) fn get(members: &'a [(Cow<'a, str>, Json<'a>)], key: &str) -> Option<&'a Json<'a>> {
        members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

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
#[allow(clippy::exhaustive_structs)] // a message, nothing more
pub struct JsonError(pub String);

/// Checks that `body` is one strict JSON document under `limits` (duplicate keys, depth, string
/// lengths, numbers, trailing data), for other intakes that parse it with serde afterwards (the
/// status service's API).
pub fn check_strict_json(body: &[u8], limits: &Limits) -> Result<(), JsonError> {
    parse(body, limits).map(|_| ())
}

/// Parses `body` under `limits`.
pub(crate) fn parse<'a>(body: &'a [u8], limits: &Limits) -> Result<Json<'a>, JsonError> {
    if body.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(JsonError(
            "the body starts with a byte order mark; send plain UTF-8 JSON".into(),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    // Depth is enforced by the visitor as it descends (every value goes through it, so nothing
    // nests unchecked), well before serde_json's own recursion limit of 128.
    let value = Seed { limits, depth: 0 }
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
    /// Containers open around the value being read.
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Seed<'_> {
    /// The seed for a container's members, refusing to go past the depth limit.
    fn deeper<E: serde::de::Error>(self) -> Result<Self, E> {
        if self.depth >= self.limits.max_depth {
            return Err(E::custom(format!(
                "JSON nested deeper than {} levels",
                self.limits.max_depth
            )));
        }
        Ok(Self {
            depth: self.depth + 1,
            ..self
        })
    }

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
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(value))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(value as f64))
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(value as f64))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Json<'de>, E> {
        if !value.is_finite() {
            return Err(E::custom("a number too large for a 64-bit float"));
        }
        Ok(Json::Number(value))
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, value: &'de str) -> Result<Json<'de>, E> {
        self.check_len(value)?;
        Ok(Json::String(Cow::Borrowed(value)))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Json<'de>, E> {
        self.check_len(value)?;
        Ok(Json::String(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Json<'de>, E> {
        self.check_len(&value)?;
        Ok(Json::String(Cow::Owned(value)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let inner = self.deeper::<A::Error>()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let inner = self.deeper::<A::Error>()?;
        let mut members: Vec<(Cow<'de, str>, Json<'de>)> = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            self.check_len::<A::Error>(&key)?;
            // Small objects (every documented payload): a linear check is cheapest.
            if members.len() < 32 && members.iter().any(|(k, _)| *k == key) {
                return Err(duplicate::<A::Error>(&key));
            }
            let value = map.next_value_seed(inner)?;
            members.push((key, value));
        }
        if members.len() > 32 {
            let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
            keys.sort_unstable();
            if let Some(pair) = keys.windows(2).find(|pair| pair.first() == pair.get(1)) {
                return Err(duplicate::<A::Error>(
                    pair.first().copied().unwrap_or_default(),
                ));
            }
        }
        Ok(Json::Object(members))
    }
}

fn duplicate<E: serde::de::Error>(key: &str) -> E {
    let shown: String = key.chars().take(64).collect();
    E::custom(format!("duplicate key {shown:?}"))
}

/// Reads an object key, borrowing it when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, value: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(value.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_default(text: &str) -> Result<Json<'_>, JsonError> {
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
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\": 1")).collect();
        assert!(parse_default(&format!("{{{}}}", many.join(","))).is_ok());
        let mut dup = many.clone();
        dup.push("\"k3\": 2".into());
        assert!(parse_default(&format!("{{{}}}", dup.join(",")))
            .unwrap_err()
            .0
            .contains("duplicate key \"k3\""));
        let limits = Limits {
            max_string: 4,
            ..Limits::default()
        };
        assert!(parse(br#"{"abcde": 1}"#, &limits).is_err());
        assert!(parse(br#"{"a": "abcde"}"#, &limits).is_err());
        assert!(parse(br#"{"a": "abcd"}"#, &limits).is_ok());
    }
}
