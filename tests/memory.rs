//! Issue #18, leak 9: memory before admission is bounded. Two 10 MiB bodies of `[[],[],…]` at
//! once (a width attack: millions of tiny JSON values) raise the gateway's peak RSS by at most
//! 64 MiB; before, parsing each into a generic JSON tree cost about 300 MiB, and two took the
//! gateway past the chart's 512 Mi limit. Measured on the real binary (its `VmHWM`).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::gateway::{MOCK_AND_ONE_TENANT, config_dir, free_port};
use common::http;

/// The peak resident memory of a process, in KiB (`VmHWM` in /proc).
fn peak_kib(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_body_does_not_take_the_gateways_memory() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("skipped: no /proc to read peak memory from");
        return;
    }
    let (output, dir) = config_dir(MOCK_AND_ONE_TENANT);
    let (api, admin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_dgidgi"))
        .args(["gateway", "--listen", &format!("127.0.0.1:{api}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--config-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gateway = Killed(child);
    let (api, admin): (SocketAddr, SocketAddr) = (
        format!("127.0.0.1:{api}").parse().unwrap(),
        format!("127.0.0.1:{admin}").parse().unwrap(),
    );
    let mut ready = false;
    for _ in 0..400 {
        if http::send(admin, "GET", "/readyz", None, None)
            .await
            .is_some_and(|(status, _, _)| status == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "the gateway did not become ready");
    let key = output.access_keys[0].value.to_string();
    // One request first, so what a served request allocates anyway is in the baseline.
    let small = r#"{"model": "mock/mock-fast", "messages": [{"role": "user", "content": "hi"}]}"#;
    let (status, _, body) = http::send(
        api,
        "POST",
        "/v1/chat/completions",
        Some(&key),
        Some(small.to_owned()),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let before = peak_kib(&gateway.0);
    let head = r#"{"model": "mock/mock-fast", "messages": ["#;
    let room = 10 * 1024 * 1024 - head.len() - 2;
    let wide = format!("{head}{}[]]}}", "[],".repeat(room / 3 - 1));
    assert!(wide.len() <= 10 * 1024 * 1024);
    let send = |body: String| {
        let key = key.clone();
        tokio::spawn(async move {
            http::send(api, "POST", "/v1/chat/completions", Some(&key), Some(body)).await
        })
    };
    let (first, second) = (send(wide.clone()), send(wide));
    let answers = [first.await.unwrap(), second.await.unwrap()];
    let grown_mib = peak_kib(&gateway.0).saturating_sub(before) / 1024;
    assert!(
        grown_mib <= 64,
        "two 10 MiB wide bodies raised the peak RSS by {grown_mib} MiB"
    );
    for answer in answers {
        let (status, _, body) = answer.expect("the gateway answers");
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("JSON values"), "{body}");
    }
}
