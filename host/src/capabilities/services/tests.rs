//! The services capability against real loopback servers, without wasm.

use std::sync::Mutex;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap as AxumHeaders, StatusCode};
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::routing::any;

use super::*;

/// What the test server does with each request: answers with `status` for the first
/// `failures` requests, then 200 with `body`; sleeps `delay` before answering.
#[derive(Default)]
struct Script {
    failures: u32,
    status: u16,
    retry_after: Option<&'static str>,
    delay: Duration,
    body: String,
    seen: AtomicU32,
    headers: Mutex<Vec<AxumHeaders>>,
}

async fn scripted(State(script): State<Arc<Script>>, headers: AxumHeaders) -> AxumResponse {
    let n = script.seen.fetch_add(1, Ordering::SeqCst);
    script.headers.lock().unwrap().push(headers);
    tokio::time::sleep(script.delay).await;
    if n < script.failures {
        let mut response = StatusCode::from_u16(script.status).unwrap().into_response();
        if let Some(after) = script.retry_after {
            response
                .headers_mut()
                .insert("retry-after", after.parse().unwrap());
        }
        return response;
    }
    script.body.clone().into_response()
}

async fn serve(script: Script) -> (String, Arc<Script>) {
    let script = Arc::new(script);
    let app = Router::new()
        .fallback(any(scripted))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, script)
}

fn fast(url: &str) -> ServiceConfig {
    ServiceConfig {
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..ServiceConfig::new(url)
    }
}

fn ctx(configs: &[(&str, ServiceConfig)], grants: &[&str]) -> ServicesCtx {
    let configs = configs
        .iter()
        .map(|(n, c)| (n.to_string(), c.clone()))
        .collect();
    let services = Arc::new(Services::new(&configs).unwrap());
    let grants: Vec<String> = grants.iter().map(|g| g.to_string()).collect();
    let meta = CallMeta {
        request_id: "run-7".into(),
        idempotency_key: Some("run-7:pay:execute".into()),
        traceparent: None,
    };
    ServicesCtx::new(services, grants.into(), meta)
}

fn get(service: &str, path: &str) -> Request {
    Request {
        service: service.into(),
        method: Method::Get,
        path: path.into(),
        headers: vec![],
        body: None,
        timeout_ms: None,
    }
}

#[tokio::test]
async fn retries_5xx_with_backoff_then_succeeds_with_host_headers() {
    let (url, script) = serve(Script {
        failures: 2,
        status: 503,
        body: "ok".into(),
        ..Script::default()
    })
    .await;
    let mut config = fast(&url);
    config.token_env = Some("FLOWHOST_TEST_TOKEN_RETRIES".into());
    let mut services = {
        // Tokens are resolved when `Services` is built; set the variable just for that.
        temp_env("FLOWHOST_TEST_TOKEN_RETRIES", "s3cret", || {
            ctx(&[("pay", config)], &["pay"])
        })
    };
    let mut request = get("pay", "/charge");
    request.headers = vec![
        ("idempotency-key".into(), "item-1".into()),
        ("Authorization".into(), "Bearer forged".into()),
        ("x-custom".into(), "1".into()),
    ];
    let response = services.call(request).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ok");
    assert_eq!(
        script.seen.load(Ordering::SeqCst),
        3,
        "two failures, then success"
    );
    for headers in script.headers.lock().unwrap().iter() {
        assert_eq!(
            headers["authorization"], "Bearer s3cret",
            "host credentials, not the guest's"
        );
        assert_eq!(headers["x-request-id"], "run-7");
        assert_eq!(headers["idempotency-key"], "run-7:pay:execute/item-1");
        assert_eq!(headers["x-custom"], "1");
    }
}

