//! A request body as the client sent it, and the one way the gateway writes a body again with a
//! few top-level members edited.
//!
//! A pass-through to an upstream of the client's own format must arrive as sent: the order of a
//! JSON schema's `properties` is the order a model writes a strict structured answer in, a
//! number written `1.0` or `1e3` stays so, an escape stays escaped, an unknown field survives.
//! So the body's top-level members are kept as byte ranges of what arrived, and the gateway
//! rewrites only the members it must (the model, output limits, the stream-usage request), each
//! in its own place; everything else is copied byte for byte.
//!
//! A body naming one member twice is refused: JSON parsers disagree on which copy wins (ours
//! keeps the last, others the first), so a duplicated `max_tokens` or `n` could make metering
//! read one value while the provider obeys the other. "Twice" is judged as the most lenient
//! upstream parser would: Go's `encoding/json` (Ollama, many OpenAI-compatible servers) matches
//! names case-insensitively, folding Unicode too (`K`, the Kelvin sign, is `k`), so two names
//! equal under ASCII case folding are refused, and so is any name outside ASCII (no API defines
//! one).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::pruned::Keep;

/// Why a body cannot be kept as sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SentBodyError {
    /// Not JSON, or not an object.
    #[error("the request body must be a JSON object")]
    NotAnObject,
    /// A top-level member named twice (letter case aside).
    #[error("the request body names the member `{0}` more than once")]
    Duplicate(String),
    /// A top-level member whose name is not ASCII.
    #[error("the request body has a member whose name is not ASCII: {0:?}")]
    NonAsciiName(String),
}

/// One top-level member: its name and where its value's bytes are in the body.
#[derive(Debug, Clone)]
struct Member {
    name: Box<str>,
    value: Range<usize>,
}

/// The client's body with the position of each top-level member, in the order sent.
#[derive(Debug, Clone)]
pub struct SentBody {
    bytes: Bytes,
    members: Vec<Member>,
    /// Members left unparsed, read as deep as a [`Keep`] says when the body was read (see
    /// [`Self::with_kept`]), each with the `Keep` it was read by.
    kept: Vec<(&'static str, &'static Keep, Value)>,
}

impl SentBody {
    /// Indexes the top-level members of a JSON object body, every value parsed.
    pub fn parse(bytes: Bytes) -> Result<Self, SentBodyError> {
        Self::read(bytes, &[], &[]).map(|(sent, _)| sent)
    }

