//! Loading a rendered config directory the way the gateway will: everything render writes
//! loads and indexes; anything corrupt or inconsistent is refused as a whole, with a message
//! that names the file and never key material.

mod common;

use std::path::Path;

use dgidgi::config::load::{ConfigFiles, LoadError, Snapshot};
use dgidgi::render::manifests::config_dir_files;

fn write_quickstart(dir: &Path) -> dgidgi::render::RenderOutput {
    let texts =
        common::read_dir_texts(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart"));
    let pairs: Vec<(&str, &str)> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let output = common::render_texts(&pairs, 5);
    for file in config_dir_files(&output).unwrap() {
        std::fs::write(dir.join(&file.path), &file.bytes).unwrap();
    }
    output
}

#[test]
fn a_rendered_directory_loads_and_finds_tenants_by_access_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = write_quickstart(dir.path());
    let snapshot = Snapshot::load(dir.path()).unwrap();
    assert_eq!(snapshot.config, output.config);
    for access in &output.access_keys {
        let tenant = snapshot
            .tenant_for_key(access.value.as_bytes())
            .expect("key resolves");
        assert_eq!(tenant.name, access.tenant);
    }
    assert!(snapshot.tenant_for_key(b"dgk_not-a-key").is_none());
    assert!(snapshot.provider("dgidgi-system/mock").is_some());
    assert!(snapshot.provider("team-globex/my-openai").is_some());
}

#[test]
fn the_fingerprint_tells_changed_directories_apart() {
    let dir = tempfile::tempdir().unwrap();
    write_quickstart(dir.path());
    let before = ConfigFiles::read(dir.path()).unwrap().fingerprint();
    assert_eq!(before, ConfigFiles::read(dir.path()).unwrap().fingerprint());
    let gateway = dir.path().join("gateway.yaml");
    let text = std::fs::read_to_string(&gateway).unwrap();
    std::fs::write(
        &gateway,
        text.replace("requestsPerMinute: 30", "requestsPerMinute: 31"),
    )
    .unwrap();
    assert_ne!(before, ConfigFiles::read(dir.path()).unwrap().fingerprint());
    assert!(Snapshot::load(dir.path()).is_ok());
}

fn load_after(edit: impl Fn(&Path)) -> LoadError {
    let dir = tempfile::tempdir().unwrap();
    write_quickstart(dir.path());
    edit(dir.path());
    Snapshot::load(dir.path()).unwrap_err()
}

fn rewrite(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} not in {file}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn corrupt_or_inconsistent_directories_are_refused() {
    let missing = load_after(|d| std::fs::remove_file(d.join("keys.yaml")).unwrap());
    assert!(matches!(missing, LoadError::Read { .. }), "{missing}");

    let garbage = load_after(|d| std::fs::write(d.join("gateway.yaml"), "version: [1\n").unwrap());
    assert!(garbage.to_string().contains("gateway.yaml"), "{garbage}");

    let version = load_after(|d| rewrite(d, "gateway.yaml", "version: 1", "version: 99"));
    assert!(
        version.to_string().contains("version 99 is not supported"),
        "{version}"
    );

    let row = load_after(|d| {
        rewrite(
            d,
            "keys.yaml",
            "id: dgidgi-system/openai",
            "id: dgidgi-system/elsewhere",
        )
    });
    assert!(
        row.to_string()
            .contains("needs key store row dgidgi-system/openai"),
        "{row}"
    );

    let unknown_provider = load_after(|d| {
        rewrite(
            d,
            "gateway.yaml",
            "provider: dgidgi-system/mock",
            "provider: dgidgi-system/ghost",
        )
    });
    assert!(
        unknown_provider
            .to_string()
            .contains("unknown provider dgidgi-system/ghost"),
        "{unknown_provider}"
    );

    // A tenant whose id names another namespace would keep its shared counters apart from its
    // namespace's (another hash slot on a Redis Cluster).
    let elsewhere = load_after(|d| {
        rewrite(
            d,
            "gateway.yaml",
            "id: team-acme/acme",
            "id: team-globex/acme",
        )
    });
    assert!(
        elsewhere
            .to_string()
            .contains("tenant team-globex/acme is not named <namespace>/<name>"),
        "{elsewhere}"
    );

    let ring = load_after(|d| rewrite(d, "master-key.yaml", "active: k1", "active: k9"));
    assert!(ring.to_string().contains("master-key.yaml"), "{ring}");
}

#[test]
fn errors_never_quote_key_material() {
    let dir = tempfile::tempdir().unwrap();
    write_quickstart(dir.path());
    let ring = std::fs::read_to_string(dir.path().join("master-key.yaml")).unwrap();
    let key = ring
        .lines()
        .find_map(|l| l.trim().strip_prefix("key: "))
        .unwrap()
        .to_owned();
    // The key where a list belongs: the parser's message would quote it.
    std::fs::write(
        dir.path().join("master-key.yaml"),
        format!("active: k1\nkeys: {key}\n"),
    )
    .unwrap();
    let error = Snapshot::load(dir.path()).unwrap_err().to_string();
    assert!(!error.contains(&key), "{error}");
    assert!(error.contains("master-key.yaml"), "{error}");
}
