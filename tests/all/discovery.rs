//! Service discovery end to end: the real binary finds the example's payments service in
//! Consul (the mock of `consul.rs`), follows it when it moves, and registers itself there
//! while it serves.

use std::net::SocketAddr;
use std::time::Duration;

use crate::consul::{MockConsul, eventually};
use crate::sagas::count;
use crate::server::{Server, Services, order};

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn payments_are_found_in_consul_and_followed_and_the_host_registers_itself() {
    let consul = MockConsul::start().await;
    let (first, second) = (Services::start().await, Services::start().await);
    consul.add("payments", "payments-1", addr(&first.url));
    let listed = format!("[services.payments]\nurls = [\"{}\"]", first.url);
    let config = first.config();
    assert!(config.contains(&listed), "{config}");
    let config = format!(
        "{}\n[discovery.register]\nconsul = \"{}\"\n",
        config.replace(
            &listed,
            &format!(
                "[services.payments]\ndiscovery = {{ consul = \"{}\", service = \"payments\" }}",
                consul.url
            ),
        ),
        consul.url
    );
    let mut server = Server::start(&config).await;

    assert!(
        eventually(Duration::from_secs(10), || !consul
            .registrations()
            .is_empty())
        .await,
        "{}",
        server.log()
    );
    let registration = consul.registrations()[0].clone();
    let port: u64 = server.url.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(registration["Name"], "flowhost", "{registration}");
    assert_eq!(registration["Address"], "127.0.0.1", "{registration}");
    assert_eq!(registration["Port"], port, "{registration}");
    assert_eq!(
        registration["Check"]["HTTP"],
        format!("{}/readyz", server.url),
        "{registration}"
    );
    assert_eq!(
        registration["Check"]["DeregisterCriticalServiceAfter"],
        "60s"
    );

    let path = "/v1/workflows/order_processing/runs?wait=30s";
    let (status, run) = server.post(path, &order("o-1", 7, 50.0)).await;
    assert_eq!(
        (status, run["status"].as_str()),
        (200, Some("completed")),
        "{run}"
    );
    assert_eq!(count(&first.order("o-1").await, "payments", "captured"), 1);

    // The payments service moves: each change reaches the host through the query it holds,
    // which it then sends again.
    let reads = consul.reads();
    consul.set_passing("payments-1", false);
    assert!(eventually(Duration::from_secs(5), || consul.reads() > reads).await);
    let reads = consul.reads();
    consul.add("payments", "payments-2", addr(&second.url));
    assert!(eventually(Duration::from_secs(5), || consul.reads() > reads).await);
    let (status, run) = server.post(path, &order("o-2", 7, 50.0)).await;
    assert_eq!(
        (status, run["status"].as_str()),
        (200, Some("completed")),
        "{run}"
    );
    assert_eq!(count(&second.order("o-2").await, "payments", "captured"), 1);
    assert_eq!(count(&first.order("o-2").await, "payments", "captured"), 0);

    let (_, clean) = server.terminate();
    assert!(clean, "{}", server.log());
    assert_eq!(
        consul.deregistrations(),
        [registration["ID"].as_str().unwrap()],
        "{}",
        server.log()
    );
}