    /// Reads a JSON object body in one pass: where each top-level member's value is, and each
    /// value parsed as [`super::strict::value`] parses it, but for the members `left_out`
    /// names, which are checked as strictly (as [`super::strict::check`] does) and stay as
    /// their bytes until [`Self::parse_into`] reads them: a pass-through's conversation and
    /// tools, most of a real request's bytes, which the gateway only forwards. Each member is
    /// read on its own, so it may nest 127 levels, one more than inside a whole-body parse. Those `kept` names are read as deep as their [`Keep`] says in
    /// the same pass (what a check of the platform's key reads of them: [`Self::with_kept`]).
    ///
    /// The object's own punctuation is read here; each name and value is read by serde_json,
    /// which says where it ended.
    pub fn read(
        bytes: Bytes,
        left_out: &[&str],
        kept: &'static [(&'static str, Keep)],
    ) -> Result<(Self, Map<String, Value>), SentBodyError> {
        let text: &[u8] = &bytes;
        let mut members = Vec::new();
        let mut parsed = Map::new();
        let mut kept_values = Vec::new();
        let mut at = after_whitespace(text, 0);
        if text.get(at) != Some(&b'{') {
            return Err(SentBodyError::NotAnObject);
        }
        at = after_whitespace(text, at + 1);
        if text.get(at) == Some(&b'}') {
            at += 1;
        } else {
            loop {
                let (name, end) = one(text, at, PhantomData::<String>)?;
                at = after_whitespace(text, end);
                if text.get(at) != Some(&b':') {
                    return Err(SentBodyError::NotAnObject);
                }
                let start = after_whitespace(text, at + 1);
                let end = if !left_out.contains(&name.as_str()) {
                    let (value, end) = one(text, start, super::strict::ClientValue)?;
                    parsed.insert(name.clone(), value);
                    end
                } else if let Some((kept_name, keep)) = kept.iter().find(|(n, _)| *n == name) {
                    let (value, end) = one(text, start, super::pruned::Kept(keep))?;
                    kept_values.push((*kept_name, keep, value));
                    end
                } else {
                    one(text, start, PhantomData::<super::strict::Checked>)?.1
                };
                members.push(Member {
                    name: name.into(),
                    value: start..end,
                });
                at = after_whitespace(text, end);
                match text.get(at) {
                    Some(b',') => at = after_whitespace(text, at + 1),
                    Some(b'}') => {
                        at += 1;
                        break;
                    }
                    _ => return Err(SentBodyError::NotAnObject),
                }
            }
        }
        if after_whitespace(text, at) != text.len() {
            return Err(SentBodyError::NotAnObject);
        }
        if let Some(member) = members.iter().find(|m| !m.name.is_ascii()) {
            let shown: String = member.name.chars().take(64).collect();
            return Err(SentBodyError::NonAsciiName(shown));
        }
        if let Some(duplicate) = first_duplicate(&members) {
            let shown: String = duplicate.chars().take(64).collect();
            return Err(SentBodyError::Duplicate(shown));
        }
        let sent = Self {
            bytes,
            members,
            kept: kept_values,
        };
        Ok((sent, parsed))
    }

    /// The body as it arrived.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The value of the top-level member `name` as it arrived (no whitespace around it).
    pub fn member(&self, name: &str) -> Option<&[u8]> {
        let member = self.members.iter().find(|m| &*m.name == name)?;
        Some(&self.bytes[member.value.clone()])
    }

    /// Parses the member `name` left out of `parsed` (see [`Self::read`]) and puts it where
    /// it was sent among the members `parsed` holds. Nothing to do when the body has no such
    /// member.
    pub fn parse_into(
        &self,
        parsed: &mut Map<String, Value>,
        name: &str,
    ) -> serde_json::Result<()> {
        let Some(at) = self.members.iter().position(|m| &*m.name == name) else {
            return Ok(());
        };
        let value = super::strict::value(&self.bytes[self.members[at].value.clone()])?;
        let before = self.members[..at]
            .iter()
            .filter(|m| parsed.contains_key(&*m.name))
            .count();
        parsed.shift_insert(before, name.to_owned(), value);
        Ok(())
    }

    /// `parsed` as a check that reads only the paths `reads` names sees the body: the members
    /// of `reads` still `left_out` added, each parsed only as deep as its [`Keep`] says (see
    /// [`super::pruned`]; read with the body when [`Self::read`] was given the same `Keep`,
    /// else now); `parsed` itself when none is.
    pub fn with_kept<'p>(
        &self,
        parsed: &'p Map<String, Value>,
        left_out: &[&str],
        reads: &'static [(&'static str, Keep)],
    ) -> serde_json::Result<Cow<'p, Map<String, Value>>> {
        let unread = |name: &&str| left_out.contains(name);
        if !reads.iter().any(|(name, _)| unread(name)) {
            return Ok(Cow::Borrowed(parsed));
        }
        let mut view = parsed.clone();
        for (name, keep) in reads.iter().filter(|(name, _)| unread(name)) {
            let read_already = self
                .kept
                .iter()
                .find(|(kept, by, _)| kept == name && *by == keep);
            let value = match (read_already, self.member(name)) {
                (Some((_, _, value)), _) => value.clone(),
                (None, Some(raw)) => super::pruned::parse_kept(raw, keep)?,
                (None, None) => continue,
            };
            view.insert((*name).to_owned(), value);
        }
        Ok(Cow::Owned(view))
    }

    /// A name given twice within the object the top-level member `name` holds (exactly: the
    /// parsers that read such members, Google's, match names exactly), if any. For a member
    /// holding output fields (`generationConfig`), where a duplicated limit could be read one
    /// way by metering and the other by the provider.
    pub fn duplicate_within(&self, name: &str) -> Option<String> {
        let member = self.members.iter().find(|m| &*m.name == name)?;
        let raw = &self.bytes[member.value.clone()];
        let names = serde_json::Deserializer::from_slice(raw)
            .deserialize_map(NamesVisitor)
            .ok()?;
        let mut seen = hashbrown::HashSet::with_capacity(names.len());
        let twice = names.iter().find(|name| !seen.insert(&**name))?;
        Some(twice.chars().take(64).collect())
    }

    /// Writes the body with the members named in `names` edited in place: `parsed` is the same
    /// body parsed, the named members present are taken from it, `edit` changes them (it may
    /// add, change or remove any of those names, and only those), and each kept member is
    /// written where it was, removed ones are left out, and added ones come last. Every other
    /// member is copied as its bytes arrived.
    pub fn write_edited(
        &self,
        parsed: &Map<String, Value>,
        names: &[&str],
        edit: impl FnOnce(&mut Map<String, Value>),
    ) -> Vec<u8> {
        let edited = edited_members(parsed, names, edit);
        let original = self.members.iter().map(|member| {
            let raw = &self.bytes[member.value.clone()];
            (&*member.name, Piece::Raw(raw))
        });
        write_in_place(original, names, edited, self.bytes.len() + 64)
    }
}

