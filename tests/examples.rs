//! Every example under `examples/` as a user runs it: each custom-resource directory renders
//! with the real `dgidgi render --strict`, every resource comes out with only healthy
//! conditions, and the gateway loads the config directory it wrote. The GitOps directories
//! (Argo CD, Flux) are parsed and their objects checked for the fields those tools require,
//! and for paths and references that exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use dgidgi::config::load::Snapshot;
use serde::Deserialize as _;
use serde_yaml::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The custom-resource examples: every directory of `examples/` except `gitops`.
fn cr_examples() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && !p.ends_with("gitops"))
        .collect();
    dirs.sort();
    dirs
}

/// Every YAML document of every `.yaml` file under `dir`, with the file it came from.
fn documents(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", file.display()));
            if !value.is_null() {
                docs.push((file.clone(), value));
            }
        }
    }
    docs
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(*key))
        .and_then(Value::as_str)
}

/// The status a healthy resource has for each condition type render writes. A type missing
/// here fails the test, so a new condition is classified on purpose.
fn healthy_status(condition_type: &str) -> &'static str {
    match condition_type {
        "Ready" | "ProvidersResolved" | "TargetsResolved" | "TierResolved" => "True",
        "LimitsClamped" | "BudgetExceeded" => "False",
        other => panic!("condition type {other} is not classified in tests/examples.rs"),
    }
}

#[test]
fn the_examples_are_the_documented_ones() {
    let names: Vec<String> = cr_examples()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "byok",
            "cli-local",
            "clouds",
            "multi-tenant",
            "quickstart",
            "routing"
        ]
    );
    for tool in ["argocd", "flux"] {
        assert!(root().join("examples/gitops").join(tool).is_dir());
    }
}

#[test]
fn every_example_renders_clean_and_the_gateway_loads_it() {
    for example in cr_examples() {
        let name = example.file_name().unwrap().to_string_lossy().into_owned();
        let tmp = tempfile::tempdir().unwrap();
        let (out, config) = (tmp.path().join("out"), tmp.path().join("config"));
        let output = Command::new(env!("CARGO_BIN_EXE_dgidgi"))
            .arg("render")
            .arg("-f")
            .arg(&example)
            .arg("--out")
            .arg(&out)
            .arg("--config-dir")
            .arg(&config)
            .arg("--strict")
            .env("NO_COLOR", "1")
            .env("SOURCE_DATE_EPOCH", "1795608000")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: render failed:\n{stderr}");
        assert!(
            !stderr.contains("WARN") && !stderr.contains("ERROR"),
            "{name}: render warned:\n{stderr}"
        );

        // Every custom resource of the example is in the report, with healthy conditions only.
        let mut given: BTreeMap<&str, BTreeSet<(String, String)>> = BTreeMap::new();
        let docs = documents(&example);
        for (_, doc) in &docs {
            let section = match str_at(doc, &["kind"]) {
                Some("LlmProvider") => "providers",
                Some("LlmTenant") => "tenants",
                Some("RoutingPolicy") => "policies",
                _ => continue,
            };
            let key = (
                str_at(doc, &["metadata", "namespace"]).unwrap().to_owned(),
                str_at(doc, &["metadata", "name"]).unwrap().to_owned(),
            );
            given.entry(section).or_default().insert(key);
        }
        assert!(given.contains_key("tenants"), "{name}: no LlmTenant");
        let status: Value =
            serde_yaml::from_str(&std::fs::read_to_string(out.join("status.yaml")).unwrap())
                .unwrap();
        for (section, expected) in &given {
            let entries = status[*section].as_sequence().cloned().unwrap_or_default();
            let mut reported = BTreeSet::new();
            for entry in &entries {
                let ns = str_at(entry, &["namespace"]).unwrap();
                let res = str_at(entry, &["name"]).unwrap();
                let conditions = entry["status"]["conditions"].as_sequence().unwrap();
                assert!(
                    conditions.iter().any(|c| c["type"] == "Ready"),
                    "{name}: {section} {ns}/{res} has no Ready condition"
                );
                for c in conditions {
                    let type_ = c["type"].as_str().unwrap();
                    assert_eq!(
                        c["status"].as_str().unwrap(),
                        healthy_status(type_),
                        "{name}: {section} {ns}/{res}: {type_} {} ({})",
                        c["reason"].as_str().unwrap_or(""),
                        c["message"].as_str().unwrap_or("")
                    );
                }
                reported.insert((ns.to_owned(), res.to_owned()));
            }
            assert_eq!(&reported, expected, "{name}: {section} in the report");
        }

        // What the operator would write is exactly what the chart's gateway mounts.
        let platform = out.join("manifests/dgidgi-system");
        for (file, kind, key) in [
            (
                "configmap-dgidgi-gateway-config.yaml",
                "ConfigMap",
                "gateway.yaml",
            ),
            ("secret-dgidgi-gateway-keys.yaml", "Secret", "keys.yaml"),
            ("secret-dgidgi-master-key.yaml", "Secret", "master-key.yaml"),
        ] {
            let object: Value =
                serde_yaml::from_str(&std::fs::read_to_string(platform.join(file)).unwrap())
                    .unwrap();
            assert_eq!(object["kind"], kind, "{name}: {file}");
            assert!(
                object["data"][key].is_string(),
                "{name}: {file} lacks {key}"
            );
        }
        let snapshot = Snapshot::load(&config)
            .unwrap_or_else(|e| panic!("{name}: the gateway refuses the config: {e}"));
        assert_eq!(
            snapshot.config.tenants.len(),
            given["tenants"].len(),
            "{name}: every tenant reaches the gateway"
        );
    }
}

