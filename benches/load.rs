//! End-to-end load benchmark: the release gateway against a fast local fake OpenAI upstream,
//! driven by `oha`, compared with calling the upstream directly. One command:
//!
//! ```sh
//! cargo bench --bench load            # full run (~3 min)
//! LOAD_QUICK=1 cargo bench --bench load
//! ```
//!
//! Scenarios: `floor` (a minimal hyper 1 reverse proxy in this file: a key comparison and the
//! request and answer streamed through, no JSON, routing or metering — what any proxy costs on
//! this machine, the floor the others are read against), `bare` (a tenant without limits, no ledger), `metered` (RPM, tokens/day,
//! concurrency and a blocking budget, the SQLite ledger on), `redis` (the same with the counters
//! in a real `redis-server`, when one is installed) and `10k-tenants` (the bare proxy with 10,000
//! tenants loaded, for memory), `100k-reload` (the bare proxy with 100,000 tenants in 64 shards:
//! JSON at concurrency 16 measured steady, then again while the config directory flips between
//! two renders every second, so the gateway reloads 100,000 tenants under load; its p99 against
//! the steady one), `traced`, `traced-1pct` and `traced-down` (bare with OTLP traces:
//! every request, 1 %, and every request toward a collector that is down). For each: non-streaming at concurrency 1, 16, 64 and streaming
//! at 1 and 16, reporting requests/s, p50/p99, what the gateway adds to the direct call's
//! p50/p99 (time to first byte for streams) and the gateway's peak RSS.
//!
//! With two or more CPUs and `taskset` installed, the gateway is pinned to CPU 0 and this
//! process (the fake upstream) and `oha` to CPU 1, so the gateway gets exactly one core of its
//! own (`LOAD_NO_PIN=1` turns that off). `LOAD_SCENARIOS=bare,metered` runs only the named
//! scenarios (the direct baseline always runs); `LOAD_BODY=agent` sends a coding agent's size of
//! request (about 20 KB of history and tool schemas) instead of two short messages. The report
//! is printed and written to
//! `target/load-bench/report.md`. Needs `oha` on `PATH` (`cargo install oha`).

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[path = "../tests/common/redis.rs"]
#[allow(
    dead_code,
    reason = "the tests' helper; the benchmark only starts and drops"
)]
mod redis;
use redis::RedisServer;

const UPSTREAM_KEY: &str = "sk-load-upstream-0123456789";
/// The tenant's access key, as `benches/fixtures/load-fleet.yaml` declares it.
const ACCESS_KEY: &str = "dgk_load_0123456789abcdef0123456789";
/// Content chunks of a streamed answer (= completion tokens), as the shared harness's default.
const CHUNKS: usize = 16;

/// The environment variable under which this binary runs as the floor proxy (see
/// [`floor_proxy`]): `<upstream address> <port> [<upstream key>]` (the key defaults to this
/// benchmark's upstream's; `benches/harness-target.sh floor` passes the shared harness's).
const FLOOR_PROXY_ENV: &str = "DGIDGI_LOAD_FLOOR_PROXY";

fn main() {
    if let Ok(spec) = std::env::var(FLOOR_PROXY_ENV) {
        floor_proxy(&spec);
        return;
    }
    if Command::new("oha").arg("--version").output().is_err() {
        eprintln!("load: SKIPPED — `oha` is not on PATH (cargo install oha --version 1.16.0)");
        return;
    }
    let options = Options::from_env();
    for unknown in options.unknown_scenarios() {
        eprintln!(
            "load: LOAD_SCENARIOS names no scenario {unknown:?} (floor, bare, metered, redis, 10k-tenants, 100k-reload, traced, traced-1pct, traced-down)"
        );
    }
    let pinned = options.pin && pin_self_to_cpu1();
    let upstream = start_upstream();
    let work = tempfile::tempdir().expect("temporary directory");
    let bodies = Bodies::write(work.path());
    let mut report = Report::new(pinned, &options);

    let direct = format!("http://{upstream}/v1/chat/completions");
    let measure_direct = |report: &mut Report, name: &str| {
        report.measure_all(
            name,
            &options,
            &bodies,
            &direct,
            UPSTREAM_KEY,
            None,
            Scenario::Direct,
        )
    };
    let direct_runs = measure_direct(&mut report, "direct");
    let mut floor_runs = None;

    for scenario in Scenario::MEASURED {
        if !options.selects(scenario) {
            continue;
        }
        let Some(mut gateway) = Gateway::start(scenario, upstream, work.path(), pinned) else {
            report.note(format!(
                "{}: skipped (redis-server is not installed)",
                scenario.name()
            ));
            continue;
        };
        // Let start-up's temporary allocations be returned before reading the idle size.
        std::thread::sleep(Duration::from_secs(2));
        let render = if scenario == Scenario::Floor {
            String::new()
        } else {
            format!("render {:.0} ms, ", gateway.render_ms)
        };
        report.note(format!(
            "{}: {render}RSS idle {} MiB",
            scenario.name(),
            gateway.rss_kib() / 1024
        ));
        let url = format!("http://{}/v1/chat/completions", gateway.address);
        if scenario == Scenario::Reload {
            report.measure_reloads(&options, &bodies, &url, &gateway);
            gateway.stop();
            continue;
        }
        let runs = report.measure_all(
            scenario.name(),
            &options,
            &bodies,
            &url,
            ACCESS_KEY,
            Some(&gateway),
            scenario,
        );
        report.added(scenario.name(), "direct", &direct_runs, &runs);
        if scenario == Scenario::Floor {
            floor_runs = Some(runs);
        } else if let Some(floor) = &floor_runs {
            report.added(scenario.name(), "the floor proxy", floor, &runs);
        }
        gateway.stop();
    }
    let direct_end = measure_direct(&mut report, "direct-end");
    report.added("direct-end", "direct", &direct_runs, &direct_end);
    report.finish();
}

