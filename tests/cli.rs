//! The `dgidgi render` command as a user runs it: files and directories in, files out, clear
//! errors and exit codes.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn dgidgi(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dgidgi"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn quickstart() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/quickstart")
        .display()
        .to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_directory_with_one_broken_file_names_it_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(
        inputs.join("a-good.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
    )
    .unwrap();
    std::fs::write(
        inputs.join("b-broken.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: [oops\n",
    )
    .unwrap();
    let output = dgidgi(&["render", "-f", "inputs", "--out", "out"], dir.path());
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("inputs/b-broken.yaml:"), "{message}");
    assert!(message.contains("invalid YAML"), "{message}");
    assert!(
        !dir.path().join("out").exists(),
        "nothing is written when an input is broken"
    );
}

#[test]
fn render_writes_manifests_and_config_dir_and_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let qs = quickstart();
    let first = dgidgi(
        &["render", "-f", &qs, "--out", "out", "--config-dir", "cfg"],
        dir.path(),
    );
    assert!(first.status.success(), "{}", stderr(&first));
    for file in [
        "out/status.yaml",
        "out/manifests/dgidgi-system/configmap-dgidgi-gateway-config.yaml",
        "out/manifests/dgidgi-system/secret-dgidgi-gateway-keys.yaml",
        "out/manifests/dgidgi-system/secret-dgidgi-master-key.yaml",
        "out/manifests/team-acme/secret-acme-llm-access-default.yaml",
        "out/manifests/team-acme/secret-acme-llm-access-ci.yaml",
        "cfg/gateway.yaml",
        "cfg/keys.yaml",
        "cfg/master-key.yaml",
        "cfg/access-keys.yaml",
    ] {
        assert!(dir.path().join(file).is_file(), "{file} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("cfg/keys.yaml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key material is private to its owner");
    }
    let snapshot = |sub: &str| -> Vec<(String, Vec<u8>)> {
        let mut files = Vec::new();
        for entry in common::files_under(&dir.path().join(sub)) {
            files.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
        }
        files
    };
    let (out1, cfg1) = (snapshot("out"), snapshot("cfg"));
    // Re-render into the same directories (their earlier outputs are read back): no change.
    let second = dgidgi(
        &["render", "-f", &qs, "--out", "out", "--config-dir", "cfg"],
        dir.path(),
    );
    assert!(second.status.success(), "{}", stderr(&second));
    // The keys read back from both places are one ring and one store: nothing to warn about.
    assert!(
        !stderr(&second).contains("more than once"),
        "{}",
        stderr(&second)
    );
    assert_eq!(snapshot("out"), out1);
    assert_eq!(snapshot("cfg"), cfg1);
    // Given back explicitly with -f into a fresh directory: the same bytes.
    let third = dgidgi(
        &[
            "render",
            "-f",
            &qs,
            "-f",
            "out/manifests",
            "-f",
            "out/status.yaml",
            "--out",
            "out2",
        ],
        dir.path(),
    );
    assert!(third.status.success(), "{}", stderr(&third));
    let strip = |files: Vec<(String, Vec<u8>)>, prefix: &str| -> Vec<(String, Vec<u8>)> {
        files
            .into_iter()
            .map(|(p, b)| (p.split(prefix).nth(1).unwrap().to_owned(), b))
            .collect()
    };
    assert_eq!(strip(snapshot("out2"), "/out2/"), strip(out1, "/out/"));
}

#[test]
fn stale_outputs_of_a_deleted_tenant_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {name: gone, namespace: team-x}\nspec: {}\n";
    std::fs::write(dir.path().join("in.yaml"), format!("{tenant}---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: mock, namespace: dgidgi-system}}\nspec: {{type: mock}}\n")).unwrap();
    std::fs::create_dir_all(dir.path().join("out/manifests/team-x")).unwrap();
    std::fs::write(
        dir.path().join("out/manifests/team-x/notes.yaml"),
        "mine: true\n",
    )
    .unwrap();
    assert!(
        dgidgi(&["render", "-f", "in.yaml", "--out", "out"], dir.path())
            .status
            .success()
    );
    assert!(
        dir.path()
            .join("out/manifests/team-x/secret-gone-llm-access-default.yaml")
            .exists()
    );
    std::fs::write(dir.path().join("in.yaml"), "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: mock, namespace: dgidgi-system}\nspec: {type: mock}\n").unwrap();
    assert!(
        dgidgi(&["render", "-f", "in.yaml", "--out", "out"], dir.path())
            .status
            .success()
    );
    assert!(
        !dir.path()
            .join("out/manifests/team-x/secret-gone-llm-access-default.yaml")
            .exists()
    );
    assert!(
        dir.path().join("out/manifests/team-x/notes.yaml").exists(),
        "files render did not write are left alone"
    );
}

#[test]
fn strict_mode_fails_on_not_ready_resources_and_unknown_kinds_only_warn() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: a}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {name: t, namespace: a}\nspec: {source: cli}\n",
    )
    .unwrap();
    let relaxed = dgidgi(&["render", "-f", "in.yaml", "--out", "out"], dir.path());
    assert!(relaxed.status.success(), "{}", stderr(&relaxed));
    assert!(
        stderr(&relaxed).contains("Deployment a/web: skipped"),
        "{}",
        stderr(&relaxed)
    );
    let status = std::fs::read_to_string(dir.path().join("out/status.yaml")).unwrap();
    assert!(status.contains("InvalidSpec"));
    let strict = dgidgi(
        &["render", "-f", "in.yaml", "--out", "out", "--strict"],
        dir.path(),
    );
    assert_eq!(strict.status.code(), Some(2));
    assert!(
        stderr(&strict).contains("LlmTenant a/t: InvalidSpec"),
        "{}",
        stderr(&strict)
    );
}