/// Writes a parsed body with the members named in `names` edited in place, as
/// [`SentBody::write_edited`] does for the bytes that arrived. For bodies the gateway made
/// itself (a translation), where there are no sent bytes to keep.
pub fn write_with_edited_members(
    body: &Map<String, Value>,
    names: &[&str],
    edit: impl FnOnce(&mut Map<String, Value>),
) -> Vec<u8> {
    let edited = edited_members(body, names, edit);
    let original = body
        .iter()
        .map(|(name, value)| (name.as_str(), Piece::Parsed(value)));
    write_in_place(original, names, edited, 1024)
}

/// The named members of `body`, copied out and edited.
fn edited_members(
    body: &Map<String, Value>,
    names: &[&str],
    edit: impl FnOnce(&mut Map<String, Value>),
) -> Map<String, Value> {
    let mut edited: Map<String, Value> = names
        .iter()
        .filter_map(|name| {
            body.get(*name)
                .map(|value| ((*name).to_owned(), value.clone()))
        })
        .collect();
    edit(&mut edited);
    debug_assert!(
        edited.keys().all(|name| names.contains(&name.as_str())),
        "an edit touched a member it did not name"
    );
    edited
}

/// The position of the first byte at or after `at` that is not JSON whitespace.
fn after_whitespace(text: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = text.get(at) {
        at += 1;
    }
    at
}

/// Reads one JSON value of `text` starting at `at` (a name or a member's value, followed by
/// the object's punctuation) as `seed` says, and where it ended: the offset a stream over the
/// rest would start from (serde_json tells a reader's position no other way; what follows is
/// the caller's to judge).
fn one<'de, S: DeserializeSeed<'de>>(
    text: &'de [u8],
    at: usize,
    seed: S,
) -> Result<(S::Value, usize), SentBodyError> {
    let mut deserializer = serde_json::Deserializer::from_slice(text.get(at..).unwrap_or_default());
    let value = seed
        .deserialize(&mut deserializer)
        .map_err(|_| SentBodyError::NotAnObject)?;
    let end = at + deserializer.into_iter::<de::IgnoredAny>().byte_offset();
    Ok((value, end))
}

/// The first name given to two members (ASCII letter case aside), if any.
fn first_duplicate(members: &[Member]) -> Option<&str> {
    let mut seen = hashbrown::HashSet::with_capacity(members.len());
    members
        .iter()
        .map(|member| &*member.name)
        .find(|name| !seen.insert(name.to_ascii_lowercase()))
}