/// Settings from the environment (cargo bench passes its own flags to the binary).
struct Options {
    requests: usize,
    stream_requests: usize,
    warmup: usize,
    pin: bool,
    /// The scenarios `LOAD_SCENARIOS` names (`None`: all of them).
    only: Option<Vec<String>>,
}

impl Options {
    fn from_env() -> Self {
        let quick = std::env::var_os("LOAD_QUICK").is_some();
        Options {
            requests: if quick { 2_000 } else { 10_000 },
            stream_requests: if quick { 500 } else { 3_000 },
            warmup: if quick { 300 } else { 1_000 },
            pin: std::env::var_os("LOAD_NO_PIN").is_none(),
            only: std::env::var("LOAD_SCENARIOS").ok().map(|names| {
                names
                    .split(',')
                    .map(|name| name.trim().to_owned())
                    .collect()
            }),
        }
    }

    /// Names in `LOAD_SCENARIOS` that match no scenario (a typo would silently measure nothing).
    fn unknown_scenarios(&self) -> Vec<&str> {
        let known = Scenario::MEASURED.map(Scenario::name);
        self.only
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|name| !known.contains(name))
            .collect()
    }

    fn selects(&self, scenario: Scenario) -> bool {
        self.only
            .as_ref()
            .is_none_or(|names| names.iter().any(|name| name == scenario.name()))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Direct,
    Floor,
    Bare,
    Metered,
    Redis,
    TenThousand,
    /// `bare` with 100,000 tenants, measured while the gateway reloads them.
    Reload,
    /// `bare` with every request traced (OTLP export to a sink on the upstream's core).
    Traced,
    /// `bare` with 1 % of requests traced.
    TracedSampled,
    /// `bare` with every request traced toward a collector that is down (a closed port): the
    /// memory the export queue may take, and what failing exports cost.
    TracedCollectorDown,
}

impl Scenario {
    /// The scenarios measured against the direct baseline, in order (the floor first: the
    /// others are also read against it).
    const MEASURED: [Scenario; 9] = [
        Scenario::Floor,
        Scenario::Bare,
        Scenario::Metered,
        Scenario::Redis,
        Scenario::TenThousand,
        Scenario::Reload,
        Scenario::Traced,
        Scenario::TracedSampled,
        Scenario::TracedCollectorDown,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Direct => "direct",
            Scenario::Floor => "floor",
            Scenario::Bare => "bare",
            Scenario::Metered => "metered",
            Scenario::Redis => "redis",
            Scenario::TenThousand => "10k-tenants",
            Scenario::Reload => "100k-reload",
            Scenario::Traced => "traced",
            Scenario::TracedSampled => "traced-1pct",
            Scenario::TracedCollectorDown => "traced-down",
        }
    }
}

/// Pins this process (the fake upstream's threads, and the `oha` it starts) to CPU 1.
fn pin_self_to_cpu1() -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return false;
    }
    Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

// ------------------------------------------------------------------ the fake upstream

/// Starts the fake OpenAI upstream on its own thread (one Tokio worker) and returns its address.
fn start_upstream() -> SocketAddr {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            sender.send(listener.local_addr().expect("address")).ok();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                stream.set_nodelay(true).ok();
                tokio::spawn(async move {
                    http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(answer))
                        .await
                        .ok();
                });
            }
        });
    });
    receiver.recv().expect("upstream address")
}

