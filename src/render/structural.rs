//! The OpenAPI value checks the API server makes on a custom resource besides its types and its
//! CEL rules: a string's `pattern`, `minLength` and `maxLength`. Typed deserialization cannot see
//! them, so offline render checks them here, from the CRD's own schema.
//!
//! Why a schema `pattern` rather than a CEL `matches()` rule for checks that repeat per tenant
//! (an access key's name): the API server runs a pattern natively, outside the CEL cost budget,
//! and here each pattern is compiled once, where the CEL evaluator compiles a `matches()`
//! regular expression on every evaluation (a quarter of `dgidgi render`'s time at 10,000 tenants).

use std::collections::BTreeMap;

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
    properties: BTreeMap<String, StructuralChecks>,
    items: Option<Box<StructuralChecks>>,
}

impl StructuralChecks {
    /// Compiles the checks of an OpenAPI v3 schema (`None`: it has none). A pattern the regex
    /// engine cannot compile is an error: the CRD itself would be defective.
    pub fn compile(schema: &Value) -> Result<Option<Self>, regex::Error> {
        let mut checks = Self {
            min_length: length(schema, "minLength"),
            max_length: length(schema, "maxLength"),
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
        let empty = checks.pattern.is_none()
            && checks.min_length.is_none()
            && checks.max_length.is_none()
            && checks.properties.is_empty()
            && checks.items.is_none();
        Ok((!empty).then_some(checks))
    }

    /// Every violation in `object`, as `path: what is wrong` in the API server's words. Values
    /// are not quoted (a misplaced secret must not reach a message).
    pub fn check(&self, object: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.walk(object, &mut String::new(), &mut errors);
        errors
    }

    fn walk(&self, value: &Value, path: &mut String, errors: &mut Vec<String>) {
        match value {
            Value::String(text) => self.check_string(text, path, errors),
            Value::Object(map) => {
                for (name, child) in &self.properties {
                    if let Some(value) = map.get(name) {
                        let before = path.len();
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(name);
                        child.walk(value, path, errors);
                        path.truncate(before);
                    }
                }
            }
            Value::Array(values) => {
                if let Some(items) = &self.items {
                    for (index, value) in values.iter().enumerate() {
                        let before = path.len();
                        path.push_str(&format!("[{index}]"));
                        items.walk(value, path, errors);
                        path.truncate(before);
                    }
                }
            }
            _ => {}
        }
    }

    fn check_string(&self, text: &str, path: &str, errors: &mut Vec<String>) {
        // The API server counts characters, not bytes.
        let characters = text.chars().count();
        if let Some(min) = self.min_length
            && characters < min
        {
            errors.push(format!("{path} should be at least {min} chars long"));
        }
        if let Some(max) = self.max_length
            && characters > max
        {
            errors.push(format!("{path} may not be longer than {max} characters"));
        }
        if let Some((regex, source)) = &self.pattern
            && !regex.is_match(text)
        {
            errors.push(format!("{path} should match '{source}'"));
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
                            }
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
        let good = json!({"spec": {"keys": [{"name": "abc", "free": "ANY thing"}], "count": 3}});
        assert_eq!(checks.check(&good), Vec::<String>::new());
        let bad = json!({"spec": {"keys": [{"name": "ok"}, {"name": "Bad"}, {"name": "toolong"}, {"name": ""}]}});
        assert_eq!(
            checks.check(&bad),
            vec![
                "spec.keys[1].name should match '^[a-z]+$'".to_owned(),
                "spec.keys[2].name may not be longer than 5 characters".to_owned(),
                "spec.keys[3].name should be at least 1 chars long".to_owned(),
                "spec.keys[3].name should match '^[a-z]+$'".to_owned(),
            ]
        );
    }

    #[test]
    fn lengths_count_characters_and_messages_do_not_quote_values() {
        let checks = checks();
        let accented = json!({"spec": {"keys": [{"name": "ééééé"}]}});
        let errors = checks.check(&accented);
        assert_eq!(errors, vec!["spec.keys[0].name should match '^[a-z]+$'"]);
        assert!(errors.iter().all(|e| !e.contains("ééééé")));
    }

    #[test]
    fn a_pattern_the_engine_cannot_compile_is_an_error() {
        assert!(StructuralChecks::compile(&json!({"type": "string", "pattern": "(["})).is_err());
    }
}
