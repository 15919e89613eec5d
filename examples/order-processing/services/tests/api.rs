//! The services' API, driven through `app()` with `oneshot`, and once over a real loopback
//! server started with `run`.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

/// One app, and requests to it.
#[derive(Clone)]
struct Client {
    app: Router,
}

/// An answer: status, headers, JSON body (`Null` if empty).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Client {
    fn new() -> Self {
        Self {
            app: order_services::app(),
        }
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!("{uri}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes))
            })
        };
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Method::GET, uri, None, None).await
    }

    async fn post(&self, uri: &str, body: Value) -> Answer {
        self.send(Method::POST, uri, None, Some(body)).await
    }

    async fn post_keyed(&self, uri: &str, key: &str, body: Value) -> Answer {
        self.send(Method::POST, uri, Some(key), Some(body)).await
    }

    async fn ledger(&self) -> Value {
        let answer = self.get("/ledger").await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.body
    }
}

fn payment(order_id: &str, amount: f64) -> Value {
    json!({ "order_id": order_id, "amount": amount, "method": "card" })
}

fn reservation(order_id: &str, product_id: &str) -> Value {
    json!({ "order_id": order_id, "product_id": product_id, "quantity": 2 })
}

fn order(order_id: &str) -> Value {
    json!({
        "order_id": order_id,
        "user_id": 7,
        "items": [{ "product_id": "widget", "quantity": 2 }],
        "total_amount": 59.98,
    })
}

#[tokio::test]
async fn users_exist_from_1_to_100_and_13_is_inactive() {
    let client = Client::new();
    let user = client.get("/users/7").await;
    assert_eq!(user.status, StatusCode::OK);
    assert_eq!(
        user.body,
        json!({ "id": 7, "name": "User 7", "email": "user7@example.com", "active": true })
    );
    let inactive = client.get("/users/13").await;
    assert_eq!(inactive.status, StatusCode::OK);
    assert_eq!(inactive.body["active"], false);
    assert_eq!(client.get("/users/100").await.body["active"], true);
    for unknown in ["/users/0", "/users/101", "/users/abc"] {
        let answer = client.get(unknown).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{unknown}");
        assert!(answer.body["error"].is_string(), "{unknown}");
    }
}

#[tokio::test]
async fn a_repeated_idempotency_key_pays_once_and_answers_the_same() {
    let client = Client::new();
    let first = client
        .post_keyed("/payments", "run-1:pay:execute", payment("o-1", 42.5))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.body["status"], "captured");
    assert_eq!(first.body["order_id"], "o-1");
    assert_eq!(first.body["amount"], 42.5);
    assert!(
        first.body["payment_id"]
            .as_str()
            .unwrap()
            .starts_with("pay_")
    );
    assert!(!first.headers.contains_key("idempotent-replayed"));

    let again = client
        .post_keyed("/payments", "run-1:pay:execute", payment("o-1", 42.5))
        .await;
    assert_eq!(again.status, first.status);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");

    let ledger = client.ledger().await;
    assert_eq!(ledger["counts"]["payments_captured"], 1);
    assert_eq!(ledger["requests"]["payments"], 2);
}

#[tokio::test]
async fn without_a_key_every_request_has_its_effect() {
    let client = Client::new();
    let first = client.post("/payments", payment("o-1", 10.0)).await;
    let second = client.post("/payments", payment("o-1", 10.0)).await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_ne!(first.body["payment_id"], second.body["payment_id"]);
    assert_eq!(client.ledger().await["counts"]["payments_captured"], 2);
}

