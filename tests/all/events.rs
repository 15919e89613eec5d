//! Events end to end, on every transport: the real binary, the `notify` handler, the mock
//! services' `/notifications` as the witness of each delivery's effect. The NATS tests use
//! the machine's JetStream server (127.0.0.1:4222), a stream of their own each; the
//! RabbitMQ tests the machine's broker (127.0.0.1:5672), an exchange and queues of their own
//! each, emptied first; the Redis tests the machine's server (127.0.0.1:6379), keys under a
//! prefix of their own, deleted first.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Server, Services, order};

/// The machine's NATS server.
pub const NATS_URL: &str = "nats://127.0.0.1:4222";
/// The machine's RabbitMQ.
const RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The machine's Redis.
const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Every subscription the tests declare.
const SUBSCRIPTIONS: [&str; 4] = [
    "notify-customer",
    "all-orders",
    "anything-shipped",
    "workflow.order_processing",
];

/// Where a test's events travel.
#[derive(Clone, Copy)]
pub enum Transport {
    Embedded,
    Nats,
    Rabbitmq,
    Redis,
}

impl Transport {
    /// The `[events.transport]` section for a test named `test`; for NATS, the test's
    /// stream is deleted first so that each run starts empty.
    pub async fn section(self, test: &str) -> String {
        match self {
            Transport::Embedded => String::new(),
            Transport::Nats => {
                let stream = format!("TEST_{}", test.to_ascii_uppercase());
                delete_stream(NATS_URL, &stream).await;
                nats_section(NATS_URL, &stream)
            }
            Transport::Rabbitmq => {
                let exchange = format!("test_{test}");
                delete_queues(&exchange).await;
                format!(
                    "[events.transport]\nkind = \"rabbitmq\"\nurl = \"{RABBITMQ_URL}\"\nexchange = \"{exchange}\"\n"
                )
            }
            Transport::Redis => {
                let prefix = format!("test:{test}");
                delete_keys(&prefix).await;
                format!(
                    "[events.transport]\nkind = \"redis\"\nurl = \"{REDIS_URL}\"\nprefix = \"{prefix}\"\n"
                )
            }
        }
    }
}

/// Deletes the keys a test's prefix may have left from an earlier run.
async fn delete_keys(prefix: &str) {
    let client = ::redis::Client::open(REDIS_URL).unwrap();
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis is up");
    for subscription in SUBSCRIPTIONS {
        let keys = [
            format!("{prefix}:{subscription}"),
            format!("{prefix}:{subscription}:delayed"),
        ];
        let _: () = ::redis::AsyncCommands::del(&mut connection, &keys)
            .await
            .unwrap();
    }
}

/// Deletes the queues a test's exchange may have left from an earlier run.
async fn delete_queues(exchange: &str) {
    use lapin::options::QueueDeleteOptions;
    let connection = lapin::Connection::connect(RABBITMQ_URL, Default::default())
        .await
        .expect("RabbitMQ is up");
    let mut queues = vec![format!("{exchange}.dead")];
    for subscription in SUBSCRIPTIONS {
        queues.push(format!("{exchange}.{subscription}"));
        queues.push(format!("{exchange}.{subscription}.retry"));
    }
    for queue in queues {
        // A channel each: deleting a queue that is not there may close the channel.
        let channel = connection.create_channel().await.unwrap();
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = connection.close(0, "".into()).await;
}

pub fn nats_section(url: &str, stream: &str) -> String {
    format!("[events.transport]\nkind = \"nats\"\nurl = \"{url}\"\nstream = \"{stream}\"\n")
}

pub async fn delete_stream(url: &str, stream: &str) {
    let client = async_nats::connect(url).await.expect("NATS is up");
    let _ = async_nats::jetstream::new(client)
        .delete_stream(stream)
        .await;
}

/// Each test, once per transport.
macro_rules! on_every_transport {
    ($($test:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Transport::Embedded, stringify!($test)).await;
            })*
        }
        mod nats {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Transport::Nats, stringify!($test)).await;
            })*
        }
        mod rabbitmq {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Transport::Rabbitmq, stringify!($test)).await;
            })*
        }
        mod redis {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Transport::Redis, stringify!($test)).await;
            })*
        }
    };
}

