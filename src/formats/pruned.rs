//! A member parsed only as deep as a check reads it.
//!
//! The checks made before a request goes out on the platform's shared key look at a few fields
//! deep inside members that are most of a real request's bytes: the `type` of each tool (a
//! tool's JSON Schema is most of it), the kind of each content part of each message. Building
//! those members whole to read a word of each was most of a pass-through's time with a coding
//! agent's request (tens of KB of history and schemas). A [`Keep`] names the paths a check
//! reads; [`parse_kept`] builds only those and skips the rest as it scans, leaving a value in
//! which every path the check reads holds what the whole member holds, or nothing where the
//! whole member holds nothing a check could read there (a `null`, a scalar where items or
//! members were named: see [`Keep`]). A kept leaf is read as [`super::strict`] reads it, like the
//! rest of the body.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess};
use serde_json::{Map, Value};

use super::strict::Checked;

/// What of a value is kept. A `Keep` may hold itself (parts within parts, as a `static`):
/// equality stops where both sides are the same `Keep`, and `Debug` shows one level.
#[derive(Eq)]
pub enum Keep {
    /// All of it.
    Whole,
    /// Each item of an array, kept as the inner `Keep` says. Anything but an array becomes
    /// `null` (a check that iterates items finds none either way).
    Items(&'static Keep),
    /// The named members of an object, each kept as its `Keep` says; the others are left
    /// out, and so is a named member kept `Items` or `Members` that came out `null` (a check
    /// reads into it, and finds nothing in a `null` or a missing member alike: a message whose
    /// content is text costs no map entry). Anything but an object becomes `null` (a check that
    /// looks a member up finds none either way).
    Members(&'static [(&'static str, Keep)]),
}

impl fmt::Debug for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::Whole => f.write_str("Whole"),
            Keep::Items(_) => f.write_str("Items(..)"),
            Keep::Members(members) => f
                .debug_list()
                .entries(members.iter().map(|(name, _)| name))
                .finish(),
        }
    }
}

impl PartialEq for Keep {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
            || match (self, other) {
                (Keep::Whole, Keep::Whole) => true,
                (Keep::Items(a), Keep::Items(b)) => a == b,
                (Keep::Members(a), Keep::Members(b)) => a == b,
                _ => false,
            }
    }
}

/// The `type` of each item of an array (a request's tools, as the shared key's checks read
/// them).
pub const TYPES_OF_ITEMS: Keep = Keep::Items(&Keep::Members(&[("type", Keep::Whole)]));

/// Parses a value keeping only what `keep` names.
pub fn parse_kept(raw: &[u8], keep: &Keep) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    let value = Kept(keep).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// The seed that parses one value as its `Keep` says; what it leaves out is checked as a parse
/// would check it ([`super::strict`]), and dropped.
pub(super) struct Kept<'k>(pub(super) &'k Keep);

impl<'de> DeserializeSeed<'de> for Kept<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        match self.0 {
            Keep::Whole => super::strict::ClientValue.deserialize(deserializer),
            keep => deserializer.deserialize_any(KeptVisitor(keep)),
        }
    }
}

/// Reads a member's name (unescaped, as any reader compares it) and finds it among those
/// kept, without keeping the name itself.
struct Wanted<'k>(&'k [(&'static str, Keep)]);

impl<'de, 'k> DeserializeSeed<'de> for Wanted<'k> {
    type Value = Option<&'k (&'static str, Keep)>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'k> de::Visitor<'de> for Wanted<'k> {
    type Value = Option<&'k (&'static str, Keep)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().find(|(wanted, _)| *wanted == name))
    }
}

/// Visits an array or an object that is pruned; anything else is `null`.
struct KeptVisitor<'k>(&'k Keep);

impl<'de> de::Visitor<'de> for KeptVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let Keep::Items(item) = self.0 else {
            while seq.next_element::<Checked>()?.is_some() {}
            return Ok(Value::Null);
        };
        let mut items = Vec::new();
        while let Some(kept) = seq.next_element_seed(Kept(item))? {
            items.push(kept);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Keep::Members(members) = self.0 else {
            while map.next_entry::<Checked, Checked>()?.is_some() {}
            return Ok(Value::Null);
        };
        let mut kept = Map::new();
        while let Some(wanted) = map.next_key_seed(Wanted(members))? {
            match wanted {
                Some((name, keep)) => {
                    let value = map.next_value_seed(Kept(keep))?;
                    // A name given twice: the last wins, as in a whole parse, even when it
                    // holds nothing a check reads.
                    if value.is_null() && *keep != Keep::Whole {
                        kept.remove(*name);
                    } else {
                        kept.insert((*name).to_owned(), value);
                    }
                }
                None => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_kept_paths_are_built_and_they_hold_what_the_whole_value_does() {
        let raw = br#"[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}},
            {"type":{"odd":1}}, "text", 3, null, [1], {"name":"untyped"}, {"type":"web_search"}]"#;
        assert_eq!(
            parse_kept(raw, &TYPES_OF_ITEMS).unwrap(),
            json!([{"type": "function"}, {"type": {"odd": 1}}, null, null, null, null, {}, {"type": "web_search"}])
        );
        // Not an array: nothing to iterate, as before.
        assert_eq!(
            parse_kept(br#"{"type":"x"}"#, &TYPES_OF_ITEMS).unwrap(),
            Value::Null
        );
        assert_eq!(
            parse_kept(br#""tools""#, &TYPES_OF_ITEMS).unwrap(),
            Value::Null
        );
        // A member kept for what is inside it, holding nothing of that, is left out; a name
        // given twice keeps the last, as a whole parse does.
        const CONTENT_TYPES: Keep = Keep::Items(&Keep::Members(&[("content", TYPES_OF_ITEMS)]));
        assert_eq!(
            parse_kept(
                br#"[{"role":"user","content":"text"}, {"content":[{"type":"file"}]},
                    {"content":[{"type":"file"}],"content":"text"},
                    {"content":"text","content":[{"type":"file"}]}, {"content":null}]"#,
                &CONTENT_TYPES
            )
            .unwrap(),
            json!([{}, {"content": [{"type": "file"}]}, {}, {"content": [{"type": "file"}]}, {}])
        );
        // A leaf kept whole stays, `null` or not.
        assert_eq!(
            parse_kept(br#"[{"type":null}]"#, &TYPES_OF_ITEMS).unwrap(),
            json!([{"type": null}])
        );
        // What is skipped is still read as strictly as a parse reads it.
        assert!(parse_kept(br#"[{"type":"f","x":[1,}]"#, &TYPES_OF_ITEMS).is_err());
        assert!(parse_kept(br#"[{"type":"f","x":"\ud800"}]"#, &TYPES_OF_ITEMS).is_err());
        assert!(parse_kept(br#"[{"type":"f"}, 1e400]"#, &TYPES_OF_ITEMS).is_err());
        assert!(parse_kept(br#"[{"\ud800":1}]"#, &TYPES_OF_ITEMS).is_err());
        assert!(parse_kept(br#"[{"type":"f"}] x"#, &TYPES_OF_ITEMS).is_err());
    }
}