/// A member's value as it is to be written.
enum Piece<'a> {
    /// Bytes as they arrived.
    Raw(&'a [u8]),
    /// A value to serialize.
    Parsed(&'a Value),
}

fn write_in_place<'a>(
    original: impl Iterator<Item = (&'a str, Piece<'a>)>,
    names: &[&str],
    mut edited: Map<String, Value>,
    capacity: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, name: &str, piece: Piece<'_>| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        write_json(out, name);
        out.push(b':');
        match piece {
            Piece::Raw(bytes) => out.extend_from_slice(bytes),
            Piece::Parsed(value) => write_json(out, value),
        }
    };
    for (name, piece) in original {
        if names.contains(&name) {
            if let Some(value) = edited.shift_remove(name) {
                member(&mut out, name, Piece::Parsed(&value));
            }
        } else {
            member(&mut out, name, piece);
        }
    }
    for (name, value) in &edited {
        member(&mut out, name, Piece::Parsed(value));
    }
    out.push(b'}');
    out
}

/// Appends a string or value as JSON; writing to a `Vec` cannot fail, and a JSON value (string
/// keys, finite numbers) always serializes.
fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    let _ = serde_json::to_writer(out, value);
}

/// Reads an object's member names (its values skipped: the body was checked when it was read).
struct NamesVisitor;

impl<'de> Visitor<'de> for NamesVisitor {
    type Value = Vec<Box<str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut names = Vec::new();
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            map.next_value::<de::IgnoredAny>()?;
            names.push(name.into());
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_read_as_a_whole_parse_reads_it() {
        for text in [
            "{}",
            " {\n} \r\n",
            r#"{"a":1}"#,
            r#"{ "a" : 1e5 , "b":-0.5,"c":"x\"y","d":[ {"e":null} ],"f":true,"g":false }"#,
            r#"{"\u0061b":1,"a\\b":"\ud83d\ude00"}"#,
            "{\"a\":{\"b\":[1,[2,[3]]]}}\t",
            // Not JSON objects, or not JSON at all.
            "",
            " ",
            "[]",
            "1",
            r#""a""#,
            "{",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":1}}"#,
            r#"{"a":1} x"#,
            r#"{"a":1}{}"#,
            r#"{1:2}"#,
            r#"{"a":-}"#,
            r#"{"a":01}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":1e400}"#,
            "{\"a\":\"\u{1}\"}",
            "\u{feff}{}",
        ] {
            const KEPT: &[(&str, Keep)] = &[
                ("a", Keep::Items(&Keep::Whole)),
                ("d", super::super::pruned::TYPES_OF_ITEMS),
            ];
            let whole = serde_json::from_str::<Map<String, Value>>(text);
            for (left_out, kept) in [
                (&[][..], &[][..]),
                (&["a", "d"][..], &[][..]),
                (&["a", "d"][..], KEPT),
            ] {
                let read = SentBody::read(Bytes::copy_from_slice(text.as_bytes()), left_out, kept);
                assert_eq!(read.is_ok(), whole.is_ok(), "{text:?}");
                let (Ok((sent, parsed)), Ok(whole)) = (read, &whole) else {
                    continue;
                };
                for (name, value) in whole {
                    let raw = sent.member(name).expect("every member is indexed");
                    assert_eq!(&serde_json::from_slice::<Value>(raw).unwrap(), value);
                    assert_eq!(
                        parsed.get(name),
                        (!left_out.contains(&name.as_str())).then_some(value)
                    );
                }
            }
        }
    }

    mod against_serde_json {
        use super::*;
        use proptest::prelude::*;

