//! Discovery against real parts: a mock Consul agent that speaks the documented health API
//! with blocking queries (there is no Consul binary to run), and Debian's dnsmasq serving
//! SRV records. Calls go to real loopback backends.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::super::{
    CallError, CallMeta, Method, Request, Response, ServiceConfig, ServiceDiscovery, Services,
};

#[path = "../../../../../tests/all/consul.rs"]
mod consul;

use consul::{MockConsul, eventually};

/// A loopback backend that answers every request 200 and counts them.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Backend {
    async fn start() -> Backend {
        let hits = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                "ok"
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Backend { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A loopback address nothing listens on: connections to it are refused.
fn refusing() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A service found by `discovery`, with quick retries.
fn discovered(discovery: ServiceDiscovery) -> ServiceConfig {
    ServiceConfig {
        urls: vec![],
        discovery: Some(discovery),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..ServiceConfig::new("http://unused")
    }
}

/// Service `payments` in Consul at `consul`, its blocking queries waiting up to `wait`.
fn in_consul(consul: &MockConsul, wait: Duration) -> ServiceConfig {
    discovered(ServiceDiscovery {
        consul: Some(consul.url.clone()),
        service: Some("payments".into()),
        wait: Some(wait),
        ..ServiceDiscovery::default()
    })
}

fn services(config: ServiceConfig) -> Services {
    Services::new(&BTreeMap::from([("payments".to_owned(), config)])).unwrap()
}

async fn call(services: &Services) -> Result<Response, CallError> {
    let request = Request {
        service: "payments".into(),
        method: Method::Get,
        path: "/charge".into(),
        headers: vec![],
        body: None,
        timeout_ms: None,
    };
    services.call(&CallMeta::default(), request).await
}

fn instances(services: &Services) -> Vec<String> {
    services.instances("payments").unwrap()
}

#[tokio::test]
async fn consul_calls_rotate_over_the_passing_instances() {
    let consul = MockConsul::start().await;
    let (a, b, c) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    consul.add("payments", "a", a.addr);
    consul.add("payments", "b", b.addr);
    consul.add("payments", "c", c.addr);
    consul.set_passing("c", false);
    consul.add("other", "x", c.addr);
    let services = services(in_consul(&consul, Duration::from_secs(60)));
    for _ in 0..12 {
        call(&services).await.unwrap();
    }
    assert_eq!((a.hits(), b.hits(), c.hits()), (6, 6, 0));
    assert_eq!(instances(&services), [a.url(), b.url()]);
}

#[tokio::test]
async fn an_instance_going_critical_leaves_the_rotation_within_a_blocking_round_trip() {
    let consul = MockConsul::start().await;
    let (a, b) = (Backend::start().await, Backend::start().await);
    consul.add("payments", "a", a.addr);
    consul.add("payments", "b", b.addr);
    // A wait far longer than the test: only an answer to the held query can be quick.
    let services = services(in_consul(&consul, Duration::from_secs(600)));
    call(&services).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || consul.reads() == 2).await,
        "the watcher holds a blocking query"
    );
    consul.set_passing("b", false);
    // Within seconds, with a wait of ten minutes: the held query answered.
    assert!(
        eventually(Duration::from_secs(5), || instances(&services) == [a.url()]).await,
        "{:?}",
        instances(&services)
    );
    assert_eq!(
        consul.at_once_reads(),
        1,
        "seen through the blocking query, not a re-read"
    );
    let before = b.hits();
    for _ in 0..10 {
        call(&services).await.unwrap();
    }
    assert_eq!(b.hits(), before, "no call went to the critical instance");
}

#[tokio::test]
async fn a_refused_connection_rereads_consul_at_once() {
    let consul = MockConsul::start().await;
    let a = Backend::start().await;
    let gone = refusing();
    consul.add("payments", "a", a.addr);
    consul.add("payments", "gone", gone);
    let services = services(in_consul(&consul, Duration::from_secs(600)));
    call(&services).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || consul.reads() == 2).await);
    // Consul knows, but the query held does not answer: only a read at once can tell.
    consul.set_passing_quietly("gone", false);
    for _ in 0..4 {
        call(&services).await.unwrap();
    }
    assert!(
        eventually(Duration::from_secs(2), || instances(&services) == [a.url()]).await,
        "{:?}",
        instances(&services)
    );
    assert_eq!(
        consul.at_once_reads(),
        2,
        "one read at once after the refusal"
    );
}