on_every_transport!(
    a_completed_order_notifies_the_customer_once_its_step_is_durable,
    topics_reach_the_subscriptions_whose_patterns_match,
    a_handler_that_fails_twice_is_delivered_three_times_and_acts_once,
    a_delivery_out_of_attempts_is_a_dead_letter_until_redelivered,
    a_triggered_workflow_runs_once_per_event,
);

/// Extra subscriptions, all to `notify` with their own channel (the plugin's config).
const ROUTES: &str = r#"
[plugins.notify-sms]
path = "{NOTIFY}"
services = ["notifications"]
config = { channel = "sms" }
[plugins.notify-push]
path = "{NOTIFY}"
services = ["notifications"]
config = { channel = "push" }
[subscriptions.all-orders]
topic = "order.#"
handler = "notify-sms"
[subscriptions.anything-shipped]
topic = "*.shipped"
handler = "notify-push"
"#;

async fn setup(transport: Transport, test: &str, extra: &str) -> (Services, Server) {
    let services = Services::start().await;
    let extra = extra.replace("{NOTIFY}", flowhost_test_artifacts::NOTIFY);
    let section = transport.section(test).await;
    let server = Server::start(&format!("{}\n{extra}\n{section}", services.config())).await;
    (services, server)
}

/// The channels notified about `order_id`, sorted, once `expected` of them are there (or
/// what is there after 10 s).
async fn channels(services: &Services, order_id: &str, expected: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ledger = services.order(order_id).await;
        let mut channels: Vec<String> = ledger["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["channel"].as_str().unwrap().to_owned())
            .collect();
        if channels.len() >= expected || Instant::now() > deadline {
            channels.sort();
            return channels;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn publish(server: &Server, topic: &str, data: Value) -> String {
    let (status, body) = server.post(&format!("/v1/events/{topic}"), &data).await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn a_completed_order_notifies_the_customer_once_its_step_is_durable(
    transport: Transport,
    test: &str,
) {
    let (services, server) = setup(transport, test, "").await;
    let (status, run) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("e-1", 7, 50.0),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(channels(&services, "e-1", 1).await, ["email"]);
    let ledger = services.order("e-1").await;
    let notification = &ledger["notifications"][0];
    assert_eq!(notification["topic"], "order.confirmed");
    assert_eq!(
        notification["event_id"], run["context"]["confirmation_event"],
        "the event the step published"
    );
}

async fn topics_reach_the_subscriptions_whose_patterns_match(transport: Transport, test: &str) {
    let (services, server) = setup(transport, test, ROUTES).await;
    publish(&server, "order.shipped", json!({"order_id": "r-1"})).await;
    publish(&server, "order.confirmed", json!({"order_id": "r-2"})).await;
    publish(&server, "order.eu.refund", json!({"order_id": "r-3"})).await;
    publish(&server, "user.created", json!({"order_id": "r-4"})).await;
    assert_eq!(channels(&services, "r-1", 2).await, ["push", "sms"]);
    assert_eq!(channels(&services, "r-2", 2).await, ["email", "sms"]);
    assert_eq!(
        channels(&services, "r-3", 1).await,
        ["sms"],
        "`#` spans segments"
    );
    // Whatever would have reached r-4 has had the time the others took.
    assert!(channels(&services, "r-4", 0).await.is_empty());
}

async fn a_handler_that_fails_twice_is_delivered_three_times_and_acts_once(
    transport: Transport,
    test: &str,
) {
    let (services, server) = setup(transport, test, "").await;
    services.fail("notifications", 2, 503).await;
    publish(&server, "order.confirmed", json!({"order_id": "f-1"})).await;
    assert_eq!(channels(&services, "f-1", 1).await, ["email"]);
    let ledger = services.ledger().await;
    assert_eq!(ledger["requests"]["notifications"], 3, "{ledger}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(channels(&services, "f-1", 1).await.len(), 1, "one effect");
}

async fn a_delivery_out_of_attempts_is_a_dead_letter_until_redelivered(
    transport: Transport,
    test: &str,
) {
    let (services, server) = setup(transport, test, "").await;
    services.fail("notifications", 1000, 500).await;
    let event_id = publish(&server, "order.confirmed", json!({"order_id": "d-1"})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let letter = loop {
        let (status, page) = server.get("/v1/dead-letters").await;
        assert_eq!(status, 200, "{page}");
        if let Some(letter) = page["dead_letters"].as_array().unwrap().first() {
            break letter.clone();
        }
        assert!(Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(letter["subscription"], "notify-customer");
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["event"]["id"], event_id.as_str());
    assert_eq!(letter["event"]["type"], "order.confirmed");
    assert_eq!(letter["event"]["specversion"], "1.0");
    assert_eq!(letter["event"]["data"]["order_id"], "d-1");
    assert!(
        letter["error"].as_str().unwrap().contains("500"),
        "{letter}"
    );
    assert!(channels(&services, "d-1", 0).await.is_empty());

    services.fail("notifications", 0, 500).await;
    let id = letter["id"].as_str().unwrap();
    let (status, _) = server
        .post(&format!("/v1/dead-letters/{id}/redeliver"), &json!({}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(channels(&services, "d-1", 1).await, ["email"]);
    let (_, page) = server.get("/v1/dead-letters").await;
    assert!(
        page["dead_letters"].as_array().unwrap().is_empty(),
        "{page}"
    );
    let (status, problem) = server
        .post(&format!("/v1/dead-letters/{id}/redeliver"), &json!({}))
        .await;
    assert_eq!(status, 404, "{problem}");
}

async fn a_triggered_workflow_runs_once_per_event(transport: Transport, test: &str) {
    let services = Services::start().await;
    let config = services.config().replace(
        "[workflows.order_processing]",
        "[workflows.order_processing]\ntrigger = \"order.placed\"",
    );
    let section = transport.section(test).await;
    let server = Server::start(&format!("{config}\n{section}")).await;
    let event_id = publish(&server, "order.placed", order("t-1", 7, 20.0)).await;
    let run = server
        .until_terminal(&format!("order_processing.{event_id}"))
        .await;
    assert_eq!(run["status"], "completed", "{run}");
    let ledger = services.order("t-1").await;
    assert_eq!(ledger["counts"]["payments_captured"], 1, "{ledger}");
}

#[tokio::test]
async fn bad_events_are_refused_with_a_reason() {
    let (_services, server) = setup(Transport::Embedded, "", "").await;
    for (topic, body, why) in [
        ("order..x", "{}", "topic"),
        ("order.x", "{not json", "JSON"),
    ] {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/events/{topic}", server.url))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let problem: Value = response.json().await.unwrap();
        assert!(
            problem["detail"].as_str().unwrap().contains(why),
            "{problem}"
        );
    }
    let (status, _) = server.get("/v1/dead-letters?limit=0").await;
    assert_eq!(status, 400);
}

/// An event as the brokers carry it: CloudEvents 1.0 JSON.
fn cloud_event(id: &str, topic: &str, data: Value) -> Value {
    flowhost::events::cloud_event(&flowhost::model::PublishedEvent {
        id: id.into(),
        topic: topic.into(),
        source: "test".into(),
        time_ms: 1,
        correlation_id: None,
        key: None,
        data: data.to_string(),
        traceparent: None,
    })
}

/// A broker of the test's own, which it can stop and start: the machine's must stay up for
/// the other tests. Its state lives in a directory of its own and survives restarts.
struct OwnBroker {
    kind: Transport,
    child: Option<std::process::Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnBroker {
    async fn start(kind: Transport) -> OwnBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut broker = OwnBroker {
            kind,
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        broker.resume().await;
        broker
    }

    /// The `[events.transport]` section that points at this broker.
    fn section(&self) -> String {
        match self.kind {
            Transport::Nats => nats_section(&format!("nats://127.0.0.1:{}", self.port), "OUTAGE"),
            Transport::Redis => format!(
                "[events.transport]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n",
                self.port
            ),
            _ => unreachable!("only NATS and Redis run as a test's own broker"),
        }
    }

    /// Starts the broker again on the same port and state.
    async fn resume(&mut self) {
        let port = self.port.to_string();
        let mut command = match self.kind {
            Transport::Nats => {
                let mut command = std::process::Command::new("nats-server");
                command.args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"]);
                command.arg(self.dir.path());
                command
            }
            Transport::Redis => {
                let mut command = std::process::Command::new("redis-server");
                command.args(["--bind", "127.0.0.1", "--port", &port, "--save", ""]);
                command.args(["--appendonly", "yes", "--dir"]);
                command.arg(self.dir.path());
                command
            }
            _ => unreachable!("only NATS and Redis run as a test's own broker"),
        };
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the broker is installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the broker did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn nats_events_published_while_the_broker_is_down_arrive_once_it_is_back() {
    outage(Transport::Nats).await;
}

#[tokio::test]
async fn redis_events_published_while_the_broker_is_down_arrive_once_it_is_back() {
    outage(Transport::Redis).await;
}

async fn outage(kind: Transport) {
    let mut broker = OwnBroker::start(kind).await;
    let services = Services::start().await;
    let server = Server::start(&format!("{}\n{}", services.config(), broker.section())).await;
    publish(&server, "order.confirmed", json!({"order_id": "b-0"})).await;
    assert_eq!(
        channels(&services, "b-0", 1).await,
        ["email"],
        "delivered while up"
    );

    broker.stop();
    for i in 1..=5 {
        // Durable in the outbox: the API answers while the broker is away.
        publish(
            &server,
            "order.confirmed",
            json!({"order_id": format!("b-{i}")}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        channels(&services, "b-1", 0).await.is_empty(),
        "nothing can travel yet"
    );
    broker.resume().await;
    for i in 1..=5 {
        assert_eq!(
            channels(&services, &format!("b-{i}"), 1).await,
            ["email"],
            "event {i} after the broker came back\n{}",
            server.log()
        );
    }
}

#[tokio::test]
async fn lifecycle_events_announce_how_runs_ended() {
    // A workflow triggered by compensated runs: its run's context is the event's data.
    let extra = format!(
        r#"
[plugins.probe]
path = "{probe}"

[workflows.after_compensation]
trigger = "flowhost.run.compensated"
steps = [{{ name = "echo", plugin = "probe", compensate = false }}]
"#,
        probe = flowhost_test_artifacts::PROBE,
    );
    let (_services, server) = setup(Transport::Embedded, "", &extra).await;
    let (_, declined) = server
        .post(
            "/v1/workflows/order_processing/runs?wait=30s",
            &order("l-1", 7, 5000.0),
        )
        .await;
    assert_eq!(declined["status"], "compensated", "{declined}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let announced = loop {
        let (_, runs) = server.get("/v1/runs?workflow=after_compensation").await;
        if let Some(run) = runs["runs"].as_array().unwrap().first() {
            break server.until_terminal(run["id"].as_str().unwrap()).await;
        }
        assert!(Instant::now() < deadline, "no run was triggered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(announced["status"], "completed", "{announced}");
    let context = &announced["context"];
    assert_eq!(context["run_id"], declined["id"], "{context}");
    assert_eq!(context["workflow"], "order_processing");
    assert_eq!(context["status"], "compensated");
    assert_eq!(context["error"]["step"], "process_payment", "{context}");
}

#[tokio::test]
async fn redis_entries_a_dead_host_left_pending_are_claimed() {
    use ::redis::AsyncCommands;
    let prefix = "test:claim";
    delete_keys(prefix).await;
    let stream = format!("{prefix}:notify-customer");
    let client = ::redis::Client::open(REDIS_URL).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = connection
        .xgroup_create_mkstream(&stream, "flowhost", "0")
        .await
        .unwrap();
    let event = cloud_event(
        "01JCLAIMED0000000000000000",
        "order.confirmed",
        json!({"order_id": "c-1"}),
    );
    let _: String = connection
        .xadd(
            &stream,
            "*",
            &[("event", event.to_string()), ("attempts", "0".into())],
        )
        .await
        .unwrap();
    // A host takes the entry and dies before acknowledging it.
    let options = ::redis::streams::StreamReadOptions::default()
        .group("flowhost", "a-host-that-died")
        .count(1);
    let taken: ::redis::streams::StreamReadReply = connection
        .xread_options(&[&stream], &[">"], &options)
        .await
        .unwrap();
    assert_eq!(taken.keys[0].ids.len(), 1);

    let services = Services::start().await;
    let section = format!(
        "[events.transport]\nkind = \"redis\"\nurl = \"{REDIS_URL}\"\nprefix = \"{prefix}\"\nclaim-after = \"200ms\"\n"
    );
    let _server = Server::start(&format!("{}\n{section}", services.config())).await;
    assert_eq!(channels(&services, "c-1", 1).await, ["email"]);
}

#[tokio::test]
async fn a_step_attempt_that_fails_after_publishing_releases_nothing() {
    // The probe's step name picks what it does: `publish` publishes, `publish_then_fail`
    // publishes and then fails (retryably, so every attempt publishes again).
    let extra = format!(
        r#"
[plugins.probe]
path = "{probe}"
publish = ["order.*"]

[workflows.publishes]
steps = [{{ name = "publish", plugin = "probe", compensate = false }}]
[workflows.publishes_then_fails]
steps = [{{ name = "publish_then_fail", plugin = "probe", compensate = false, retry = {{ attempts = 3, initial-backoff = "10ms", max-backoff = "10ms" }} }}]
"#,
        probe = flowhost_test_artifacts::PROBE,
    );
    let (services, server) = setup(Transport::Embedded, "", &extra).await;
    let context = |order: &str| json!({"topic": "order.confirmed", "data": json!({"order_id": order}).to_string()});
    let (_, failed) = server
        .post(
            "/v1/workflows/publishes_then_fails/runs?wait=30s",
            &context("p-failed"),
        )
        .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["steps"][0]["attempts"], 3, "{failed}");
    let (_, done) = server
        .post("/v1/workflows/publishes/runs?wait=30s", &context("p-done"))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    // The completed step's event arrives; by then the failed attempts' would have too.
    assert_eq!(channels(&services, "p-done", 1).await, ["email"]);
    assert!(channels(&services, "p-failed", 0).await.is_empty());
}

#[tokio::test]
async fn a_trigger_event_delivered_twice_starts_one_run() {
    use ::redis::AsyncCommands;
    let prefix = "test:twice";
    delete_keys(prefix).await;
    let services = Services::start().await;
    // The broker hands the same event out twice, as an at-least-once broker may.
    let stream = format!("{prefix}:workflow.order_processing");
    let event = cloud_event(
        "01JTWICE000000000000000000",
        "order.placed",
        order("twice-1", 7, 30.0),
    );
    let client = ::redis::Client::open(REDIS_URL).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    for _ in 0..2 {
        let _: String = connection
            .xadd(
                &stream,
                "*",
                &[("event", event.to_string()), ("attempts", "0".into())],
            )
            .await
            .unwrap();
    }
    let config = services.config().replace(
        "[workflows.order_processing]",
        "[workflows.order_processing]\ntrigger = \"order.placed\"",
    );
    let section = format!(
        "[events.transport]\nkind = \"redis\"\nurl = \"{REDIS_URL}\"\nprefix = \"{prefix}\"\n"
    );
    let server = Server::start(&format!("{config}\n{section}")).await;
    let run = server
        .until_terminal("order_processing.01JTWICE000000000000000000")
        .await;
    assert_eq!(run["status"], "completed", "{run}");
    // Both deliveries are done once the stream is drained.
    let deadline = Instant::now() + Duration::from_secs(10);
    while connection.xlen::<_, usize>(&stream).await.unwrap() > 0 {
        assert!(Instant::now() < deadline, "the stream did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, runs) = server.get("/v1/runs?workflow=order_processing").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
    let ledger = services.order("twice-1").await;
    assert_eq!(ledger["counts"]["payments_captured"], 1, "{ledger}");
}