#[tokio::test]
async fn gives_up_after_the_configured_retries_with_the_last_response() {
    let (url, script) = serve(Script {
        failures: 100,
        status: 500,
        ..Script::default()
    })
    .await;
    let config = ServiceConfig {
        retries: 2,
        ..fast(&url)
    };
    let mut services = ctx(&[("s", config)], &["s"]);
    let err = services.call(get("s", "/")).await.unwrap_err();
    assert!(
        matches!(err, CallError::Http(Response { status: 500, .. })),
        "{err:?}"
    );
    assert_eq!(
        script.seen.load(Ordering::SeqCst),
        3,
        "first attempt + 2 retries"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (url, script) = serve(Script {
        failures: 100,
        status: 404,
        ..Script::default()
    })
    .await;
    let mut services = ctx(&[("s", fast(&url))], &["s"]);
    let err = services.call(get("s", "/missing")).await.unwrap_err();
    assert!(
        matches!(err, CallError::Http(Response { status: 404, .. })),
        "{err:?}"
    );
    assert_eq!(script.seen.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn honours_retry_after() {
    let (url, script) = serve(Script {
        failures: 1,
        status: 429,
        retry_after: Some("1"),
        body: "ok".into(),
        ..Script::default()
    })
    .await;
    let mut services = ctx(&[("s", fast(&url))], &["s"]);
    let start = Instant::now();
    services.call(get("s", "/")).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(script.seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn times_out_each_attempt() {
    let (url, script) = serve(Script {
        delay: Duration::from_secs(5),
        ..Script::default()
    })
    .await;
    let config = ServiceConfig {
        timeout: Duration::from_millis(100),
        retries: 1,
        ..fast(&url)
    };
    let mut services = ctx(&[("s", config)], &["s"]);
    let start = Instant::now();
    let err = services.call(get("s", "/")).await.unwrap_err();
    assert!(matches!(err, CallError::Timeout(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(script.seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_guest_timeout_cannot_exceed_the_service_timeout_but_can_shorten_it() {
    let (url, _script) = serve(Script {
        delay: Duration::from_millis(500),
        ..Script::default()
    })
    .await;
    let config = ServiceConfig {
        retries: 0,
        ..fast(&url)
    };
    let mut services = ctx(&[("s", config)], &["s"]);
    let mut request = get("s", "/");
    request.timeout_ms = Some(50);
    assert!(matches!(
        services.call(request).await,
        Err(CallError::Timeout(_))
    ));
}

#[tokio::test]
async fn caps_the_response_body() {
    let (url, _script) = serve(Script {
        body: "x".repeat(2048),
        ..Script::default()
    })
    .await;
    let config = ServiceConfig {
        max_response_bytes: 1024,
        ..fast(&url)
    };
    let mut services = ctx(&[("s", config)], &["s"]);
    let err = services.call(get("s", "/")).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Other(m) if m.contains("1024")),
        "{err:?}"
    );
}

#[tokio::test]
async fn skips_an_instance_that_refuses_connections() {
    let (live, script) = serve(Script {
        body: "ok".into(),
        ..Script::default()
    })
    .await;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let config = ServiceConfig {
        urls: vec![dead, live],
        ..fast("http://unused")
    };
    let mut services = ctx(&[("s", config)], &["s"]);
    for _ in 0..10 {
        services.call(get("s", "/")).await.unwrap();
    }
    // At most one attempt went to the dead instance; every call was answered by the live one.
    assert_eq!(script.seen.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn spreads_calls_across_instances() {
    let (a, script_a) = serve(Script {
        body: "a".into(),
        ..Script::default()
    })
    .await;
    let (b, script_b) = serve(Script {
        body: "b".into(),
        ..Script::default()
    })
    .await;
    let config = ServiceConfig {
        urls: vec![a, b],
        ..fast("http://unused")
    };
    let mut services = ctx(&[("s", config)], &["s"]);
    for _ in 0..10 {
        services.call(get("s", "/")).await.unwrap();
    }
    assert_eq!(script_a.seen.load(Ordering::SeqCst), 5);
    assert_eq!(script_b.seen.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn reports_connection_errors_after_retries() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let config = ServiceConfig {
        retries: 1,
        ..fast(&dead)
    };
    let mut services = ctx(&[("s", config)], &["s"]);
    assert!(matches!(
        services.call(get("s", "/")).await,
        Err(CallError::Connection(_))
    ));
}

#[tokio::test]
async fn grants_are_enforced() {
    let mut services = ctx(
        &[
            ("a", fast("http://127.0.0.1:9")),
            ("b", fast("http://127.0.0.1:9")),
        ],
        &["a"],
    );
    assert!(matches!(
        services.call(get("b", "/")).await,
        Err(CallError::Denied(_))
    ));
    assert!(matches!(
        services.call(get("nope", "/")).await,
        Err(CallError::UnknownService(_))
    ));
    assert!(matches!(
        services.call(get("a", "no-slash")).await,
        Err(CallError::Other(_))
    ));
}

#[test]
fn a_missing_token_variable_is_named() {
    let mut config = ServiceConfig::new("http://127.0.0.1:1");
    config.token_env = Some("FLOWHOST_TEST_TOKEN_THAT_IS_NOT_SET".into());
    let configs = BTreeMap::from([("s".to_string(), config)]);
    let err = Services::new(&configs).err().unwrap();
    assert_eq!(
        err.to_string(),
        "services.s.token-env: environment variable `FLOWHOST_TEST_TOKEN_THAT_IS_NOT_SET` is not set"
    );
}

/// Runs `f` with `var` set, through figment's jail, which serializes environment changes.
#[expect(
    clippy::result_large_err,
    reason = "the jail's closure returns figment's error type"
)]
fn temp_env<R>(var: &str, value: &str, f: impl FnOnce() -> R) -> R {
    let mut out = None;
    figment::Jail::expect_with(|jail| {
        jail.set_env(var, value);
        out = Some(f());
        Ok(())
    });
    out.unwrap()
}