/// Answers `POST /v1/chat/completions` as OpenAI does: a `chat.completion` with `usage`, or
/// `chat.completion.chunk` events, a usage chunk when `stream_options.include_usage` asks for
/// it, and `data: [DONE]`.
async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    if request.uri().path() == "/v1/traces" {
        // The traced scenarios' collector: the spans are read and dropped.
        request.into_body().collect().await?;
        return Ok(respond(
            StatusCode::OK,
            "application/x-protobuf",
            String::new(),
        ));
    }
    let authorized = request
        .headers()
        .get("authorization")
        .is_some_and(|value| value.as_bytes() == format!("Bearer {UPSTREAM_KEY}").as_bytes());
    let body = request.into_body().collect().await?.to_bytes();
    if !authorized {
        return Ok(respond(
            StatusCode::UNAUTHORIZED,
            "application/json",
            r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#.into(),
        ));
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = json["model"].as_str().unwrap_or("gpt-4o-mini");
    let prompt_tokens = 3 + json["messages"].as_array().map_or(0, |messages| {
        messages
            .iter()
            .map(|m| 4 + m["content"].as_str().map_or(0, |c| c.len().div_ceil(4)))
            .sum()
    });
    let usage = format!(
        r#"{{"prompt_tokens":{prompt_tokens},"completion_tokens":{CHUNKS},"total_tokens":{}}}"#,
        prompt_tokens + CHUNKS
    );
    if json["stream"].as_bool() != Some(true) {
        let text = "Hello from the fake upstream. ".repeat(CHUNKS / 4);
        return Ok(respond(
            StatusCode::OK,
            "application/json",
            format!(
                r#"{{"id":"chatcmpl-load","object":"chat.completion","created":1764000000,"model":"{model}","choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}","refusal":null}},"logprobs":null,"finish_reason":"stop"}}],"usage":{usage},"system_fingerprint":"fp_load"}}"#
            ),
        ));
    }
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-load\",\"object\":\"chat.completion.chunk\",\"created\":1764000000,\"model\":\"{model}\",\"system_fingerprint\":\"fp_load\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let mut events = chunk(r#"{"role":"assistant","content":""}"#, "null");
    for i in 0..CHUNKS {
        events.push_str(&chunk(&format!(r#"{{"content":"tok{i} "}}"#), "null"));
    }
    events.push_str(&chunk("{}", "\"stop\""));
    if json["stream_options"]["include_usage"].as_bool() == Some(true) {
        let _ = write!(
            events,
            "data: {{\"id\":\"chatcmpl-load\",\"object\":\"chat.completion.chunk\",\"created\":1764000000,\"model\":\"{model}\",\"choices\":[],\"usage\":{usage}}}\n\n"
        );
    }
    events.push_str("data: [DONE]\n\n");
    Ok(respond(StatusCode::OK, "text/event-stream", events))
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        content_type.parse().expect("content type header"),
    );
    response
}

// ------------------------------------------------------------------ the floor proxy

/// The least a reverse proxy can do on this path, with the gateway's own stack (hyper 1 on a
/// multi-threaded Tokio runtime, one worker when pinned): compare the client's key, swap in the
/// upstream's, and stream the request and the answer through on one upstream connection per
/// client connection. Its added latency is what the machine (two more loopback sockets, two more
/// wake-ups per request) charges any proxy; the gateway's own cost is what it adds beyond it.
fn floor_proxy(spec: &str) {
    let mut fields = spec.split_whitespace();
    let usage = "`<upstream> <port> [<upstream key>]`";
    let upstream: SocketAddr = fields
        .next()
        .expect(usage)
        .parse()
        .expect("upstream address");
    let port: u16 = fields.next().expect(usage).parse().expect("port");
    let upstream_auth: hyper::header::HeaderValue =
        format!("Bearer {}", fields.next().unwrap_or(UPSTREAM_KEY))
            .parse()
            .expect("upstream key");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            client.set_nodelay(true).ok();
            let upstream_auth = upstream_auth.clone();
            tokio::spawn(async move {
                let Ok(stream) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                stream.set_nodelay(true).ok();
                let Ok((sender, connection)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                else {
                    return;
                };
                tokio::spawn(connection);
                let sender = std::sync::Arc::new(tokio::sync::Mutex::new(sender));
                let service = service_fn(move |request| {
                    forward(sender.clone(), upstream_auth.clone(), request)
                });
                http1::Builder::new()
                    .serve_connection(TokioIo::new(client), service)
                    .await
                    .ok();
            });
        }
    });
}

type FloorBody = http_body_util::Either<Incoming, Full<Bytes>>;

