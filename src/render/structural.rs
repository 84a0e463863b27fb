//! The OpenAPI value checks the API server makes on a custom resource besides its types and its
//! CEL rules: a string's `pattern`, `minLength` and `maxLength`, and an array's `minItems` and
//! `maxItems`. Typed deserialization cannot see them, so offline render checks them here, from
//! the CRD's own schema (through `properties`, `items` and `additionalProperties`).
//!
//! Patterns are compiled by the `regex` crate, the API server's by Go's RE2: the same syntax and
//! meaning except that `\d`, `\w`, `\s` and `\b` are Unicode-aware here and ASCII there, so
//! the CRDs spell classes out (`[0-9]`), which `tests/crds.rs` checks.
//!
//! Why a schema `pattern` rather than a CEL `matches()` rule for checks that repeat per tenant
//! (an access key's name): the API server runs a pattern natively, outside the CEL cost budget,
//! and here each pattern is compiled once, where the CEL evaluator compiles a `matches()`
//! regular expression on every evaluation (a quarter of `dgidgi render`'s time at 10,000 tenants).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use regex::Regex;
use serde_json::Value;

/// The checks of one schema node and of the nodes under it; subtrees without checks are left
/// out, so walking an object costs only where something is checked.
#[derive(Debug, Default)]
pub struct StructuralChecks {
    /// `pattern`, compiled once, with its source text for the message.
    pattern: Option<(Regex, String)>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    properties: BTreeMap<String, StructuralChecks>,
    /// The schema of a map's values.
    additional: Option<Box<StructuralChecks>>,
    items: Option<Box<StructuralChecks>>,
}

/// One violation, in the API server's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `path: what is wrong` (values are never quoted).
    pub message: String,
    /// Too long or too many: the API server then skips the CEL rules (their cost could be
    /// unbounded); after other violations it still evaluates them.
    pub blocking: bool,
}

impl StructuralChecks {
    /// Compiles the checks of an OpenAPI v3 schema (`None`: it has none). A pattern the regex
    /// engine cannot compile is an error: the CRD itself would be defective.
    pub fn compile(schema: &Value) -> Result<Option<Self>, regex::Error> {
        let mut checks = Self {
            min_length: length(schema, "minLength"),
            max_length: length(schema, "maxLength"),
            min_items: length(schema, "minItems"),
            max_items: length(schema, "maxItems"),
            ..Self::default()
        };
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            checks.pattern = Some((Regex::new(pattern)?, pattern.to_owned()));
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, property) in properties {
                if let Some(child) = Self::compile(property)? {
                    checks.properties.insert(name.clone(), child);
                }
            }
        }
        if let Some(items) = schema.get("items") {
            checks.items = Self::compile(items)?.map(Box::new);
        }
        if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            checks.additional = Self::compile(values)?.map(Box::new);
        }
        let empty = checks.pattern.is_none()
            && checks.min_length.is_none()
            && checks.max_length.is_none()
            && checks.min_items.is_none()
            && checks.max_items.is_none()
            && checks.properties.is_empty()
            && checks.additional.is_none()
            && checks.items.is_none();
        Ok((!empty).then_some(checks))
    }

    /// Every violation in `object`. Values are not quoted (a misplaced secret must not reach a
    /// message).
    pub fn check(&self, object: &Value) -> Vec<Violation> {
        let mut errors = Vec::new();
        self.walk(object, &mut String::new(), &mut errors);
        errors
    }

    fn walk(&self, value: &Value, path: &mut String, errors: &mut Vec<Violation>) {
        match value {
            Value::String(text) => self.check_string(text, path, errors),
            Value::Object(map) => {
                for (name, value) in map {
                    let Some(child) = self.properties.get(name).or(self.additional.as_deref())
                    else {
                        continue;
                    };
                    let before = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(name);
                    child.walk(value, path, errors);
                    path.truncate(before);
                }
            }
            Value::Array(values) => {
                if let Some(max) = self.max_items
                    && values.len() > max
                {
                    errors.push(Violation {
                        message: format!(
                            "{path}: Too many: {} (must have at most {max} items)",
                            values.len()
                        ),
                        blocking: true,
                    });
                }
                if let Some(min) = self.min_items
                    && values.len() < min
                {
                    errors.push(Violation {
                        message: format!("{path} should have at least {min} items"),
                        blocking: false,
                    });
                }
                if let Some(items) = &self.items {
                    for (index, value) in values.iter().enumerate() {
                        let before = path.len();
                        let _ = write!(path, "[{index}]");
                        items.walk(value, path, errors);
                        path.truncate(before);
                    }
                }
            }
            _ => {}
        }
    }

    fn check_string(&self, text: &str, path: &str, errors: &mut Vec<Violation>) {
        // The API server counts characters, not bytes.
        let characters = text.chars().count();
        if let Some(min) = self.min_length
            && characters < min
        {
            errors.push(Violation {
                message: format!("{path} should be at least {min} chars long"),
                blocking: false,
            });
        }
        if let Some(max) = self.max_length
            && characters > max
        {
            errors.push(Violation {
                message: format!("{path}: Too long: may not be more than {max} characters"),
                blocking: true,
            });
        }
        if let Some((regex, source)) = &self.pattern
            && !regex.is_match(text)
        {
            errors.push(Violation {
                message: format!("{path} should match '{source}'"),
                blocking: false,
            });
        }
    }
}