        /// JSON text of objects, arrays and scalars a few levels deep, with whitespace between
        /// every token.
        fn json_text() -> impl Strategy<Value = String> {
            let ws = prop_oneof![Just(""), Just(" "), Just("\n\t"), Just("\r\n ")];
            let scalar = prop_oneof![
                Just("null".to_owned()),
                Just("true".to_owned()),
                Just("-0".to_owned()),
                Just("1.5e3".to_owned()),
                Just("18446744073709551616".to_owned()),
                "[a-z]{0,4}".prop_map(|text| format!("\"{text}\"")),
                Just(r#""\"\\\u00e9""#.to_owned()),
            ];
            scalar.prop_recursive(3, 24, 4, move |inner| {
                let ws = ws.clone();
                prop_oneof![
                    (proptest::collection::vec(inner.clone(), 0..4), ws.clone()).prop_map(
                        |(items, ws)| format!("[{ws}{}{ws}]", items.join(&format!("{ws},{ws}")))
                    ),
                    (proptest::collection::vec(("[a-e]{1,2}", inner), 0..4), ws).prop_map(
                        |(members, ws)| {
                            let members: Vec<String> = members
                                .iter()
                                .map(|(name, value)| format!("\"{name}\"{ws}:{ws}{value}"))
                                .collect();
                            format!("{{{ws}{}{ws}}}", members.join(&format!("{ws},{ws}")))
                        }
                    ),
                ]
            })
        }

        /// A body: an object of such values, perhaps broken by one edit.
        fn body() -> impl Strategy<Value = Vec<u8>> {
            let members = proptest::collection::vec(("[a-f]{1,3}", json_text()), 0..5);
            let edit = proptest::option::of((
                any::<prop::sample::Index>(),
                prop_oneof![
                    Just(None),
                    proptest::sample::select(b"{}[],:\" 1e-.\\atu\x01".to_vec()).prop_map(Some),
                ],
            ));
            (members, edit).prop_map(|(members, edit)| {
                let members: Vec<String> = members
                    .iter()
                    .map(|(name, value)| format!("\"{name}\": {value}"))
                    .collect();
                let mut bytes = format!(" {{{}}} ", members.join(", ")).into_bytes();
                if let Some((at, replacement)) = edit {
                    let at = at.index(bytes.len());
                    match replacement {
                        None => {
                            bytes.remove(at);
                        }
                        Some(byte) => bytes.insert(at, byte),
                    }
                }
                bytes
            })
        }

        proptest! {
            /// `read` refuses as not JSON exactly what serde_json refuses, and a member's
            /// bytes are its value as serde_json reads it (names given twice aside: refused
            /// here, the last kept there).
            #[test]
            fn read_agrees_with_a_whole_parse(bytes in body()) {
                let whole = serde_json::from_slice::<Map<String, Value>>(&bytes);
                let read = SentBody::read(Bytes::from(bytes.clone()), &["a"], &[]);
                prop_assert_eq!(
                    whole.is_ok(),
                    !matches!(read, Err(SentBodyError::NotAnObject)),
                    "{}", String::from_utf8_lossy(&bytes)
                );
                if let (Ok(whole), Ok((sent, parsed))) = (whole, read) {
                    for (name, value) in &whole {
                        let raw = sent.member(name).unwrap();
                        prop_assert_eq!(&serde_json::from_slice::<Value>(raw).unwrap(), value);
                        prop_assert_eq!(parsed.get(name), (name != "a").then_some(value));
                    }
                }
            }
        }
    }