/// The GitOps objects: what each kind needs to be accepted by its controller.
fn check_gitops_object(file: &Path, doc: &Value, known: &GitOpsNames) {
    let where_ = file.display();
    let kind = str_at(doc, &["kind"]).unwrap_or_else(|| panic!("{where_}: no kind"));
    let api = str_at(doc, &["apiVersion"]).unwrap_or_else(|| panic!("{where_}: no apiVersion"));
    let name = str_at(doc, &["metadata", "name"]).unwrap_or_else(|| panic!("{where_}: no name"));
    let need = |path: &[&str]| {
        str_at(doc, path)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| panic!("{where_}: {kind} {name} needs {}", path.join(".")))
    };
    let repo_path = |path: &str| {
        let dir = root().join(path.trim_start_matches("./"));
        assert!(
            dir.is_dir(),
            "{where_}: {kind} {name}: {path} is not in the repository"
        );
    };
    match (api, kind) {
        ("argoproj.io/v1alpha1", "Application") => {
            need(&["spec", "project"]);
            need(&["spec", "source", "repoURL"]);
            need(&["spec", "source", "targetRevision"]);
            repo_path(need(&["spec", "source", "path"]));
            assert!(
                str_at(doc, &["spec", "destination", "server"]).is_some()
                    || str_at(doc, &["spec", "destination", "name"]).is_some(),
                "{where_}: {name} needs spec.destination.server or .name"
            );
            need(&["spec", "destination", "namespace"]);
        }
        ("source.toolkit.fluxcd.io/v1", "GitRepository") => {
            need(&["spec", "url"]);
            need(&["spec", "interval"]);
            need(&["spec", "ref", "branch"]);
        }
        ("helm.toolkit.fluxcd.io/v2", "HelmRelease") => {
            need(&["spec", "interval"]);
            repo_path(need(&["spec", "chart", "spec", "chart"]));
            assert_eq!(
                need(&["spec", "chart", "spec", "sourceRef", "kind"]),
                "GitRepository"
            );
            let source = need(&["spec", "chart", "spec", "sourceRef", "name"]);
            assert!(
                known.git.contains(source),
                "{where_}: unknown source {source}"
            );
        }
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization") => {
            need(&["spec", "interval"]);
            repo_path(need(&["spec", "path"]));
            assert!(
                doc["spec"]["prune"].is_bool(),
                "{where_}: {name} needs prune"
            );
            let source = need(&["spec", "sourceRef", "name"]);
            assert!(
                known.git.contains(source),
                "{where_}: unknown source {source}"
            );
            for dep in doc["spec"]["dependsOn"].as_sequence().into_iter().flatten() {
                let dep = dep["name"].as_str().unwrap();
                assert!(
                    known.kustomizations.contains(dep),
                    "{where_}: dependsOn {dep}"
                );
            }
        }
        ("v1", "Namespace") => {}
        other => panic!("{where_}: unexpected object {other:?}"),
    }
}

#[derive(Default)]
struct GitOpsNames {
    git: BTreeSet<String>,
    kustomizations: BTreeSet<String>,
}

#[test]
fn the_gitops_examples_are_complete_argocd_and_flux_objects() {
    let docs = documents(&root().join("examples/gitops"));
    let mut known = GitOpsNames::default();
    let mut kinds = BTreeSet::new();
    for (_, doc) in &docs {
        let name = str_at(doc, &["metadata", "name"])
            .unwrap_or_default()
            .to_owned();
        match str_at(doc, &["kind"]) {
            Some("GitRepository") => known.git.insert(name),
            Some("Kustomization") => known.kustomizations.insert(name),
            _ => false,
        };
        kinds.insert(str_at(doc, &["kind"]).unwrap_or_default().to_owned());
    }
    for (file, doc) in &docs {
        check_gitops_object(file, doc, &known);
    }
    for kind in [
        "Application",
        "GitRepository",
        "HelmRelease",
        "Kustomization",
    ] {
        assert!(kinds.contains(kind), "examples/gitops has no {kind}");
    }
    // One Argo CD Application installs the chart, another the custom resources.
    let paths: BTreeSet<&str> = docs
        .iter()
        .filter(|(_, d)| str_at(d, &["kind"]) == Some("Application"))
        .filter_map(|(_, d)| str_at(d, &["spec", "source", "path"]))
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from(["charts/dgidgi", "examples/multi-tenant"])
    );
}