fn length(schema: &Value, key: &str) -> Option<usize> {
    schema
        .get(key)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn checks() -> StructuralChecks {
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "keys": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string", "maxLength": 5, "minLength": 1, "pattern": "^[a-z]+$"},
                                    "free": {"type": "string"}
                                }
                            },
                            "maxItems": 4
                        },
                        "labels": {
                            "type": "object",
                            "additionalProperties": {"type": "string", "maxLength": 3}
                        },
                        "count": {"type": "integer"}
                    }
                }
            }
        });
        StructuralChecks::compile(&schema)
            .expect("patterns compile")
            .expect("the schema has checks")
    }

    #[test]
    fn nodes_without_checks_are_left_out() {
        let checks = checks();
        let spec = &checks.properties["spec"];
        assert!(!spec.properties.contains_key("count"));
        let item = spec.properties["keys"].items.as_ref().expect("items");
        assert!(item.properties.contains_key("name"));
        assert!(!item.properties.contains_key("free"));
        assert!(
            StructuralChecks::compile(&json!({"type": "string"}))
                .expect("compiles")
                .is_none()
        );
    }

    #[test]
    fn valid_objects_pass_and_each_violation_is_named_by_path() {
        let checks = checks();
        let good = json!({"spec": {"keys": [{"name": "abc", "free": "ANY thing"}], "labels": {"a": "xyz"}, "count": 3}});
        assert_eq!(checks.check(&good), Vec::new());
        let bad = json!({"spec": {"keys": [{"name": "ok"}, {"name": "Bad"}, {"name": "toolong"}, {"name": ""}], "labels": {"a": "long"}}});
        let messages = |violations: Vec<Violation>| {
            violations
                .into_iter()
                .map(|v| (v.message, v.blocking))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            messages(checks.check(&bad)),
            vec![
                (
                    "spec.keys[1].name should match '^[a-z]+$'".to_owned(),
                    false
                ),
                (
                    "spec.keys[2].name: Too long: may not be more than 5 characters".to_owned(),
                    true
                ),
                (
                    "spec.keys[3].name should be at least 1 chars long".to_owned(),
                    false
                ),
                (
                    "spec.keys[3].name should match '^[a-z]+$'".to_owned(),
                    false
                ),
                (
                    "spec.labels.a: Too long: may not be more than 3 characters".to_owned(),
                    true
                ),
            ]
        );
        let many = json!({"spec": {"keys": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}, {"name": "e"}]}});
        assert_eq!(
            messages(checks.check(&many)),
            vec![(
                "spec.keys: Too many: 5 (must have at most 4 items)".to_owned(),
                true
            )]
        );
    }

    #[test]
    fn lengths_count_characters_and_messages_do_not_quote_values() {
        let checks = checks();
        let accented = json!({"spec": {"keys": [{"name": "ééééé"}]}});
        let errors = checks.check(&accented);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].message,
            "spec.keys[0].name should match '^[a-z]+$'"
        );
        assert!(errors.iter().all(|e| !e.message.contains("ééééé")));
    }

    #[test]
    fn a_pattern_the_engine_cannot_compile_is_an_error() {
        assert!(StructuralChecks::compile(&json!({"type": "string", "pattern": "(["})).is_err());
    }
}
