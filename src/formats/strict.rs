//! JSON a client sent, read the one way every check and every upstream sees it.
//!
//! Two things serde_json's own readers do that a gateway must not:
//! - `Value`'s deserializer (with the `raw_value` feature, which [`super::as_sent`] needs)
//!   reads an object whose first key is serde_json's private raw-value token as the JSON text
//!   of its value: `{"$serde_json::private::RawValue": "null"}` became `null`, so a check of
//!   the platform's key saw no `web_search_options` where the provider got an object. Here that
//!   key is a key like any other.
//! - Skipping a value (`IgnoredAny`, `RawValue`) checks only its syntax: a lone surrogate
//!   (`"\ud800"`), a number beyond `f64` (`1e400`) or nesting past 128 levels passed, which a
//!   whole parse refuses. [`check`] refuses them too without building anything, so a member a
//!   pass-through forwards unparsed is held to what a parse of it would be.

use std::fmt;

use serde::de::{self, Deserialize, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses a value a client sent.
pub fn value(raw: &[u8]) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let value = ClientValue.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Whether [`value`] would read `raw`, without building it.
pub fn check(raw: &[u8]) -> serde_json::Result<()> {
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    Checked::deserialize(&mut deserializer)?;
    deserializer.end()
}

/// The seed that builds a [`Value`] as serde_json's does, every key an ordinary key.
#[derive(Clone, Copy)]
pub struct ClientValue;

impl<'de> DeserializeSeed<'de> for ClientValue {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ClientValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ClientValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value_seed(ClientValue)?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

/// A value read as [`ClientValue`] reads it, and dropped as it is read.
pub(super) struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_value_token_is_a_key_like_any_other() {
        for raw in [
            r#"{"$serde_json::private::RawValue": "null"}"#,
            r#"{"\u0024serde_json::private::RawValue": "null", "x": 1}"#,
        ] {
            let read = value(raw.as_bytes()).unwrap();
            assert_eq!(read["$serde_json::private::RawValue"], "null", "{raw}");
        }
        assert_eq!(
            serde_json::from_str::<Value>(r#"{"$serde_json::private::RawValue": "null"}"#).unwrap(),
            Value::Null,
            "serde_json still reads the token so (else this module is not needed)"
        );
    }

    #[test]
    fn everything_else_is_read_as_serde_json_reads_it() {
        for raw in [
            r#"{"a": [1, -2, 3.5, 1e3, 18446744073709551615, -9223372036854775808, true, null, "x\u00e9\n"], "b": {}, "a": "last"}"#,
            r#"[[[]], {"k": {"k": []}}, "", 0.0, -0]"#,
        ] {
            assert_eq!(
                value(raw.as_bytes()).unwrap(),
                serde_json::from_str::<Value>(raw).unwrap()
            );
            check(raw.as_bytes()).unwrap();
        }
    }

    #[test]
    fn what_a_parse_refuses_the_check_refuses() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for raw in [
            r#"["\ud800"]"#,
            r#"{"\udc00": 1}"#,
            "[1e400]",
            deep.as_str(),
            "[1,]",
            r#"{"a" 1}"#,
            "[\"\u{1}\"]",
            "[] []",
        ] {
            assert!(serde_json::from_str::<Value>(raw).is_err(), "{raw}");
            assert!(value(raw.as_bytes()).is_err(), "{raw}");
            assert!(check(raw.as_bytes()).is_err(), "{raw}");
            // What skipping lets through.
            if raw.starts_with("[\"\\ud8") || raw == "[1e400]" || raw == deep {
                assert!(
                    serde_json::from_str::<serde::de::IgnoredAny>(raw).is_ok(),
                    "{raw}"
                );
            }
        }
    }
}