#[tokio::test]
async fn consul_down_keeps_the_last_instances_and_recovers() {
    let consul = MockConsul::start().await;
    let (a, b, c) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    consul.add("payments", "a", a.addr);
    consul.add("payments", "b", b.addr);
    let services = services(in_consul(&consul, Duration::from_secs(600)));
    call(&services).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || consul.reads() == 2).await);
    consul.stop().await;
    for _ in 0..4 {
        call(&services).await.unwrap();
    }
    assert_eq!((a.hits() + b.hits(), c.hits()), (5, 0));
    assert!(a.hits() >= 2 && b.hits() >= 2, "both still in rotation");
    assert_eq!(instances(&services), [a.url(), b.url()]);
    // While it is down, the catalog changes; back up, the watcher sees the change.
    consul.set_passing("b", false);
    consul.add("payments", "c", c.addr);
    consul.start_again().await;
    assert!(
        eventually(Duration::from_secs(10), || instances(&services)
            == [a.url(), c.url()])
        .await,
        "{:?}",
        instances(&services)
    );
    for _ in 0..4 {
        call(&services).await.unwrap();
    }
    assert_eq!(c.hits(), 2);
}

#[tokio::test]
async fn no_healthy_instance_fails_the_call_retryably_until_one_passes() {
    let consul = MockConsul::start().await;
    let a = Backend::start().await;
    consul.add("payments", "a", a.addr);
    consul.set_passing("a", false);
    let services = services(in_consul(&consul, Duration::from_secs(600)));
    let started = Instant::now();
    let err = call(&services).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Connection(m) if m.contains("no healthy instance") && m.contains("consul service payments")),
        "{err:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(30),
        "retried with backoff"
    );
    consul.set_passing("a", true);
    assert!(eventually(Duration::from_secs(5), || instances(&services) == [a.url()]).await);
    call(&services).await.unwrap();
    assert_eq!(a.hits(), 1);
}

#[tokio::test]
async fn an_index_that_goes_backwards_starts_the_queries_over() {
    let consul = MockConsul::start().await;
    let (a, b) = (Backend::start().await, Backend::start().await);
    consul.add("payments", "a", a.addr);
    consul.add("payments", "other", b.addr);
    consul.set_passing("other", false);
    let services = services(in_consul(&consul, Duration::from_secs(1)));
    call(&services).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || consul.reads() == 2).await);
    // Restored from an old snapshot: the index is below the one the watcher holds, so its
    // query waits out `wait` and comes back with a smaller index.
    consul.go_back_adding("payments", "b", b.addr);
    assert!(
        eventually(Duration::from_secs(5), || instances(&services)
            == [a.url(), b.url()])
        .await,
        "{:?}",
        instances(&services)
    );
    // The read at once follows the answer with the smaller index, which set them.
    assert!(
        eventually(Duration::from_secs(5), || consul.at_once_reads() >= 2).await,
        "started over with a read at once"
    );
}

/// A private dnsmasq on a loopback port, serving SRV records of
/// `_payments._tcp.example.internal` with the TTL given. Debian's dnsmasq-base;
/// `.ci/run` installs it, and its absence fails the test.
struct Dnsmasq {
    child: Child,
    port: u16,
}

const SRV_NAME: &str = "_payments._tcp.example.internal";

