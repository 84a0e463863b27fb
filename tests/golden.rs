//! Golden files: the rendered outputs of `examples/quickstart` (fixed clock, seeded randomness)
//! must match `tests/golden/quickstart/` byte for byte. After an intended change, regenerate
//! with `UPDATE_GOLDEN=1 cargo test --test golden` and review the diff.

mod common;

use std::path::Path;

use dgidgi::render::manifests::{OutputFile, config_dir_files, manifest_files};

fn quickstart_output() -> dgidgi::render::RenderOutput {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let texts = common::read_dir_texts(&root.join("examples/quickstart"));
    let pairs: Vec<(&str, &str)> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    common::render_texts(&pairs, 42)
}

fn check(dir: &Path, files: &[OutputFile]) {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for file in files {
        let path = dir.join(&file.path);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &file.bytes).unwrap();
            continue;
        }
        let expected = std::fs::read(&path)
            .unwrap_or_else(|_| panic!("missing golden file {}", path.display()));
        assert!(
            expected == file.bytes,
            "{} differs from the golden file; if intended, run UPDATE_GOLDEN=1 cargo test --test golden\n--- rendered ---\n{}",
            path.display(),
            String::from_utf8_lossy(&file.bytes)
        );
    }
}

#[test]
fn quickstart_manifests_match_the_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/quickstart/out");
    check(&dir, &manifest_files(&quickstart_output()).unwrap());
}

#[test]
fn quickstart_config_dir_matches_the_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/quickstart/config-dir");
    check(&dir, &config_dir_files(&quickstart_output()).unwrap());
}

#[test]
fn quickstart_renders_without_any_error_condition() {
    let output = quickstart_output();
    assert!(
        output.report.not_ready().is_empty(),
        "{:?}",
        output.report.not_ready()
    );
    assert_eq!(output.config.tenants.len(), 4);
    let sources: Vec<_> = output
        .config
        .tenants
        .iter()
        .map(|t| (t.id.as_str(), t.source.as_str(), t.tier.as_str()))
        .collect();
    assert_eq!(
        sources,
        vec![
            ("hobby-lab/hobby", "cli", "free"),
            ("team-acme/acme", "platform", "pro"),
            ("team-globex/globex", "tenant", "team"),
            ("team-initech/initech", "platform", "enterprise"),
        ]
    );
}

#[test]
fn no_stale_golden_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/quickstart");
    let output = quickstart_output();
    let mut expected: Vec<String> = manifest_files(&output)
        .unwrap()
        .into_iter()
        .map(|f| format!("out/{}", f.path))
        .chain(
            config_dir_files(&output)
                .unwrap()
                .into_iter()
                .map(|f| format!("config-dir/{}", f.path)),
        )
        .collect();
    expected.sort();
    let present: Vec<String> = common::files_under(&root)
        .into_iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert_eq!(
        present, expected,
        "tests/golden/quickstart holds exactly the rendered files"
    );
}