async fn forward(
    sender: std::sync::Arc<tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Incoming>>>,
    upstream_auth: hyper::header::HeaderValue,
    mut request: Request<Incoming>,
) -> Result<Response<FloorBody>, hyper::Error> {
    let authorized = request
        .headers()
        .get("authorization")
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|key| key == ACCESS_KEY.as_bytes());
    if !authorized {
        let mut response = Response::new(FloorBody::Right(Full::new(Bytes::from_static(
            br#"{"error":{"message":"unknown key"}}"#,
        ))));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(response);
    }
    request
        .headers_mut()
        .insert(hyper::header::AUTHORIZATION, upstream_auth);
    let mut sender = sender.lock().await;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    Ok(response.map(FloorBody::Left))
}

// ------------------------------------------------------------------ the gateway under test

/// One gateway process (and its Redis, for the Redis scenario).
struct Gateway {
    child: Child,
    /// Stopped when dropped.
    redis: Option<RedisServer>,
    address: SocketAddr,
    render_ms: f64,
    /// `100k-reload`: the link the gateway's `--config-dir` names, to flip between renders.
    reload_link: Option<PathBuf>,
    /// The gateway's admin port (its `/metrics`).
    admin_port: Option<u16>,
}

impl Gateway {
    /// Renders the scenario's config with `dgidgi render` and starts `dgidgi gateway` on it;
    /// `None` when the scenario needs a program this machine does not have.
    fn start(
        scenario: Scenario,
        upstream: SocketAddr,
        work: &Path,
        pinned: bool,
    ) -> Option<Gateway> {
        if scenario == Scenario::Floor {
            return Some(Self::start_floor(upstream, pinned));
        }
        let dir = work.join(scenario.name());
        std::fs::create_dir_all(&dir).expect("scenario directory");
        let mut redis = None;
        let mut extra: Vec<String> = Vec::new();
        if matches!(scenario, Scenario::Metered | Scenario::Redis) {
            extra.extend([
                "--state-dir".into(),
                dir.join("state").display().to_string(),
            ]);
        }
        if scenario == Scenario::Redis {
            if !redis_installed() {
                return None;
            }
            let server = RedisServer::start();
            extra.extend(["--redis-url".into(), server.url()]);
            redis = Some(server);
        }
        let inputs = dir.join("inputs.yaml");
        let yaml = fleet_yaml(scenario, upstream);
        std::fs::write(&inputs, &yaml).expect("inputs");
        let binary = env!("CARGO_BIN_EXE_dgidgi");
        let mut config = dir.join("config");
        let shards = if scenario == Scenario::Reload { 64 } else { 1 };
        let started = Instant::now();
        render_config(&inputs, &config, shards, None);
        let render_ms = started.elapsed().as_secs_f64() * 1e3;
        if scenario == Scenario::Reload {
            // A second render with one more tenant (the first's directory given back, so every
            // key is kept): flipping `current` between the two makes the gateway reload.
            let more = dir.join("inputs-more.yaml");
            std::fs::write(
                &more,
                format!("{yaml}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: one-more}}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: one-more, namespace: one-more}}\nspec: {{}}\n"),
            )
            .expect("inputs");
            render_config(&more, &dir.join("config-b"), shards, Some(&config));
            let current = dir.join("current");
            std::os::unix::fs::symlink("config", &current).expect("symlink");
            config = current;
        }
        let reload_link = (scenario == Scenario::Reload).then(|| config.clone());

        let port = free_port();
        let admin_port = free_port();
        let mut command = on_gateway_cpu(Path::new(binary), pinned);
        if matches!(
            scenario,
            Scenario::Traced | Scenario::TracedSampled | Scenario::TracedCollectorDown
        ) {
            // The fake upstream takes the OTLP posts too (answered 200, read and dropped); the
            // collector that is down is a port nobody listens on.
            let collector = if scenario == Scenario::TracedCollectorDown {
                format!("http://127.0.0.1:{}", free_port())
            } else {
                format!("http://{upstream}")
            };
            command
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector)
                .env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
                .env(
                    "OTEL_TRACES_SAMPLER_ARG",
                    if scenario == Scenario::TracedSampled {
                        "0.01"
                    } else {
                        "1.0"
                    },
                );
        }
        command
            .arg("gateway")
            .arg("--config-dir")
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
            .args(["--log", "warn"])
            .args(&extra);
        let mut gateway = Self::launch(command, port, redis, render_ms);
        gateway.reload_link = reload_link;
        gateway.admin_port = Some(admin_port);
        Some(gateway)
    }

    /// Starts this binary as the floor proxy, pinned like the gateway.
    fn start_floor(upstream: SocketAddr, pinned: bool) -> Gateway {
        let binary = std::env::current_exe().expect("the benchmark's own path");
        let port = free_port();
        let mut command = on_gateway_cpu(&binary, pinned);
        command.env(FLOOR_PROXY_ENV, format!("{upstream} {port}"));
        Self::launch(command, port, None, 0.0)
    }

    /// Starts `command` (a proxy that will listen on `port`), waits for it and checks it serves.
    fn launch(
        mut command: Command,
        port: u16,
        redis: Option<RedisServer>,
        render_ms: f64,
    ) -> Gateway {
        let child = command
            .stdout(Stdio::null())
            .spawn()
            .expect("the proxy under test starts");
        wait_for_port(port);
        let gateway = Gateway {
            child,
            redis,
            address: format!("127.0.0.1:{port}").parse().expect("address"),
            render_ms,
            reload_link: None,
            admin_port: None,
        };
        gateway.preflight();
        gateway
    }

    /// A non-streaming and a streamed request must come back with the upstream's answer and
    /// usage, and a wrong key must be refused: the load numbers are only worth something if
    /// every request was really served.
    fn preflight(&self) {
        let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
        let (status, text) = post(self.address, ACCESS_KEY, body);
        assert_eq!(status, 200, "preflight: {text}");
        assert!(text.contains("Hello from the fake upstream") && text.contains("\"usage\""));
        let stream =
            r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let (status, text) = post(self.address, ACCESS_KEY, stream);
        assert_eq!(status, 200, "preflight stream: {text}");
        assert!(text.contains("tok15") && text.contains("data: [DONE]"));
        let (status, _) = post(self.address, "dgk_wrong_key", body);
        assert_eq!(status, 401, "a wrong key must be refused");
    }

    /// Reloads the gateway has made (`dgidgi_config_reloads_total{result="ok"}`).
    fn reloads(&self) -> u64 {
        let Some(port) = self.admin_port else {
            return 0;
        };
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return 0;
        };
        let request = "GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
        let mut text = String::new();
        if stream.write_all(request.as_bytes()).is_err()
            || stream.read_to_string(&mut text).is_err()
        {
            return 0;
        }
        text.lines()
            .find(|line| line.starts_with("dgidgi_config_reloads_total{result=\"ok\"}"))
            .and_then(|line| line.split_whitespace().last()?.parse().ok())
            .unwrap_or(0)
    }

    fn rss_kib(&self) -> u64 {
        // Under taskset the child is taskset itself until it execs: same PID.
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    }

    /// CPU time the gateway has used so far (user + system), in clock ticks (1/100 s).
    fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which is in parentheses): state is the 3rd field,
        // utime the 14th and stime the 15th.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
        field(14).unwrap_or(0) + field(15).unwrap_or(0)
    }

    fn stop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        self.redis = None;
    }
}