    #[test]
    fn members_left_out_and_parsed_later_give_the_whole_body_in_its_order() {
        let text = r#"{"a":1,"messages":[{"x":[1,2]}],"b":{"c":"d"},"tools":[],"e":null}"#;
        let sent = SentBody::parse(Bytes::copy_from_slice(text.as_bytes())).unwrap();
        let whole: Map<String, Value> = serde_json::from_str(text).unwrap();
        let (_, mut parsed) = SentBody::read(
            Bytes::copy_from_slice(text.as_bytes()),
            &["messages", "tools"],
            &[],
        )
        .unwrap();
        assert_eq!(parsed.keys().collect::<Vec<_>>(), ["a", "b", "e"]);
        assert_eq!(sent.member("messages"), Some(&br#"[{"x":[1,2]}]"#[..]));
        // In either order, each lands where it was sent.
        sent.parse_into(&mut parsed, "tools").unwrap();
        sent.parse_into(&mut parsed, "messages").unwrap();
        sent.parse_into(&mut parsed, "absent").unwrap();
        assert_eq!(
            parsed.iter().collect::<Vec<_>>(),
            whole.iter().collect::<Vec<_>>()
        );
        let (_, all) = SentBody::read(Bytes::copy_from_slice(text.as_bytes()), &[], &[]).unwrap();
        assert_eq!(all, whole);
    }

    #[test]
    fn a_name_given_twice_within_a_member_is_found() {
        let body = |text: &str| SentBody::parse(Bytes::copy_from_slice(text.as_bytes())).unwrap();
        let twice = body(r#"{"generationConfig":{"maxOutputTokens":60000,"maxOutputTokens":10}}"#);
        assert_eq!(
            twice.duplicate_within("generationConfig").as_deref(),
            Some("maxOutputTokens")
        );
        let once =
            body(r#"{"generationConfig":{"maxOutputTokens":1,"MaxOutputTokens":2},"x":[1]}"#);
        assert_eq!(once.duplicate_within("generationConfig"), None);
        assert_eq!(once.duplicate_within("x"), None);
        assert_eq!(once.duplicate_within("absent"), None);
    }

    fn sent(text: &str) -> (SentBody, Map<String, Value>) {
        let body = SentBody::parse(Bytes::copy_from_slice(text.as_bytes())).unwrap();
        let parsed = serde_json::from_str(text).unwrap();
        (body, parsed)
    }

    #[test]
    fn members_not_edited_keep_their_bytes_and_place() {
        let text =
            r#"{"z":1.0,"model":"a","schema":{"b":1e3,"a":"\u00e9"},"max_tokens":9,"x":[ 1 ,2]}"#;
        let (body, parsed) = sent(text);
        let written = body.write_edited(&parsed, &["model", "max_tokens", "stream_options"], |m| {
            m.insert("model".into(), "b".into());
            m.insert("max_tokens".into(), 5.into());
        });
        assert_eq!(
            String::from_utf8(written).unwrap(),
            r#"{"z":1.0,"model":"b","schema":{"b":1e3,"a":"\u00e9"},"max_tokens":5,"x":[ 1 ,2]}"#
        );
    }

    #[test]
    fn removed_members_go_and_added_ones_come_last() {
        let (body, parsed) = sent(r#"{"max_tokens":9,"model":"a","n":2}"#);
        let written = body.write_edited(&parsed, &["max_tokens", "max_completion_tokens"], |m| {
            let max = m.remove("max_tokens").unwrap();
            m.insert("max_completion_tokens".into(), max);
        });
        assert_eq!(written, br#"{"model":"a","n":2,"max_completion_tokens":9}"#);
    }

    #[test]
    fn whitespace_and_escaped_names_are_read() {
        let (body, parsed) = sent("{ \"mo\\u0064el\" : \"a\" ,\n \"k\" : { } }");
        let written = body.write_edited(&parsed, &["model"], |_| {});
        assert_eq!(written, br#"{"model":"a","k":{ }}"#);
    }

    #[test]
    fn a_duplicated_member_or_a_non_object_is_refused() {
        let parse = |text: &str| SentBody::parse(Bytes::copy_from_slice(text.as_bytes()));
        assert_eq!(
            parse(r#"{"max_tokens":1,"model":"a","max_tokens":100000}"#).unwrap_err(),
            SentBodyError::Duplicate("max_tokens".into())
        );
        // Case-insensitive parsers (Go's) would take the later one.
        assert_eq!(
            parse(r#"{"max_tokens":1,"MAX_TOKENS":100000}"#).unwrap_err(),
            SentBodyError::Duplicate("MAX_TOKENS".into())
        );
        // ...and fold the Kelvin sign to `k`.
        assert_eq!(
            parse(r#"{"max_tokens":1,"max_to\u212aens":100000}"#).unwrap_err(),
            SentBodyError::NonAsciiName("max_to\u{212a}ens".into())
        );
        assert_eq!(parse("[1]").unwrap_err(), SentBodyError::NotAnObject);
        assert_eq!(parse("{} x").unwrap_err(), SentBodyError::NotAnObject);
        assert_eq!(parse("{").unwrap_err(), SentBodyError::NotAnObject);
    }

    #[test]
    fn a_parsed_body_is_edited_in_place_too() {
        let parsed: Map<String, Value> =
            serde_json::from_str(r#"{"messages":[],"model":"a","tools":[]}"#).unwrap();
        let written = write_with_edited_members(&parsed, &["model"], |m| {
            m.insert("model".into(), "b".into());
        });
        assert_eq!(written, br#"{"messages":[],"model":"b","tools":[]}"#);
    }
}
