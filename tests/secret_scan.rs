//! Secrets never leak: known secret strings in the inputs must not appear, plain or base64, in
//! the ConfigMap, the status output or the logs (captured at the most verbose level), whether
//! render runs in-process or as the `dgidgi render` command.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dgidgi::render::manifests::{STATUS_FILE, config_dir_files, manifest_files};

const SECRETS: [&str; 4] = [
    "sk-scan-platform-openai-9d8c7b6a5f4e",
    "sk-ant-scan-platform-1a2b3c4d5e6f",
    "sk-scan-tenant-byok-0f1e2d3c4b5a",
    "sk-scan-platform-only-ffeeddccbbaa",
];

fn inputs() -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: team-a, labels: {{llm.dgidgi.io/tier: pro}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: openai, namespace: dgidgi-system}}
stringData: {{apiKey: {0}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: anthropic, namespace: dgidgi-system}}
data: {{apiKey: {1}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: platform-only, namespace: dgidgi-system}}
stringData: {{apiKey: {3}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: mine, namespace: team-a}}
stringData: {{apiKey: {2}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: openai, namespace: dgidgi-system}}
spec: {{type: openai, credentialsRef: {{name: openai}}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: anthropic, namespace: dgidgi-system}}
spec: {{type: anthropic, credentialsRef: {{name: anthropic}}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: mine, namespace: team-a}}
spec: {{type: openai, credentialsRef: {{name: mine}}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: stolen, namespace: team-a}}
spec: {{type: openai, credentialsRef: {{name: platform-only}}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmProvider
metadata: {{name: wrong-key, namespace: team-a}}
spec: {{type: openai, credentialsRef: {{name: mine, key: nope}}}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {{name: a, namespace: team-a}}
spec: {{source: tenant, allowPlatformFallback: true}}
---
apiVersion: llm.dgidgi.io/v1alpha1
kind: LlmTenant
metadata: {{name: b, namespace: team-a}}
spec: {{}}
"#,
        SECRETS[0],
        STANDARD.encode(SECRETS[1]),
        SECRETS[2],
        SECRETS[3],
    )
}

/// The secret, and its base64 forms at every alignment inside a longer encoded blob.
fn forms(secret: &[u8]) -> Vec<String> {
    let mut forms = vec![
        String::from_utf8_lossy(secret).into_owned(),
        STANDARD.encode(secret),
    ];
    for offset in 1..3 {
        let mut padded = vec![b'x'; offset];
        padded.extend_from_slice(secret);
        let encoded = STANDARD.encode(&padded);
        // Drop the characters that depend on the prefix and the tail that depends on padding.
        forms.push(encoded[4..encoded.len() - 4].to_owned());
    }
    forms
}

fn assert_clean(place: &str, text: &str, secrets: &[Vec<u8>]) {
    for secret in secrets {
        for form in forms(secret) {
            assert!(
                !text.contains(&form),
                "{place} contains a secret (form {form:?})"
            );
        }
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn secrets_never_reach_the_config_map_status_or_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let output = tracing::subscriber::with_default(subscriber, || common::render_yaml(&inputs()));
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("key store: new row"),
        "logging was captured: {logs}"
    );

    // Everything secret: provider keys, generated access keys, master key bytes.
    let mut secrets: Vec<Vec<u8>> = SECRETS.iter().map(|s| s.as_bytes().to_vec()).collect();
    secrets.extend(
        output
            .access_keys
            .iter()
            .map(|k| k.value.as_bytes().to_vec()),
    );
    let ring = output.key_ring.to_yaml().unwrap();
    let master_key = ring
        .lines()
        .find_map(|l| l.trim().strip_prefix("key: "))
        .unwrap();
    secrets.push(master_key.as_bytes().to_vec());
    secrets.push(STANDARD.decode(master_key).unwrap());
    assert!(output.access_keys.len() >= 2);

    let files = manifest_files(&output).unwrap();
    let config_map = files.iter().find(|f| f.path.contains("configmap")).unwrap();
    let status = files.iter().find(|f| f.path == STATUS_FILE).unwrap();
    let gateway_yaml = config_dir_files(&output)
        .unwrap()
        .into_iter()
        .find(|f| f.path == "gateway.yaml")
        .unwrap();
    assert_clean(
        "the ConfigMap",
        &String::from_utf8_lossy(&config_map.bytes),
        &secrets,
    );
    assert_clean(
        "gateway.yaml",
        &String::from_utf8_lossy(&gateway_yaml.bytes),
        &secrets,
    );
    assert_clean(
        "the status output",
        &String::from_utf8_lossy(&status.bytes),
        &secrets,
    );
    assert_clean("the logs", &logs, &secrets);
    assert_clean(
        "Debug of the whole output",
        &format!("{output:?}"),
        &secrets,
    );

    // The provider keys are in no output file at all (only sealed in the key store), except
    // the platform-only key, which must not even be sealed.
    let all = common::all_output_text(&output);
    assert_clean("any output file", &all, &secrets[..4]);
    assert!(output.key_store.get("team-a/stolen").is_none());
}

#[test]
fn the_render_command_leaks_nothing_on_stdout_or_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.yaml");
    std::fs::write(&input, inputs()).unwrap();
    let out = dir.path().join("out");
    let result = std::process::Command::new(env!("CARGO_BIN_EXE_dgidgi"))
        .args(["render", "--log", "trace", "-f"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let secrets: Vec<Vec<u8>> = SECRETS.iter().map(|s| s.as_bytes().to_vec()).collect();
    assert_clean("stdout", &String::from_utf8_lossy(&result.stdout), &secrets);
    assert_clean("stderr", &String::from_utf8_lossy(&result.stderr), &secrets);
    let status = std::fs::read_to_string(out.join(STATUS_FILE)).unwrap();
    assert_clean("status.yaml", &status, &secrets);
    let config_map = std::fs::read_to_string(
        out.join("manifests/dgidgi-system/configmap-dgidgi-gateway-config.yaml"),
    )
    .unwrap();
    assert_clean("the ConfigMap file", &config_map, &secrets);
}

#[test]
fn secrets_in_the_wrong_place_do_not_leak_through_error_messages() {
    let misplaced = "sk-proj-MISPLACED-0a1b2c3d4e5f";
    let key = STANDARD.encode([7u8; 32]);
    let dir = tempfile::tempdir().unwrap();
    // A key pasted where a reference belongs, and as an enum value.
    std::fs::write(
        dir.path().join("in.yaml"),
        format!(
            "apiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: p, namespace: dgidgi-system}}\nspec: {{type: openai, credentialsRef: {misplaced}}}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: t, namespace: a}}\nspec: {{source: {misplaced}}}\n"
        ),
    )
    .unwrap();
    let result = std::process::Command::new(env!("CARGO_BIN_EXE_dgidgi"))
        .args(["render", "--log", "trace", "-f", "in.yaml", "--out", "out"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(result.status.success());
    let status = std::fs::read_to_string(dir.path().join("out/status.yaml")).unwrap();
    assert!(status.contains("InvalidSpec"));
    let secrets = vec![misplaced.as_bytes().to_vec()];
    assert_clean("status.yaml", &status, &secrets);
    assert_clean("stderr", &String::from_utf8_lossy(&result.stderr), &secrets);

    // A master key ring of the wrong shape: the error must not print the key.
    std::fs::create_dir(dir.path().join("cfg")).unwrap();
    std::fs::write(
        dir.path().join("cfg/master-key.yaml"),
        format!("active: k1\nkeys: {key}\n"),
    )
    .unwrap();
    let result = std::process::Command::new(env!("CARGO_BIN_EXE_dgidgi"))
        .args(["render", "-f", "in.yaml", "--config-dir", "cfg"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("master-key.yaml"), "{stderr}");
    assert_clean("stderr", &stderr, &[key.as_bytes().to_vec()]);
}