/// The tenant spec of `bare` (its own key: no platform limits, no budget) and of the metered
/// scenarios (every limit and a blocking budget); the harness target script uses the same two.
const BARE_TENANT: &str =
    "{source: tenant, providers: [{name: own}], allowPlatformFallback: false}";
const METERED_TENANT: &str =
    "{budget: {monthlyUsd: 100000000, alertThresholds: [50, 80, 100], action: block}}";

/// The scenario's inputs: `benches/fixtures/load-fleet.yaml` with the scenario's tenant, and for
/// `10k-tenants` 9,999 more platform tenants.
fn fleet_yaml(scenario: Scenario, upstream: SocketAddr) -> String {
    let tenant = match scenario {
        Scenario::Metered | Scenario::Redis => METERED_TENANT,
        _ => BARE_TENANT,
    };
    let mut yaml = include_str!("fixtures/load-fleet.yaml")
        .replace("@UPSTREAM_KEY@", UPSTREAM_KEY)
        .replace("@UPSTREAM_BASE@", &format!("http://{upstream}/v1"))
        .replace("@TENANT@", tenant);
    let more = match scenario {
        Scenario::TenThousand => 10_000,
        Scenario::Reload => 100_000,
        _ => 0,
    };
    if more > 0 {
        for i in 1..more {
            let _ = write!(
                yaml,
                "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: t{i}, labels: {{llm.dgidgi.io/tier: team}}}}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: t{i}, namespace: t{i}}}\nspec: {{budget: {{monthlyUsd: 100, alertThresholds: [80, 100], action: block}}}}\n"
            );
        }
    }
    yaml
}