impl Dnsmasq {
    /// Serves `records` (priority, weight, port of a target on `localhost`) on `port`, or a
    /// free one.
    fn start(port: Option<u16>, ttl: u32, records: &[(u16, u16, u16)]) -> Dnsmasq {
        let port = port.unwrap_or_else(|| {
            std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let binary = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .expect("dnsmasq is not installed (Debian's dnsmasq-base; .ci/run installs it)");
        let mut command = Command::new(binary);
        command.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--pid-file=",
            &format!("--port={port}"),
            &format!("--local-ttl={ttl}"),
        ]);
        for (priority, weight, target_port) in records {
            command.arg(format!(
                "--srv-host={SRV_NAME},localhost,{target_port},{priority},{weight}"
            ));
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting dnsmasq");
        // It answers on TCP too once it listens.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
                panic!("dnsmasq exited with {status}: {stderr}");
            }
            assert!(Instant::now() < deadline, "dnsmasq did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
        Dnsmasq { child, port }
    }

    fn nameserver(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Stops it and starts another on the same port serving `records`.
    fn restart(mut self, ttl: u32, records: &[(u16, u16, u16)]) -> Dnsmasq {
        let port = self.port;
        self.stop();
        Dnsmasq::start(Some(port), ttl, records)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

fn in_dns(dns: &Dnsmasq) -> ServiceConfig {
    discovered(ServiceDiscovery {
        dns_srv: Some(SRV_NAME.into()),
        nameserver: Some(dns.nameserver()),
        ..ServiceDiscovery::default()
    })
}

fn on_localhost(port: u16) -> String {
    format!("http://localhost:{port}")
}

#[tokio::test]
async fn dns_srv_calls_reach_the_targets_of_the_lowest_priority() {
    let (a, b, backup) = (
        Backend::start().await,
        Backend::start().await,
        Backend::start().await,
    );
    let dns = Dnsmasq::start(
        None,
        600,
        &[
            (10, 5, backup.addr.port()),
            (0, 10, a.addr.port()),
            (0, 60, b.addr.port()),
        ],
    );
    let services = services(in_dns(&dns));
    for _ in 0..10 {
        call(&services).await.unwrap();
    }
    assert_eq!((a.hits(), b.hits(), backup.hits()), (5, 5, 0));
    assert_eq!(
        instances(&services),
        [
            on_localhost(b.addr.port()),
            on_localhost(a.addr.port()),
            on_localhost(backup.addr.port())
        ],
        "by priority, then heaviest first"
    );
}

#[tokio::test]
async fn dns_srv_falls_back_to_a_higher_priority_while_the_lower_refuses() {
    let backup = Backend::start().await;
    let gone = refusing();
    let dns = Dnsmasq::start(
        None,
        600,
        &[(0, 0, gone.port()), (10, 0, backup.addr.port())],
    );
    let services = services(in_dns(&dns));
    for _ in 0..5 {
        call(&services).await.unwrap();
    }
    assert_eq!(backup.hits(), 5);
}

#[tokio::test]
async fn dns_srv_changes_are_seen_when_the_ttl_runs_out() {
    let (a, b) = (Backend::start().await, Backend::start().await);
    let dns = Dnsmasq::start(None, 1, &[(0, 0, a.addr.port())]);
    let services = services(in_dns(&dns));
    call(&services).await.unwrap();
    assert_eq!(instances(&services), [on_localhost(a.addr.port())]);
    let _dns = dns.restart(1, &[(0, 0, b.addr.port())]);
    assert!(
        eventually(Duration::from_secs(5), || instances(&services)
            == [on_localhost(b.addr.port())])
        .await,
        "{:?}",
        instances(&services)
    );
    call(&services).await.unwrap();
    assert_eq!((a.hits(), b.hits()), (1, 1));
}

#[tokio::test]
async fn dns_srv_is_resolved_again_at_once_after_a_refused_connection() {
    let a = Backend::start().await;
    let gone = refusing();
    // A TTL of an hour: only the refusal can make the watcher ask again soon.
    let dns = Dnsmasq::start(None, 3600, &[(0, 0, gone.port())]);
    let services = services(in_dns(&dns));
    assert!(
        eventually(Duration::from_secs(5), || instances(&services)
            == [on_localhost(gone.port())])
        .await
    );
    let _dns = dns.restart(3600, &[(0, 0, a.addr.port())]);
    let asked = Instant::now();
    // This call may fail (its retries may all come before the new answer); it makes the
    // watcher ask again.
    let _ = call(&services).await;
    assert!(
        eventually(Duration::from_secs(5), || instances(&services)
            == [on_localhost(a.addr.port())])
        .await,
        "{:?}",
        instances(&services)
    );
    assert!(asked.elapsed() < Duration::from_secs(5));
    call(&services).await.unwrap();
}

#[test]
fn urls_and_discovery_are_one_or_the_other() {
    use figment::providers::Format;
    let parse = |toml: &str| {
        figment::Figment::from(figment::providers::Toml::string(toml))
            .extract::<ServiceConfig>()
            .unwrap()
            .validate()
            .map_err(|e| e.0)
    };
    assert_eq!(
        parse("urls = [\"http://a\"]\ndiscovery = { dns-srv = \"_p._tcp.x\" }").unwrap_err(),
        "urls and discovery: give one or the other, not both"
    );
    assert!(
        parse("")
            .unwrap_err()
            .starts_with("urls: at least one URL is required")
    );
    assert_eq!(
        parse("discovery = { consul = \"http://127.0.0.1:8500\" }").unwrap_err(),
        "discovery.service: the service's name in Consul is required with consul"
    );
    assert_eq!(
        parse(
            "discovery = { consul = \"http://c:8500\", service = \"p\", dns-srv = \"_p._tcp.x\" }"
        )
        .unwrap_err(),
        "discovery.consul and dns-srv: give one or the other, not both"
    );
    assert_eq!(
        parse("discovery = { dns-srv = \"_p._tcp.x\", wait = \"5s\" }").unwrap_err(),
        "discovery.wait: only with consul"
    );
    assert_eq!(
        parse("discovery = { consul = \"http://c:8500\", service = \"p\", nameserver = \"127.0.0.1:53\" }")
            .unwrap_err(),
        "discovery.nameserver: only with dns-srv"
    );
    parse("discovery = { consul = \"http://c:8500\", service = \"p\", wait = \"45s\", token-env = \"T\", scheme = \"https\" }")
        .unwrap();
    parse("discovery = { dns-srv = \"_p._tcp.x\", nameserver = \"127.0.0.1:5353\" }").unwrap();
}

#[tokio::test]
async fn a_missing_consul_token_variable_is_named() {
    let config = discovered(ServiceDiscovery {
        consul: Some("http://127.0.0.1:8500".into()),
        service: Some("payments".into()),
        token_env: Some("FLOWHOST_TEST_CONSUL_TOKEN_THAT_IS_NOT_SET".into()),
        ..ServiceDiscovery::default()
    });
    let err = Services::new(&BTreeMap::from([("payments".to_owned(), config)]))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "services.payments: discovery.token-env: environment variable `FLOWHOST_TEST_CONSUL_TOKEN_THAT_IS_NOT_SET` is not set"
    );
}
