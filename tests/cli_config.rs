//! CLI mode: `dgidgi config set|get|list` and `dgidgi gateway` without `--config-dir`, serving
//! the local settings as one cli-source tenant in front of an Ollama-compatible endpoint.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::fake_providers;

fn dgidgi(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dgidgi"))
        .args(args)
        .env("DGIDGI_CONFIG_HOME", home)
        .output()
        .unwrap()
}

#[test]
fn settings_are_validated_stored_and_listed() {
    let home = tempfile::tempdir().unwrap();
    let list = dgidgi(home.path(), &["config", "list"]);
    let text = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(text.contains("llm.source = cli (default)"), "{text}");
    assert!(
        text.contains("llm.endpoint = http://localhost:11434 (default)"),
        "{text}"
    );
    for (key, value) in [
        ("llm.source", "cli"),
        ("llm.endpoint", "http://127.0.0.1:11434"),
        ("llm.model", "qwen2.5"),
    ] {
        assert!(
            dgidgi(home.path(), &["config", "set", key, value])
                .status
                .success()
        );
        let got = dgidgi(home.path(), &["config", "get", key]);
        assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), value);
    }
    for (key, value, message) in [
        ("llm.source", "cloud", "cli, platform or tenant"),
        ("llm.endpoint", "localhost:11434", "http or https URL"),
        ("llm.endpoint", "http://user:sk-secret@host", "credentials"),
        ("llm.model", " ", "must not be empty"),
        ("llm.colour", "blue", "unknown setting"),
    ] {
        let out = dgidgi(home.path(), &["config", "set", key, value]);
        assert!(!out.status.success(), "{key}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{stderr}");
        assert!(!stderr.contains("sk-secret"), "{stderr}");
    }
    assert_eq!(
        String::from_utf8_lossy(&dgidgi(home.path(), &["config", "get", "llm.model"]).stdout)
            .trim(),
        "qwen2.5",
        "refused values change nothing"
    );
}

#[test]
fn the_gateway_without_a_config_dir_serves_the_local_endpoint() {
    // An Ollama-compatible endpoint (no key): the shared fake upstream, on a runtime of its own.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let upstream = runtime.block_on(fake_providers::start_with(fake_providers::Answers {
        text: Some("local!"),
        keys: &[],
        keyless: true,
        ..fake_providers::Answers::default()
    }));
    let endpoint = format!("http://{}", upstream.address);
    let home = tempfile::tempdir().unwrap();
    assert!(
        dgidgi(home.path(), &["config", "set", "llm.endpoint", &endpoint])
            .status
            .success()
    );
    assert!(
        dgidgi(home.path(), &["config", "set", "llm.model", "qwen2.5"])
            .status
            .success()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_dgidgi"))
        .args([
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("DGIDGI_CONFIG_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let address = first
        .split("http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let key = lines
        .next()
        .unwrap()
        .unwrap()
        .trim_start_matches("access key: ")
        .to_owned();
    std::thread::spawn(move || lines.for_each(drop));

    let body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-dgidgi-source: cli"), "{answer}");
    assert!(answer.contains("local!"), "{answer}");
    let seen = upstream.log.lock().unwrap().clone();
    let request = &seen[0];
    assert!(request.path == "/v1/chat/completions", "{request:?}");
    assert!(request.body["model"] == "qwen2.5", "{request:?}");
}
