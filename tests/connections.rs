//! Issue #18, leak 11: connections cannot be held for nothing. A socket that never sends a byte,
//! an idle HTTP/1.1 keep-alive and an idle HTTP/2 connection are each closed after the header
//! timeout; a listener holds at most its `max_connections` (more are closed at once and
//! counted); the admin listener keeps answering while the API listener is full.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::gateway::{InProcess, MOCK_AND_ONE_TENANT};
use dgidgi::gateway::Settings;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

async fn gateway(header_timeout: Duration, max_connections: usize) -> InProcess {
    let settings = Settings {
        header_read_timeout: header_timeout,
        max_connections,
        ..Settings::default()
    };
    InProcess::start(MOCK_AND_ONE_TENANT, settings).await
}

/// Whether the server closes `stream` within `within` (reading until EOF or an error).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    let read_to_end = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_header_timeout() {
    let running = gateway(Duration::from_millis(300), 10_000).await.running;
    // Never a byte: closed (before, held forever: no timer while the protocol is detected).
    let mut silent = TcpStream::connect(running.api).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    // HTTP/1.1 keep-alive, idle after one answer.
    let mut keep_alive = TcpStream::connect(running.api).await.unwrap();
    keep_alive
        .write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut keep_alive, Duration::from_secs(5)).await);
    // HTTP/2 (prior knowledge), idle after one answer: the server says GOAWAY and the
    // connection ends.
    let stream = TcpStream::connect(running.api).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let ended = tokio::spawn(connection);
    let request = hyper::Request::get(format!("http://{}/v1/models", running.api))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 401);
    let _ = response.into_body().collect().await;
    let ended = tokio::time::timeout(Duration::from_secs(5), ended).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection stayed open");
    running.shutdown().await;
}

/// A request in flight keeps its connection, however long its answer takes to start: only a
/// connection with nothing in flight is idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_is_not_idle() {
    let running = gateway(Duration::from_millis(300), 10_000).await.running;
    let mut stream = TcpStream::connect(running.api).await.unwrap();
    // The body arrives slowly, within the body timeout but past the idle one.
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    stream.write_all(b"}").await.unwrap();
    let mut answer = vec![0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    running.shutdown().await;
}

async fn metric(admin: SocketAddr, name: &str) -> String {
    let (status, _, body) = common::http::send(admin, "GET", "/metrics", None, None)
        .await
        .expect("the admin listener answers");
    assert_eq!(status, 200);
    body.lines()
        .filter(|line| line.starts_with(name))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_refuses_more_and_admin_stays_reachable() {
    let running = gateway(Duration::from_secs(20), 3).await.running;
    // Three connections mid-request hold the API listener's three places.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(running.api).await.unwrap();
        stream.write_all(b"GET /v1/mod").await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A fourth is closed at once, not held.
    let mut fourth = TcpStream::connect(running.api).await.unwrap();
    assert!(closed_within(&mut fourth, Duration::from_secs(2)).await);
    // The admin listener has its own places.
    let (status, _, _) = common::http::send(running.admin, "GET", "/readyz", None, None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        metric(running.admin, "dgidgi_connections_refused_total").await,
        r#"dgidgi_connections_refused_total{listener="api"} 1"#
    );
    // A place freed is a place to use again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, _) = common::http::send(running.api, "GET", "/v1/models", None, None)
        .await
        .unwrap();
    assert_eq!(status, 401);
    running.shutdown().await;
}
