//! Events published while RabbitMQ is down arrive once it is back.
//!
//! Alone in its test binary because it stops the machine's broker (`rabbitmqctl stop_app`)
//! and starts it again, which the RabbitMQ tests in `tests/all` must not see; cargo runs
//! test binaries one after another. The broker is started again even if the test fails.

#[path = "all/server.rs"]
#[allow(dead_code, reason = "shared with tests/all, which uses more of it")]
mod server;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use server::{Server, Services};

const RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const EXCHANGE: &str = "test_outage";

/// Runs `rabbitmqctl <action>` and insists that it worked.
fn rabbitmqctl(action: &str) {
    let status = Command::new("rabbitmqctl")
        .arg(action)
        .status()
        .expect("rabbitmqctl is installed");
    assert!(status.success(), "rabbitmqctl {action}: {status}");
}

/// Starts the broker's application again when dropped, whatever happened.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").status();
    }
}

/// Waits until `order_id` has a notification; false after `within`.
async fn notified(services: &Services, order_id: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let ledger = services.order(order_id).await;
        if ledger["counts"]["notifications"].as_u64() > Some(0) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn events_published_while_rabbitmq_is_down_arrive_once_it_is_back() {
    // Queues of an earlier run would hold its events.
    let connection = lapin::Connection::connect(RABBITMQ_URL, Default::default())
        .await
        .expect("RabbitMQ is up");
    for queue in [
        format!("{EXCHANGE}.notify-customer"),
        format!("{EXCHANGE}.notify-customer.retry"),
    ] {
        let channel = connection.create_channel().await.unwrap();
        let _ = channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await;
    }
    let _ = connection.close(0, "".into()).await;

    let services = Services::start().await;
    let section = format!(
        "[events.transport]\nkind = \"rabbitmq\"\nurl = \"{RABBITMQ_URL}\"\nexchange = \"{EXCHANGE}\"\n"
    );
    let server = Server::start(&format!("{}\n{section}", services.config())).await;
    let publish = |order_id: String| {
        let server = &server;
        async move {
            let (status, body) = server
                .post(
                    "/v1/events/order.confirmed",
                    &json!({ "order_id": order_id }),
                )
                .await;
            assert_eq!(status, 202, "{body}");
        }
    };
    publish("q-0".into()).await;
    assert!(
        notified(&services, "q-0", Duration::from_secs(10)).await,
        "delivered while up"
    );

    let _restart = Restart;
    rabbitmqctl("stop_app");
    for i in 1..=5 {
        // Durable in the outbox: the API answers while the broker is away.
        publish(format!("q-{i}")).await;
    }
    assert!(
        !notified(&services, "q-1", Duration::from_millis(300)).await,
        "nothing can travel yet"
    );
    rabbitmqctl("start_app");
    for i in 1..=5 {
        assert!(
            notified(&services, &format!("q-{i}"), Duration::from_secs(60)).await,
            "event {i} after the broker came back"
        );
    }
}
