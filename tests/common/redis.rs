//! Redis for the tests: the machine's Redis (127.0.0.1:6379, or `LIENTHONG_TEST_REDIS_URL`), and
//! Redis servers and a Redis Cluster that a test starts itself on free loopback ports and that
//! stop when the test drops them.
//!
//! Where Redis is missing, the tests that need it skip with a loud notice, except when
//! `CI=true`, where they fail.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn skip(what: &str) {
    assert!(!in_ci(), "CI=true and {what}");
    eprintln!("\n!!!!! SKIPPED: {what}; the Redis tests did not run !!!!!\n");
}

/// The Redis URL the tests use, if it answers.
pub async fn redis_url_or_skip() -> Option<String> {
    let url = std::env::var("LIENTHONG_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let answers = async {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut c).await.ok()
    };
    match tokio::time::timeout(Duration::from_secs(3), answers).await {
        Ok(Some(_)) => Some(url),
        _ => {
            skip(&format!("Redis at {url} does not answer"));
            None
        }
    }
}

/// A loopback port free when asked, for a server a test starts itself a moment later. It is
/// taken below the kernel's ephemeral range (`ip_local_port_range`), where `bind(0)` takes its
/// ports: a port from there can go to an outgoing connection in between — a broker node opens
/// its PostgreSQL connections as it starts — and the server then fails with "address in use".
pub fn free_port() -> u16 {
    free_port_and(0)
}

/// What a Redis Cluster node adds to its port for its cluster bus.
const CLUSTER_BUS_OFFSET: u16 = 10_000;

/// A port for a Redis Cluster node: free, with its cluster bus port free too, both below the
/// ephemeral range. (A bus port in that range may be held by a connection of the test's or
/// another program's, lingering in `TIME_WAIT` after a load test, and the node does not start.)
pub fn free_cluster_port() -> u16 {
    free_port_and(CLUSTER_BUS_OFFSET)
}

/// A free port whose neighbour `offset` above is free as well (0: the port alone).
fn free_port_and(offset: u16) -> u16 {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    let both =
        |port: u16| free(port) && (offset == 0 || port.checked_add(offset).is_some_and(free));
    const FLOOR: u16 = 10_000;
    let top = ephemeral.saturating_sub(offset);
    if top <= FLOOR + 1_000 {
        loop {
            let port = ephemeral_port();
            if both(port) {
                return port;
            }
        }
    }
    loop {
        let random = lienthong_protocol::crypto::random_bytes(2);
        let port = FLOOR + u16::from_le_bytes([random[0], random[1]]) % (top - FLOOR);
        if both(port) {
            return port;
        }
    }
}

fn ephemeral_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_server_available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A `redis-server` of the test's own, stopped on drop.
pub struct Server {
    /// Its loopback port; 0 for a server on a Unix socket alone.
    pub port: u16,
    socket: Option<PathBuf>,
    child: Child,
    dir: PathBuf,
}

impl Server {
    /// Starts on `port` (nothing kept on disk), as a Cluster node if `cluster`.
    pub fn start(port: u16, cluster: bool) -> Self {
        let dir =
            std::env::temp_dir().join(format!("lienthong-redis-{port}-{}", std::process::id()));
        let cluster_args: &[&str] = if cluster {
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]
        } else {
            &[]
        };
        Self::spawn(port, None, dir, cluster_args)
    }

    /// Starts on a Unix socket in a directory of its own and on no TCP port (nothing kept on
    /// disk); `None`, said loudly, where `redis-server` is not installed (a failure on CI).
    pub fn start_on_socket_or_skip() -> Option<Self> {
        if !redis_server_available() {
            skip("redis-server is not installed, so no Redis on a Unix socket can be started");
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "lienthong-redis-socket-{}-{}",
            std::process::id(),
            lienthong_protocol::secret::random_token(6)
        ));
        let socket = dir.join("redis.sock");
        Some(Self::spawn(0, Some(socket), dir, &[]))
    }

    /// `redis-server` listening on loopback `port` (0: none) and on `socket`, if given, keeping
    /// nothing on disk, its working directory `dir`.
    fn spawn(port: u16, socket: Option<PathBuf>, dir: PathBuf, extra: &[&str]) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(socket) = &socket {
            cmd.arg("--unixsocket")
                .arg(socket)
                .args(["--unixsocketperm", "700"]);
        }
        let child = cmd.spawn().expect("redis-server starts");
        Self {
            port,
            socket,
            child,
            dir,
        }
    }

    /// The server's process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL a Store is given: `redis://127.0.0.1:port` or `redis+unix:///path`.
    pub fn url(&self) -> String {
        match &self.socket {
            Some(socket) => format!("redis+unix://{}", socket.display()),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    pub async fn wait_ready(&self) {
        for _ in 0..100 {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server at {} did not start", self.url());
    }

    /// Stops the server now (the test's "Redis goes away").
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters, started by the test (or the one named by
/// `LIENTHONG_TEST_REDIS_CLUSTER_URL`).
pub struct Cluster {
    urls: Vec<String>,
    _servers: Vec<Server>,
}

impl Cluster {
    pub fn urls(&self) -> Vec<String> {
        self.urls.clone()
    }

    /// The seed nodes as one `[store] url` value.
    pub fn store_url(&self) -> String {
        self.urls.join(",")
    }

    pub async fn start_or_skip() -> Option<Self> {
        if let Ok(given) = std::env::var("LIENTHONG_TEST_REDIS_CLUSTER_URL") {
            return Some(Self {
                urls: given.split(',').map(|u| u.trim().to_owned()).collect(),
                _servers: vec![],
            });
        }
        if !redis_server_available() {
            skip("redis-server is not installed, so no Redis Cluster can be started");
            return None;
        }
        let servers: Vec<Server> = (0..3)
            .map(|_| Server::start(free_cluster_port(), true))
            .collect();
        for s in &servers {
            s.wait_ready().await;
        }
        let nodes: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        // Wait until every node agrees the cluster is up.
        for s in &servers {
            let mut ok = false;
            for _ in 0..100 {
                let out = Command::new("redis-cli")
                    .args(["-p", &s.port.to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                    ok = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(
                ok,
                "cluster node {} never reported cluster_state:ok",
                s.port
            );
        }
        Some(Self {
            urls: nodes.iter().map(|n| format!("redis://{n}")).collect(),
            _servers: servers,
        })
    }
}
