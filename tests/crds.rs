//! The CRDs: `crds/` matches the Rust types, every field is described for `kubectl explain`,
//! and the API server gets the rules it can enforce on its own.

use std::path::Path;

use dgidgi::crd;
use serde_json::Value;

#[test]
fn crds_directory_matches_the_generated_yaml() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut expected_files = Vec::new();
    for definition in crd::all() {
        let name = crd::file_name(&definition);
        let generated = crd::to_yaml(&definition).unwrap();
        let on_disk = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            on_disk == generated,
            "crds/{name} is stale; regenerate with `cargo run -- crds --out-dir crds`"
        );
        expected_files.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(
        present, expected_files,
        "crds/ holds exactly the generated CRDs"
    );
}

#[test]
fn the_crds_command_prints_the_same_documents() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_dgidgi"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        crd::all_yaml().unwrap()
    );
}

fn schema_of(kind: &str) -> Value {
    let definition = crd::all()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    serde_json::to_value(
        &definition.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema,
    )
    .unwrap()
}

/// Walks a schema and returns the path of every property without a description.
fn undescribed(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let child = format!("{path}.{name}");
            let is_envelope =
                path.is_empty() && matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
            if !is_envelope
                && property
                    .get("description")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                out.push(child.clone());
            }
            undescribed(property, &child, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undescribed(items, &format!("{path}[]"), out);
    }
}

#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    for kind in ["LlmProvider", "LlmTenant", "RoutingPolicy"] {
        let mut missing = Vec::new();
        undescribed(&schema_of(kind), "", &mut missing);
        assert!(
            missing.is_empty(),
            "{kind} fields without a description: {missing:?}"
        );
    }
}

fn rules_at(schema: &Value, pointer: &str) -> Vec<String> {
    schema
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no schema at {pointer}"))
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .map(|r| r["rule"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cel_rules_cover_what_the_api_server_can_refuse() {
    let provider = schema_of("LlmProvider");
    let spec = rules_at(&provider, "/properties/spec");
    assert!(
        spec.iter()
            .any(|r| r.contains("has(self.credentialsRef)") && r.contains("'ollama', 'mock'"))
    );
    assert!(
        spec.iter()
            .any(|r| r.contains("openai-compatible") && r.contains("has(self.baseUrl)"))
    );
    assert!(
        rules_at(
            &provider,
            "/properties/spec/properties/timeouts/properties/connect"
        )[0]
        .contains("ms|s|m|h")
    );

    let tenant = schema_of("LlmTenant");
    assert!(
        rules_at(&tenant, "/properties/spec")
            .iter()
            .any(|r| r.contains("self.source != 'cli' || has(self.cli)"))
    );
    assert!(
        rules_at(
            &tenant,
            "/properties/spec/properties/budget/properties/alertThresholds"
        )[0]
        .contains("t >= 1 && t <= 100")
    );

    let policy = schema_of("RoutingPolicy");
    let weight = rules_at(
        &policy,
        "/properties/spec/properties/rules/items/properties/targets/items/properties/weight",
    );
    assert!(weight[0].contains("self > 0"));
    assert!(
        rules_at(
            &policy,
            "/properties/spec/properties/rules/items/properties/timeout"
        )[0]
        .contains("ms|s|m|h")
    );
}

#[test]
fn short_names_status_subresource_and_printer_columns() {
    for (kind, short, columns) in [
        (
            "LlmProvider",
            "llmp",
            vec!["Type", "Ready", "Reason", "Models", "Age"],
        ),
        (
            "LlmTenant",
            "llmt",
            vec!["Source", "Tier", "Ready", "Reason", "Spend", "Age"],
        ),
        (
            "RoutingPolicy",
            "llmrp",
            vec!["Priority", "Rules", "Ready", "Reason", "Age"],
        ),
    ] {
        let definition = crd::all()
            .into_iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap();
        assert_eq!(definition.spec.group, "llm.dgidgi.io");
        assert_eq!(definition.spec.scope, "Namespaced");
        assert_eq!(
            definition.spec.names.short_names.as_deref(),
            Some(&[short.to_owned()][..])
        );
        let version = &definition.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{kind} status subresource"
        );
        let names: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, columns, "{kind}");
        let conditions = serde_json::to_value(&version.schema).unwrap();
        let condition = conditions
            .pointer("/openAPIV3Schema/properties/status/properties/conditions/items/properties")
            .unwrap();
        for field in [
            "type",
            "status",
            "reason",
            "message",
            "lastTransitionTime",
            "observedGeneration",
        ] {
            assert!(
                condition.get(field).is_some(),
                "{kind} condition lacks {field}"
            );
        }
    }
}

#[test]
fn the_helm_chart_ships_the_same_crds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for definition in crd::all() {
        let name = crd::file_name(&definition);
        let chart = std::fs::read_to_string(root.join("charts/dgidgi/crds").join(&name))
            .unwrap_or_default();
        assert!(
            chart == crd::to_yaml(&definition).unwrap(),
            "charts/dgidgi/crds/{name} is stale; regenerate with `cargo run -- crds --out-dir charts/dgidgi/crds`"
        );
    }
}

fn patterns(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(pattern)) = map.get("pattern") {
                out.push(pattern.clone());
            }
            map.values().for_each(|v| patterns(v, out));
        }
        Value::Array(values) => values.iter().for_each(|v| patterns(v, out)),
        _ => {}
    }
}

#[test]
fn schema_patterns_mean_the_same_to_the_api_server_and_to_offline_render() {
    // Offline render compiles patterns with the `regex` crate, the API server with Go's RE2:
    // the same except for the Unicode-aware shorthand classes, so the CRDs spell classes out.
    let mut found = Vec::new();
    for kind in ["LlmProvider", "LlmTenant", "RoutingPolicy"] {
        patterns(&schema_of(kind), &mut found);
    }
    assert!(!found.is_empty(), "the access key name has a pattern");
    for pattern in found {
        for shorthand in [r"\d", r"\w", r"\s", r"\b", r"\D", r"\W", r"\S", r"\B"] {
            assert!(
                !pattern.contains(shorthand),
                "{pattern} uses {shorthand}: write the ASCII class out"
            );
        }
        assert!(regex_compiles(&pattern), "{pattern} does not compile");
    }
}

fn regex_compiles(pattern: &str) -> bool {
    dgidgi::render::structural::StructuralChecks::compile(&serde_json::json!({
        "type": "string",
        "pattern": pattern
    }))
    .is_ok()
}