/// `dgidgi render` of `inputs` into `config` in `shards` shards (`previous`: an earlier
/// directory whose keys are kept).
fn render_config(inputs: &Path, config: &Path, shards: u32, previous: Option<&Path>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dgidgi"));
    command
        .args(["render", "-f"])
        .arg(inputs)
        .arg("--config-dir")
        .arg(config)
        .arg(format!("--shards={shards}"))
        .args(["--log", "warn"]);
    if let Some(previous) = previous {
        // Its key material and access keys, so both directories accept the same key.
        for file in std::fs::read_dir(previous).expect("the first render") {
            let file = file.expect("a file").path();
            let name = file.file_name().expect("a name").to_owned();
            std::fs::create_dir_all(config).expect("directory");
            std::fs::copy(&file, config.join(name)).expect("copy");
        }
    }
    let status = command.status().expect("dgidgi render");
    assert!(status.success(), "dgidgi render failed");
}

/// `program` on CPU 0 (the gateway's core) when pinning, as is otherwise.
fn on_gateway_cpu(program: &Path, pinned: bool) -> Command {
    if pinned {
        let mut command = Command::new("taskset");
        command.args(["-c", "0"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn redis_installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request over a fresh connection (`Connection: close`): status and body text.
fn post(address: SocketAddr, key: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}

// ------------------------------------------------------------------ driving oha

struct Bodies {
    json: PathBuf,
    stream: PathBuf,
}

impl Bodies {
    /// The request bodies: two short messages, or with `LOAD_BODY=agent` a coding agent's size
    /// of request (about 20 KB: a long system prompt, six turns of history, eight tools with
    /// JSON Schemas), where what the gateway does with the body it only forwards shows.
    fn write(dir: &Path) -> Bodies {
        let agent = std::env::var("LOAD_BODY").is_ok_and(|body| body == "agent");
        let (messages, tools) = if agent {
            agent_sized()
        } else {
            let short = r#"[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello in one short sentence."}]"#;
            (short.to_owned(), String::new())
        };
        let json = dir.join("body.json");
        let stream = dir.join("body-stream.json");
        std::fs::write(
            &json,
            format!(r#"{{"model":"gpt-4o-mini","messages":{messages}{tools}}}"#),
        )
        .expect("body");
        std::fs::write(
            &stream,
            format!(
                r#"{{"model":"gpt-4o-mini","messages":{messages}{tools},"stream":true,"stream_options":{{"include_usage":true}}}}"#
            ),
        )
        .expect("body");
        Bodies { json, stream }
    }
}

/// The messages and the `,"tools":[…]` of an agent-sized request, the same on every run.
fn agent_sized() -> (String, String) {
    const WORDS: [&str; 12] = [
        "the", "function", "returns", "an", "error", "when", "the", "file", "path", "is", "empty;",
        "build",
    ];
    let text = |words: usize, seed: usize| -> String {
        (0..words)
            .map(|i| WORDS[(i * 7 + seed) % WORDS.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut messages = vec![serde_json::json!({"role": "system", "content": text(900, 1)})];
    for turn in 0..6 {
        messages.push(serde_json::json!({"role": "user", "content": text(120, turn)}));
        messages.push(serde_json::json!({"role": "assistant", "content": text(150, turn + 3)}));
    }
    messages
        .push(serde_json::json!({"role": "user", "content": "Say hello in one short sentence."}));
    let tools: Vec<Value> = (0..8)
        .map(|tool| {
            let properties: serde_json::Map<String, Value> = (0..4)
                .map(|arg| {
                    let schema =
                        serde_json::json!({"type": "string", "description": text(12, arg)});
                    (format!("arg{arg}"), schema)
                })
                .collect();
            serde_json::json!({"type": "function", "function": {
                "name": format!("tool_{tool}"),
                "description": text(40, tool),
                "parameters": {"type": "object", "properties": properties, "required": ["arg0"]},
            }})
        })
        .collect();
    (
        Value::Array(messages).to_string(),
        format!(r#","tools":{}"#, Value::Array(tools)),
    )
}

/// One oha run's numbers.
#[derive(Clone, Copy, Default)]
struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    ttfb_p50_us: f64,
    ttfb_p99_us: f64,
    errors: u64,
    rss_kib: u64,
    /// The gateway's CPU time per request (user + system): the cost it controls, apart from
    /// the wake-ups between processes that loopback latency also holds.
    cpu_us_per_request: f64,
}

const SHAPES: [(bool, usize); 5] = [(false, 1), (false, 16), (false, 64), (true, 1), (true, 16)];

/// How long an oha run lasts.
#[derive(Clone, Copy)]
enum Limit {
    /// This many requests.
    Requests(usize),
    /// This many seconds.
    Seconds(u64),
}

fn oha(url: &str, key: &str, body: &Path, limit: Limit, concurrency: usize) -> Value {
    let limit = match limit {
        Limit::Requests(requests) => ["-n".to_owned(), requests.to_string()],
        Limit::Seconds(seconds) => ["-z".to_owned(), format!("{seconds}s")],
    };
    let output = Command::new("oha")
        .args([
            "--no-tui",
            "--output-format",
            "json",
            "--worker-threads",
            "1",
        ])
        .args(limit)
        .args(["-c", &concurrency.to_string()])
        .args(["-m", "POST", "-T", "application/json", "-t", "60s"])
        .args(["-H", &format!("authorization: Bearer {key}")])
        .arg("-D")
        .arg(body)
        .arg(url)
        .stderr(Stdio::inherit())
        .output()
        .expect("oha");
    assert!(output.status.success(), "oha failed");
    serde_json::from_slice(&output.stdout).expect("oha's JSON output")
}

fn micros(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN) * 1e6
}

struct Report {
    text: String,
    notes: Vec<String>,
}

impl Report {
    fn new(pinned: bool, options: &Options) -> Report {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# dgidgi load benchmark\n\n{} requests per JSON row, {} per SSE row, {} warm-up; {}.\nupstream: in-process fake OpenAI (0 ms, {CHUNKS} chunks per stream); load: oha 1 worker thread.\n",
            options.requests,
            options.stream_requests,
            options.warmup,
            if pinned {
                "gateway pinned to CPU 0, oha + fake upstream to CPU 1"
            } else {
                "not pinned (everything shares every CPU)"
            }
        );
        let _ = writeln!(
            text,
            "| target | mode | c | RPS | p50 | p99 | TTFB p50 | TTFB p99 | errors | RSS | CPU/request |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        Report {
            text,
            notes: Vec::new(),
        }
    }

    fn note(&mut self, note: String) {
        eprintln!("load: {note}");
        self.notes.push(note);
    }

    #[allow(clippy::too_many_arguments)]
    fn measure_all(
        &mut self,
        name: &str,
        options: &Options,
        bodies: &Bodies,
        url: &str,
        key: &str,
        gateway: Option<&Gateway>,
        scenario: Scenario,
    ) -> Vec<Run> {
        // Warm-up: connections, allocator, caches; not recorded.
        oha(url, key, &bodies.json, Limit::Requests(options.warmup), 8);
        oha(
            url,
            key,
            &bodies.stream,
            Limit::Requests(options.warmup / 4),
            4,
        );
        let shapes: &[(bool, usize)] = if scenario == Scenario::TenThousand {
            &SHAPES[..3]
        } else {
            &SHAPES
        };
        let mut runs = Vec::new();
        for &(stream, concurrency) in shapes {
            let (body, requests) = if stream {
                (&bodies.stream, options.stream_requests)
            } else {
                (&bodies.json, options.requests)
            };
            let cpu_before = gateway.map_or(0, Gateway::cpu_ticks);
            let out = oha(url, key, body, Limit::Requests(requests), concurrency);
            let cpu_ticks = gateway.map_or(0, Gateway::cpu_ticks) - cpu_before;
            let summary = &out["summary"];
            let total = requests as u64;
            let ok = out["statusCodeDistribution"]["200"].as_u64().unwrap_or(0);
            let run = Run {
                rps: summary["requestsPerSec"].as_f64().unwrap_or(0.0),
                p50_us: micros(&out["latencyPercentiles"]["p50"]),
                p99_us: micros(&out["latencyPercentiles"]["p99"]),
                ttfb_p50_us: micros(&out["firstBytePercentiles"]["p50"]),
                ttfb_p99_us: micros(&out["firstBytePercentiles"]["p99"]),
                errors: total.saturating_sub(ok),
                rss_kib: gateway.map_or(0, Gateway::rss_kib),
                // One tick is 10 ms.
                cpu_us_per_request: cpu_ticks as f64 * 10_000.0 / requests as f64,
            };
            let _ = writeln!(
                self.text,
                "| {name} | {} | {concurrency} | {:.0} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {} | {} | {} |",
                if stream { "SSE" } else { "JSON" },
                run.rps,
                run.p50_us,
                run.p99_us,
                run.ttfb_p50_us,
                run.ttfb_p99_us,
                run.errors,
                if run.rss_kib > 0 {
                    format!("{:.1} MiB", run.rss_kib as f64 / 1024.0)
                } else {
                    "–".into()
                },
                if gateway.is_some() {
                    format!("{:.0} µs", run.cpu_us_per_request)
                } else {
                    "–".into()
                }
            );
            eprintln!("{}", self.text.lines().last().unwrap_or_default());
            assert_eq!(
                run.errors, 0,
                "{name}: {} of {requests} requests were not answered 200: {}",
                run.errors, out["statusCodeDistribution"]
            );
            runs.push(run);
        }
        runs
    }

    /// JSON at concurrency 16, steady and then while `current` flips between the two renders
    /// every second (the gateway polls every second: about one reload of 100,000 tenants a
    /// second); notes both p99s and their ratio.
    fn measure_reloads(
        &mut self,
        options: &Options,
        bodies: &Bodies,
        url: &str,
        gateway: &Gateway,
    ) {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        oha(
            url,
            ACCESS_KEY,
            &bodies.json,
            Limit::Requests(options.warmup),
            8,
        );
        // For a time, not a count: long enough for about ten reloads.
        let seconds = if options.requests < 10_000 { 5 } else { 10 };
        let run = |report: &mut Report, name: &str| {
            let out = oha(url, ACCESS_KEY, &bodies.json, Limit::Seconds(seconds), 16);
            // Requests cut by the deadline are oha's, not the gateway's; any other status is.
            let statuses = out["statusCodeDistribution"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let failed: u64 = statuses
                .iter()
                .filter(|(status, _)| status.as_str() != "200")
                .map(|(_, count)| count.as_u64().unwrap_or(0))
                .sum();
            let (p50, p99) = (
                micros(&out["latencyPercentiles"]["p50"]),
                micros(&out["latencyPercentiles"]["p99"]),
            );
            let rps = out["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0);
            let _ = writeln!(
                report.text,
                "| {name} | JSON | 16 | {rps:.0} | {p50:.0} µs | {p99:.0} µs | – | – | {failed} | {:.1} MiB | – |",
                gateway.rss_kib() as f64 / 1024.0
            );
            eprintln!("{}", report.text.lines().last().unwrap_or_default());
            assert_eq!(
                failed, 0,
                "{name}: every request answered 200: {statuses:?}"
            );
            p99
        };
        let steady = run(self, "100k-reload (steady)");
        let reloads_before = gateway.reloads();
        let stop = Arc::new(AtomicBool::new(false));
        let flips = Arc::new(AtomicUsize::new(0));
        let link = gateway
            .reload_link
            .clone()
            .expect("the scenario's config link");
        let flipper = {
            let (stop, flips) = (stop.clone(), flips.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_secs(1));
                    let next = if flips.load(Ordering::Relaxed) % 2 == 0 {
                        "config-b"
                    } else {
                        "config"
                    };
                    // A new link renamed over the old one: the swap is atomic, as the kubelet's.
                    let staged = link.with_extension("next");
                    std::fs::remove_file(&staged).ok();
                    std::os::unix::fs::symlink(next, &staged).expect("symlink");
                    std::fs::rename(&staged, &link).expect("rename");
                    flips.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let reloading = run(self, "100k-reload (reloading)");
        stop.store(true, Ordering::Relaxed);
        flipper.join().ok();
        // The last flip's reload may still be running: wait for it to count.
        std::thread::sleep(Duration::from_secs(2));
        self.note(format!(
            "100k-reload: JSON c=16 p99 {steady:.0} µs steady, {reloading:.0} µs while the config flipped {} times ({:.2}× steady); {} reloads of 100,000 tenants done",
            flips.load(Ordering::Relaxed),
            reloading / steady,
            gateway.reloads() - reloads_before
        ));
    }

    /// Notes what `runs` add to the `baseline` runs (the direct call, or the floor proxy).
    fn added(&mut self, name: &str, baseline_name: &str, baseline: &[Run], runs: &[Run]) {
        let mut line = format!("{name}: added to {baseline_name} —");
        for ((stream, concurrency), (d, r)) in SHAPES.iter().zip(baseline.iter().zip(runs)) {
            let _ = write!(
                line,
                " {}c{concurrency}: p50 {:+.0} µs, p99 {:+.0} µs{}, {:.0}% of {baseline_name} RPS;",
                if *stream { "SSE " } else { "JSON " },
                r.p50_us - d.p50_us,
                r.p99_us - d.p99_us,
                if *stream {
                    format!(", TTFB p50 {:+.0} µs", r.ttfb_p50_us - d.ttfb_p50_us)
                } else {
                    String::new()
                },
                100.0 * r.rps / d.rps
            );
        }
        self.note(line);
    }

    fn finish(self) {
        let mut text = self.text;
        text.push('\n');
        for note in &self.notes {
            let _ = writeln!(text, "- {note}");
        }
        println!("\n{text}");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/load-bench");
        std::fs::create_dir_all(&dir).ok();
        std::fs::write(dir.join("report.md"), &text).ok();
    }
}