#[tokio::test]
async fn keys_are_scoped_per_route() {
    let client = Client::new();
    let paid = client
        .post_keyed("/payments", "k", payment("o-1", 10.0))
        .await;
    let ordered = client.post_keyed("/orders", "k", order("o-1")).await;
    let reserved = client
        .post_keyed("/reservations", "k", reservation("o-1", "widget"))
        .await;
    assert_eq!(paid.status, StatusCode::CREATED);
    assert_eq!(ordered.status, StatusCode::CREATED);
    assert_eq!(ordered.body["status"], "created");
    assert_eq!(reserved.status, StatusCode::CREATED);
    let refunded = client
        .post_keyed(
            &format!(
                "/payments/{}/refund",
                paid.body["payment_id"].as_str().unwrap()
            ),
            "k",
            json!({}),
        )
        .await;
    assert_eq!(refunded.status, StatusCode::OK);
    assert!(!refunded.headers.contains_key("idempotent-replayed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_repeats_of_one_key_pay_once() {
    let client = Client::new();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .post_keyed("/payments", "same", payment("o-1", 5.0))
                    .await
                    .body
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for task in tasks {
        bodies.push(task.await.unwrap());
    }
    assert!(bodies.iter().all(|body| *body == bodies[0]));
    assert_eq!(client.ledger().await["counts"]["payments_captured"], 1);
}

#[tokio::test]
async fn a_payment_above_1000_is_declined() {
    let client = Client::new();
    let declined = client.post("/payments", payment("o-1", 1000.01)).await;
    assert_eq!(declined.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(declined.body, json!({ "error": "payment declined" }));
    assert_eq!(
        client
            .post("/payments", payment("o-1", 1000.0))
            .await
            .status,
        StatusCode::CREATED
    );
    let ledger = client.ledger().await;
    assert_eq!(ledger["counts"]["payments_captured"], 1);
    assert_eq!(ledger["payments"]["captured"][0]["amount"], 1000.0);
}

#[tokio::test]
async fn out_of_stock_is_a_conflict_and_reserves_nothing() {
    let client = Client::new();
    let answer = client
        .post("/reservations", reservation("o-1", "out-of-stock"))
        .await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .contains("out of stock")
    );
    let ledger = client.ledger().await;
    assert_eq!(ledger["counts"]["reservations_active"], 0);
    assert_eq!(ledger["requests"]["reservations"], 1);
}

#[tokio::test]
async fn injected_failures_come_first_and_are_not_remembered() {
    let client = Client::new();
    let set = client
        .post("/admin/fail", json!({ "route": "payments", "times": 2 }))
        .await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(
        set.body,
        json!({ "route": "payments", "times": 2, "status": 503 })
    );

    for _ in 0..2 {
        let failed = client
            .post_keyed("/payments", "k", payment("o-1", 10.0))
            .await;
        assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(failed.body["error"].is_string());
    }
    let paid = client
        .post_keyed("/payments", "k", payment("o-1", 10.0))
        .await;
    assert_eq!(paid.status, StatusCode::CREATED);
    assert!(!paid.headers.contains_key("idempotent-replayed"));

    let ledger = client.ledger().await;
    assert_eq!(ledger["counts"]["payments_captured"], 1);
    assert_eq!(ledger["requests"]["payments"], 3);

    // Another route and another status; other routes are untouched.
    client
        .post(
            "/admin/fail",
            json!({ "route": "users", "times": 1, "status": 429 }),
        )
        .await;
    assert_eq!(
        client.get("/users/1").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(client.get("/users/1").await.status, StatusCode::OK);
    assert_eq!(client.ledger().await["requests"]["users"], 2);
}

#[tokio::test]
async fn admin_fail_rejects_what_it_cannot_do() {
    let client = Client::new();
    let unknown = client
        .post("/admin/fail", json!({ "route": "shipping", "times": 1 }))
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unknown.body["error"].is_string());
    let not_a_failure = client
        .post(
            "/admin/fail",
            json!({ "route": "users", "times": 1, "status": 200 }),
        )
        .await;
    assert_eq!(not_a_failure.status, StatusCode::UNPROCESSABLE_ENTITY);
    let cleared = client
        .post("/admin/fail", json!({ "route": "users", "times": 0 }))
        .await;
    assert_eq!(cleared.status, StatusCode::OK);
    assert_eq!(client.get("/users/1").await.status, StatusCode::OK);
}

#[tokio::test]
async fn compensations_show_in_the_ledger() {
    let client = Client::new();
    let reserved = client
        .post("/reservations", reservation("o-1", "widget"))
        .await;
    assert_eq!(reserved.status, StatusCode::CREATED);
    assert_eq!(reserved.body["status"], "active");
    assert_eq!(reserved.body["quantity"], 2);
    let paid = client.post("/payments", payment("o-1", 59.98)).await;
    let ordered = client.post("/orders", order("o-1")).await;
    client.post("/orders", order("o-2")).await;

    let reservation_id = reserved.body["reservation_id"].as_str().unwrap();
    let payment_id = paid.body["payment_id"].as_str().unwrap();
    let order_id = ordered.body["order_id"].as_str().unwrap();
    assert_eq!(order_id, "o-1");

    let uri = format!("/reservations/{reservation_id}");
    let released = client.send(Method::DELETE, &uri, None, None).await;
    assert_eq!(released.status, StatusCode::OK);
    assert_eq!(released.body["status"], "released");
    let refund = format!("/payments/{payment_id}/refund");
    for _ in 0..2 {
        let refunded = client.post(&refund, json!({})).await;
        assert_eq!(refunded.status, StatusCode::OK);
        assert_eq!(refunded.body["status"], "refunded");
        assert_eq!(refunded.body["payment_id"], payment_id);
    }
    let cancelled = client.post("/orders/o-1/cancel", json!({})).await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(cancelled.body["status"], "cancelled");

    let one = client.get("/ledger/orders/o-1").await.body;
    assert_eq!(
        one["counts"],
        json!({
            "reservations_active": 0, "reservations_released": 1,
            "payments_captured": 0, "payments_refunded": 1,
            "orders_active": 0, "orders_cancelled": 1,
            "notifications": 0,
        })
    );
    assert_eq!(
        one["reservations"]["released"][0]["reservation_id"],
        reservation_id
    );
    assert_eq!(one["payments"]["refunded"][0]["order_id"], "o-1");
    assert!(one.get("requests").is_none());
    let all = client.ledger().await;
    assert_eq!(all["counts"]["orders_active"], 1);
    assert_eq!(all["orders"]["active"][0]["order_id"], "o-2");
    assert_eq!(all["requests"]["refunds"], 2);
    assert_eq!(
        client.get("/ledger/orders/nobody").await.body["counts"]["orders_active"],
        0
    );

    for unknown in [
        client
            .send(Method::DELETE, "/reservations/res_x", None, None)
            .await,
        client.post("/payments/pay_x/refund", json!({})).await,
        client.post("/orders/o-x/cancel", json!({})).await,
    ] {
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert!(unknown.body["error"].is_string());
    }
}

#[tokio::test]
async fn an_order_id_is_taken_once() {
    let client = Client::new();
    assert_eq!(
        client.post("/orders", order("o-1")).await.status,
        StatusCode::CREATED
    );
    let again = client.post("/orders", order("o-1")).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.body["error"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
}

#[tokio::test]
async fn reset_forgets_everything() {
    let client = Client::new();
    let first = client
        .post_keyed("/payments", "k", payment("o-1", 10.0))
        .await;
    client
        .post("/admin/fail", json!({ "route": "orders", "times": 5 }))
        .await;
    client.post("/admin/delay", json!({ "ms": 10 })).await;

    let reset = client.post("/admin/reset", json!({})).await;
    assert_eq!(reset.status, StatusCode::OK);
    let ledger = client.ledger().await;
    assert_eq!(ledger["counts"]["payments_captured"], 0);
    assert!(
        ledger["requests"]
            .as_object()
            .unwrap()
            .values()
            .all(|n| *n == 0)
    );

    let after = client
        .post_keyed("/payments", "k", payment("o-1", 10.0))
        .await;
    assert_eq!(after.status, StatusCode::CREATED);
    assert_ne!(after.body["payment_id"], first.body["payment_id"]);
    assert_eq!(
        client.post("/orders", order("o-1")).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn a_delay_holds_every_service_answer_but_not_admin_or_ledger() {
    let client = Client::new();
    client.post("/admin/delay", json!({ "ms": 150 })).await;
    let started = Instant::now();
    assert_eq!(client.get("/users/1").await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));

    let started = Instant::now();
    client.ledger().await;
    client.post("/admin/delay", json!({ "ms": 0 })).await;
    client.get("/users/1").await;
    assert!(started.elapsed() < Duration::from_millis(150));
}

#[tokio::test]
async fn errors_are_json_and_methods_are_checked() {
    let client = Client::new();
    let unknown = client.get("/shipping").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.body["error"].is_string());
    let wrong_method = client.get("/payments").await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(wrong_method.body["error"].is_string());
    let bad_body = client
        .post("/payments", json!({ "order_id": "o-1", "amount": "lots" }))
        .await;
    assert!(bad_body.status.is_client_error());
    assert!(bad_body.body["error"].is_string());
    // A wrong method is not counted against the route.
    assert_eq!(client.ledger().await["requests"]["payments"], 1);
}

#[tokio::test]
async fn run_serves_on_a_loopback_listener_until_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(order_services::run(listener, async {
        stopped.await.ok();
    }));

    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let user = http.get(url("/users/13")).send().await.unwrap();
    assert_eq!(user.status(), 200);
    let user: Value = serde_json::from_str(&user.text().await.unwrap()).unwrap();
    assert_eq!(user["active"], false);

    let paid = http
        .post(url("/payments"))
        .header("content-type", "application/json")
        .header("idempotency-key", "k")
        .body(payment("o-1", 1.0).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 201);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(http.get(url("/users/1")).send().await.is_err());
}
