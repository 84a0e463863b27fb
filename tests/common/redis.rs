//! A real `redis-server` on a free loopback port for the tests that share counters, and a real
//! three-master Redis Cluster of them. CI installs it (`.ci/run`); a machine without it fails
//! these tests with a message saying so.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the gateways of a test share their counters: a Redis, or a cluster.
pub trait SharedCounters: Sync {
    /// What to give `--redis-url`.
    fn url(&self) -> String;
    /// Whether it is a cluster (`--redis-cluster`).
    fn cluster(&self) -> bool {
        false
    }
}

impl SharedCounters for RedisServer {
    fn url(&self) -> String {
        RedisServer::url(self)
    }
}

/// A running redis-server, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    /// Started as a cluster node.
    cluster: bool,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start() -> Self {
        Self::start_as(false)
    }

    fn start_as(cluster: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = Self {
            child: None,
            port,
            dir,
            cluster,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        if self.cluster {
            // The node's view of the cluster (its slots) is kept in its directory: a restart
            // comes back owning its slots, empty (nothing else is persisted).
            command.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
            ]);
        }
        let child = command
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed for these tests (apt-get install -y redis-server; .ci/run does it)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer PING on port {}", self.port);
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// The CPU time (user + system, in clock ticks of 1/100 s) the server has used so far.
    pub fn cpu_ticks(&self) -> u64 {
        let Some(child) = &self.child else { return 0 };
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap_or_default();
        // After the command name (in parentheses): utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let field = |n: usize| {
            fields
                .get(n - 3)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        field(14) + field(15)
    }

    /// The URL to give `--redis-url`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server (simulating an outage); `restart` brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: it persists nothing).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A three-master Redis Cluster (no replicas), its nodes on free loopback ports.
pub struct RedisCluster {
    /// Its masters.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes, joins them (`redis-cli --cluster create`) and waits until every
    /// node reports the cluster ok.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_as(true)).collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed beside redis-server");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = Self { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// Waits until every node says `cluster_state:ok` (the slots are assigned and known).
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &self.nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not become ok");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Empties every master (`FLUSHALL` on each).
    pub fn flush_all(&self) {
        for node in &self.nodes {
            let flushed = Command::new("redis-cli")
                .args(["-p", &node.port.to_string(), "flushall"])
                .stdout(Stdio::null())
                .status()
                .expect("redis-cli");
            assert!(flushed.success());
        }
    }

    /// The CPU time all masters have used so far (clock ticks of 1/100 s).
    pub fn cpu_ticks(&self) -> u64 {
        self.nodes.iter().map(RedisServer::cpu_ticks).sum()
    }

    /// Which master holds `key`'s slot (the others answer MOVED).
    pub async fn owner_of(&self, key: &str) -> usize {
        for (index, node) in self.nodes.iter().enumerate() {
            let client = redis::Client::open(node.url()).unwrap();
            let mut connection = client.get_multiplexed_async_connection().await.unwrap();
            let answer: redis::RedisResult<i64> = redis::cmd("EXISTS")
                .arg(key)
                .query_async(&mut connection)
                .await;
            if answer.is_ok() {
                return index;
            }
        }
        panic!("no master holds {key}");
    }

    /// `key`'s integer value, read from the master holding it.
    pub async fn get(&self, key: &str) -> Option<u64> {
        let node = &self.nodes[self.owner_of(key).await];
        let client = redis::Client::open(node.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap()
    }

    /// Restarts master `index` empty: it comes back owning its slots without their data (a
    /// master restarted without persistence), the others keep theirs.
    pub fn restart_empty(&mut self, index: usize) {
        self.nodes[index].restart();
        self.wait_until_ok();
    }
}

impl SharedCounters for RedisCluster {
    fn url(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn cluster(&self) -> bool {
        true
    }
}

/// A TCP proxy in front of a server that delays everything it forwards by `delay` each way,
/// so a loopback Redis answers like one across a network (a round trip costs 2 × `delay`).
pub struct SlowLink {
    address: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl SlowLink {
    /// Starts forwarding to `port` on 127.0.0.1.
    pub async fn start(port: u16, delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(Self::pipe(client_read, server_write, delay));
                tokio::spawn(Self::pipe(server_read, client_write, delay));
            }
        });
        Self { address, task }
    }

    /// Copies `from` to `to`, each piece `delay` late (pieces keep their order).
    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        delay: Duration,
    ) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
        let writer = tokio::spawn(async move {
            while let Some((due, piece)) = receiver.recv().await {
                tokio::time::sleep_until(due.into()).await;
                if to.write_all(&piece).await.is_err() {
                    return;
                }
            }
        });
        let mut buffer = vec![0u8; 16 * 1024];
        while let Ok(read @ 1..) = from.read(&mut buffer).await {
            if sender
                .send((Instant::now() + delay, buffer[..read].to_vec()))
                .is_err()
            {
                break;
            }
        }
        drop(sender);
        let _ = writer.await;
    }

    /// The URL to give `--redis-url` instead of the server's.
    pub fn url(&self) -> String {
        format!("redis://{}/", self.address)
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
