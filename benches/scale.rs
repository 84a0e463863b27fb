//! Scale: a fleet of 100,000 tenants (one in ten with its own provider and key) rendered in
//! shards and loaded by a gateway. One command:
//!
//! ```sh
//! cargo bench --bench scale                      # 100,000 tenants, 64 shards (~1 min)
//! SCALE_TENANTS=20000 SCALE_SHARDS=16 cargo bench --bench scale
//! SCALE_KEEP=/tmp/scale cargo bench --bench scale  # keep the fleet and its config directory
//! ```
//!
//! Reports: parsing and validating the inputs and the pure render (in process); `dgidgi render
//! --shards` end to end (YAML in, the config directory out, as a process); the largest shard
//! and the index; what adding one tenant rewrites; and the gateway loading the directory as a
//! process: time until `/readyz` answers, and its RSS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dgidgi::render::{InputLoader, RenderContext, render};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

#[path = "common/fleet.rs"]
mod fleet;

fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names another bench skips this one.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && a != "scale")
    {
        return;
    }
    let tenants = env_number("SCALE_TENANTS", 100_000) as usize;
    let shards = env_number("SCALE_SHARDS", 64);
    // SCALE_KEEP keeps the fleet and its rendered directory there, to profile a load by hand.
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let dir = match std::env::var_os("SCALE_KEEP") {
        Some(keep) => {
            std::fs::create_dir_all(&keep).expect("SCALE_KEEP is a directory");
            std::path::PathBuf::from(keep)
        }
        None => temporary.path().to_owned(),
    };
    let yaml = fleet::fleet(tenants);
    let inputs = dir.join("fleet.yaml");
    std::fs::write(&inputs, &yaml).expect("the fleet is written");
    println!(
        "scale: {tenants} tenants, {shards} shards, {} MB of YAML",
        yaml.len() / 1_000_000
    );

    let started = Instant::now();
    let mut loader = InputLoader::new("dgidgi-system").expect("schemas compile");
    loader
        .add_yaml("fleet.yaml", &yaml)
        .expect("the fleet parses");
    let input = loader.finish();
    let parsed = started.elapsed();
    let mut ctx = RenderContext::new("dgidgi-system", k8s_openapi::jiff::Timestamp::now());
    ctx.shards = shards;
    let started = Instant::now();
    let output = render(input, &ctx, &mut ChaCha20Rng::seed_from_u64(1)).expect("render");
    let rendered = started.elapsed();
    println!(
        "in process: parse and validate {:.2} s, render {:.2} s ({} tenants)",
        parsed.as_secs_f64(),
        rendered.as_secs_f64(),
        output.config.tenants.len()
    );
    drop(output);

    let config = dir.join("config");
    let end_to_end = render_process(&inputs, &config, shards);
    let sizes = sizes(&config);
    println!(
        "dgidgi render --shards {shards}: {:.2} s end to end; largest config shard {} KiB, largest key shard {} KiB, index {} KiB",
        end_to_end.as_secs_f64(),
        sizes.0 / 1024,
        sizes.1 / 1024,
        sizes.2 / 1024
    );

    let before = snapshot(&config);
    let more = format!(
        "{yaml}apiVersion: v1\nkind: Namespace\nmetadata: {{name: late-comer}}\n---\napiVersion: llm.dgidgi.io/v1alpha1\nkind: LlmTenant\nmetadata: {{name: t, namespace: late-comer}}\nspec: {{}}\n---\n"
    );
    std::fs::write(&inputs, more).expect("the fleet is written");
    let again = render_process(&inputs, &config, shards);
    let after = snapshot(&config);
    let changed: Vec<&String> = after
        .iter()
        .filter(|(name, bytes)| before.get(*name) != Some(*bytes))
        .map(|(name, _)| name)
        .collect();
    println!(
        "one tenant more: {:.2} s; files rewritten: {changed:?}",
        again.as_secs_f64()
    );

    let (ready, rss, peak) = gateway_load(&config);
    println!(
        "gateway: ready after {:.2} s; RSS {} MiB (peak while loading {} MiB)",
        ready.as_secs_f64(),
        rss / 1024,
        peak / 1024
    );
}

fn render_process(inputs: &Path, config: &Path, shards: u32) -> Duration {
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_dgidgi"))
        .arg("render")
        .arg("-f")
        .arg(inputs)
        .arg("--config-dir")
        .arg(config)
        .arg(format!("--shards={shards}"))
        .args(["--log", "warn"])
        .status()
        .expect("dgidgi render runs");
    assert!(status.success(), "dgidgi render failed");
    started.elapsed()
}

/// The largest config shard, the largest key shard and the index, in bytes.
fn sizes(config: &Path) -> (usize, usize, usize) {
    let files = snapshot(config);
    let largest = |prefix: &str| {
        files
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, bytes)| bytes.len())
            .max()
            .unwrap_or(0)
    };
    (
        largest("config-"),
        largest("keys-"),
        files.get("gateway.yaml").map_or(0, Vec::len),
    )
}

fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("the config directory")
        .filter_map(Result::ok)
        .map(|entry| {
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap_or_default(),
            )
        })
        .collect()
}

/// Starts a gateway on `config`; time until `/readyz` answers 200, then its RSS a second later
/// and its peak (KiB).
fn gateway_load(config: &Path) -> (Duration, u64, u64) {
    let admin = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dgidgi"))
        .arg("gateway")
        .arg("--config-dir")
        .arg(config)
        .arg(format!("--listen={api}"))
        .arg(format!("--admin-listen={admin}"))
        .args(["--log", "warn"])
        .stdout(Stdio::null())
        .spawn()
        .expect("dgidgi gateway runs");
    let ready = loop {
        if ready(admin) {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(120), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_secs(1));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    let (rss, peak) = (field("VmRSS:"), field("VmHWM:"));
    let _ = child.kill();
    let _ = child.wait();
    (ready, rss, peak)
}

fn ready(admin: std::net::SocketAddr) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(admin) else {
        return false;
    };
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}