#[test]
fn render_needs_an_output() {
    let dir = tempfile::tempdir().unwrap();
    let output = dgidgi(&["render", "-f", &quickstart()], dir.path());
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--out"), "{}", stderr(&output));
}

#[test]
fn corrupt_master_key_in_the_config_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("cfg")).unwrap();
    std::fs::write(
        dir.path().join("cfg/master-key.yaml"),
        "active: k1\nkeys:\n- id: k1\n  key: dG9vIHNob3J0\n",
    )
    .unwrap();
    let output = dgidgi(
        &["render", "-f", &quickstart(), "--config-dir", "cfg"],
        dir.path(),
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("cfg/master-key.yaml"), "{message}");
    assert!(message.contains("32 bytes"), "{message}");
    assert!(!dir.path().join("cfg/gateway.yaml").exists());
}

#[test]
fn hostile_names_never_write_outside_the_output_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("in.yaml"),
        "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {name: evil, namespace: ../../pwned}\nspec: {}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {name: ../x, namespace: a}\nspec: {}\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("deep/er")).unwrap();
    let output = dgidgi(
        &["render", "-f", "../../in.yaml", "--out", "out"],
        &dir.path().join("deep/er"),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is not a valid"),
        "{}",
        stderr(&output)
    );
    let written: Vec<_> = common::files_under(dir.path())
        .into_iter()
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        written
            .iter()
            .all(|p| p.contains("/deep/er/out/") || p.ends_with("in.yaml")),
        "{written:?}"
    );
}

#[test]
fn directory_link_cycles_do_not_hang_render() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(
        inputs.join("ns.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(".", inputs.join("self")).unwrap();
        std::os::unix::fs::symlink("..", inputs.join("up")).unwrap();
    }
    let output = dgidgi(&["render", "-f", "inputs", "--out", "out"], dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("a link to a directory"),
        "{}",
        stderr(&output)
    );
}

/// Issue #18: `render --strict` fails when the ConfigMap would be refused by Kubernetes (more
/// than 1 MiB of data, about 2,300 tenants today) instead of warning and exiting 0.
#[test]
fn strict_render_fails_when_the_config_map_would_exceed_kubernetes_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::from(
        "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: mock, namespace: dgidgi-system}\nspec: {type: mock}\n",
    );
    for i in 0..4_000 {
        yaml.push_str(&format!(
            "---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: tenant-{i}, namespace: team-{i}}}\nspec: {{}}\n"
        ));
    }
    std::fs::write(dir.path().join("many.yaml"), yaml).unwrap();
    let lenient = dgidgi(&["render", "-f", "many.yaml", "--out", "out"], dir.path());
    assert!(lenient.status.success(), "{}", stderr(&lenient));
    assert!(stderr(&lenient).contains("too large for Kubernetes"));
    let strict = dgidgi(
        &["render", "-f", "many.yaml", "--out", "out", "--strict"],
        dir.path(),
    );
    assert_eq!(strict.status.code(), Some(2), "{}", stderr(&strict));
    let message = stderr(&strict);
    assert!(
        message.contains("too large: the gateway config (ConfigMap dgidgi-gateway-config)"),
        "{message}"
    );
}

#[test]
fn an_invalid_platform_configuration_is_refused_whole_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("platform.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dgidgi-platform, namespace: dgidgi-system}\ndata:\n  platform.yaml: |\n    tiers:\n      - {name: starter, requestsPerMinute: 0, tokensPerDay: 1000, concurrent: 1}\n    defaultTier: gold\n",
    )
    .unwrap();
    let quickstart = quickstart();
    let args = [
        "render",
        "-f",
        &quickstart,
        "-f",
        "platform.yaml",
        "--out",
        "out",
    ];
    let output = dgidgi(&args, dir.path());
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("dgidgi-platform is invalid"), "{message}");
    assert!(
        message.contains("requestsPerMinute must be at least 1"),
        "{message}"
    );
    assert!(message.contains("\"gold\""), "{message}");
    assert!(!dir.path().join("out").exists(), "nothing is written");
    // Fixed, it renders, and the tier is in the output.
    std::fs::write(
        dir.path().join("platform.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dgidgi-platform, namespace: dgidgi-system}\ndata:\n  platform.yaml: |\n    tiers:\n      - {name: free, requestsPerMinute: 5, tokensPerDay: 1000, concurrent: 1}\n      - {name: pro, requestsPerMinute: 60, tokensPerDay: 500000, concurrent: 10}\n      - {name: team, requestsPerMinute: 200, tokensPerDay: 2000000, concurrent: 50}\n      - {name: enterprise, custom: true, requestsPerMinute: 200, tokensPerDay: 2000000, concurrent: 50}\n",
    )
    .unwrap();
    let output = dgidgi(&args, dir.path());
    assert!(output.status.success(), "{}", stderr(&output));
}
