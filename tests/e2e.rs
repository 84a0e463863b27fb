//! End to end against a real cluster, only when `KUBECONFIG` is set (otherwise it says that it
//! skipped). Expects dgidgi installed in the platform namespace (the Helm chart under
//! charts/dgidgi: operator and gateway) and `kubectl` on PATH. It applies the CRDs this build
//! generates and examples/quickstart, waits until every LlmTenant is Ready, reads acme's access
//! key from its Secret, port-forwards Service `dgidgi-gateway` and sends a chat completion to
//! the offline mock model through it.
//!
//! `DGIDGI_E2E_NAMESPACE` names the platform namespace (default dgidgi-system).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn kubectl(args: &[&str]) -> String {
    let output = Command::new("kubectl")
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn kubectl_apply(yaml: &[u8]) {
    let mut child = Command::new("kubectl")
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child.stdin.take().unwrap().write_all(yaml).unwrap();
    assert!(child.wait().unwrap().success(), "kubectl apply failed");
}

struct PortForward(Child);

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_request_goes_through_the_gateway_of_a_real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("SKIPPED: e2e needs a cluster; set KUBECONFIG (dgidgi installed with its chart)");
        return;
    }
    let namespace =
        std::env::var("DGIDGI_E2E_NAMESPACE").unwrap_or_else(|_| "dgidgi-system".to_owned());
    let root = env!("CARGO_MANIFEST_DIR");

    // The CRDs of this build, then the quickstart.
    let crds = Command::new(env!("CARGO_BIN_EXE_dgidgi"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(crds.status.success());
    kubectl_apply(&crds.stdout);
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/llmtenants.llm.dgidgi.io",
        "--timeout=60s",
    ]);
    kubectl(&["apply", "-f", &format!("{root}/examples/quickstart")]);

    // The operator renders; every tenant turns Ready.
    kubectl(&[
        "wait",
        "--for=condition=Ready",
        "llmt",
        "--all",
        "--all-namespaces",
        "--timeout=180s",
    ]);
    let tier = kubectl(&[
        "get",
        "llmt",
        "acme",
        "-n",
        "team-acme",
        "-o",
        "jsonpath={.status.tier}",
    ]);
    assert_eq!(tier, "pro");
    kubectl(&[
        "get",
        "configmap",
        "dgidgi-gateway-config",
        "-n",
        &namespace,
    ]);
    let key = kubectl(&[
        "get",
        "secret",
        "acme-llm-access-default",
        "-n",
        "team-acme",
        "-o",
        "jsonpath={.data.accessKey}",
    ]);
    let key = {
        use base64::Engine as _;
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .unwrap(),
        )
        .unwrap()
    };

    // Through a port-forwarded gateway.
    let mut child = Command::new("kubectl")
        .args([
            "port-forward",
            "-n",
            &namespace,
            "svc/dgidgi-gateway",
            ":8080",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward runs");
    let stdout = child.stdout.take().unwrap();
    let _forward = PortForward(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    // "Forwarding from 127.0.0.1:PORT -> 8080"
    let address = line
        .split_whitespace()
        .nth(2)
        .unwrap_or_else(|| panic!("unexpected port-forward output {line:?}"))
        .to_owned();
    let body = r#"{"model":"mock-fast","messages":[{"role":"user","content":"hello"}]}"#;
    let mut answer = String::new();
    for attempt in 0..30 {
        // The gateway may still be loading the config the operator just wrote.
        std::thread::sleep(Duration::from_secs(u64::from(attempt > 0)));
        let Ok(mut stream) = TcpStream::connect(&address) else {
            continue;
        };
        write!(
            stream,
            "POST /v1/chat/completions HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        answer.clear();
        let _ = stream.read_to_string(&mut answer);
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-dgidgi-source: platform"), "{answer}");
    assert!(answer.contains("\"usage\""), "{answer}");
}
