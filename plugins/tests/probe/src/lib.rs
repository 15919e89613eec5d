//! `probe`: a step plugin for the host's integration tests. The step name picks one host
//! capability, the context carries its arguments, and the step returns the raw outcome as
//! JSON, error kinds included, so a test can check exactly what the host did.
//!
//! | step | context | returns |
//! |---|---|---|
//! | `call` | `service`, `method`, `path`, `headers`?, `body`?, `timeout_ms`? | `{"ok": {status, headers, body}}` or `{"err": {kind, message, status?}}` |
//! | `cache_set` | `key`, `value`, `ttl_ms`? | `{"ok": null}` or `{"err": {kind, message}}` |
//! | `cache_get` | `key` | `{"value": str or null}` |
//! | `cache_delete` | `key` | `{"ok": null}` |
//! | `publish` | `topic`, `data` (raw text), `key`? | `{"ok": event_id}` or `{"err": {kind, message}}` |
//! | `publish_then_fail` | as `publish` | publishes, then fails with a retryable error |
//! | `log` | `level`, `message` | `{}` |
//! | `config` | `key` | `{"value": str or null}` |
//! | `info` | | the step info |
//! | `fail` | `kind` (`retryable`/`fatal`), `message` | that step error |
//! | `echo` | anything | the context, unchanged |
//! | `calls` | | `{"calls": n}`: how many `execute` calls this instance has served, this one included |
//! | `trap` | | traps (a panic) |
//!
//! A step named `<step>#<anything>` is served as `<step>`, so that one workflow can have
//! several steps of one kind (step names are unique in a workflow). Any other step, or
//! arguments of the wrong shape, fail with a fatal error. `compensate`
//! returns `{"compensated": <step>}`. It implements the raw generated trait so nothing of
//! the SDK's own mapping (errors, `null` results) stands between the test and the host.

use flowhost_sdk::bindings::flowhost::plugin::types::{StepError, StepInfo};
use flowhost_sdk::bindings::flowhost::plugin::{cache, config, events, log, services};
use flowhost_sdk::bindings::step::exports::flowhost::plugin::saga_step::Guest;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Arguments of `call`.
#[derive(Deserialize)]
struct CallArgs {
    service: String,
    method: String,
    path: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    body: Option<String>,
    timeout_ms: Option<u32>,
}

/// Arguments of `cache_set`.
#[derive(Deserialize)]
struct CacheSetArgs {
    key: String,
    value: String,
    ttl_ms: Option<u64>,
}

/// Arguments of `cache_get`, `cache_delete` and `config`.
#[derive(Deserialize)]
struct KeyArgs {
    key: String,
}

/// Arguments of `publish`.
#[derive(Deserialize)]
struct PublishArgs {
    topic: String,
    data: String,
    key: Option<String>,
}

/// Arguments of `log`.
#[derive(Deserialize)]
struct LogArgs {
    level: String,
    message: String,
}

/// Arguments of `fail`.
#[derive(Deserialize)]
struct FailArgs {
    kind: String,
    message: String,
}

/// The plugin.
struct Probe;

/// `execute` calls this instance has served: tells a test whether calls share an instance.
static CALLS: AtomicU32 = AtomicU32::new(0);

impl Guest for Probe {
    fn execute(info: StepInfo, ctx: String) -> Result<String, StepError> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let step = info
            .step
            .split_once('#')
            .map_or(info.step.as_str(), |(step, _)| step);
        let outcome = match step {
            "call" => call(args(&ctx)?)?,
            "cache_set" => cache_set(args(&ctx)?),
            "cache_get" => {
                let KeyArgs { key } = args(&ctx)?;
                let value =
                    cache::get(&key).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
                json!({ "value": value })
            }
            "cache_delete" => {
                let KeyArgs { key } = args(&ctx)?;
                cache::delete(&key);
                json!({ "ok": null })
            }
            "publish" => publish(args(&ctx)?),
            "publish_then_fail" => {
                let outcome = publish(args(&ctx)?);
                return Err(StepError::Retryable(format!(
                    "failed after publishing: {outcome}"
                )));
            }
            "log" => {
                let LogArgs { level, message } = args(&ctx)?;
                log::log(level_from(&level)?, &message);
                json!({})
            }
            "config" => {
                let KeyArgs { key } = args(&ctx)?;
                json!({ "value": config::get(&key) })
            }
            "info" => json!({
                "run_id": info.run_id,
                "workflow": info.workflow,
                "step": info.step,
                "attempt": info.attempt,
                "idempotency_key": info.idempotency_key,
            }),
            "fail" => {
                let FailArgs { kind, message } = args(&ctx)?;
                return Err(match kind.as_str() {
                    "retryable" => StepError::Retryable(message),
                    "fatal" => StepError::Fatal(message),
                    other => StepError::Fatal(format!("unknown failure kind `{other}`")),
                });
            }
            "echo" => return Ok(ctx),
            "calls" => json!({ "calls": calls }),
            "trap" => panic!("probe: trap on request"),
            other => return Err(StepError::Fatal(format!("unknown step `{other}`"))),
        };
        Ok(outcome.to_string())
    }

    fn compensate(info: StepInfo, _ctx: String) -> Result<String, StepError> {
        Ok(json!({ "compensated": info.step }).to_string())
    }
}

/// The context parsed as a step's arguments; a mismatch is a fatal error (a broken test).
fn args<T: DeserializeOwned>(ctx: &str) -> Result<T, StepError> {
    serde_json::from_str(ctx).map_err(|error| StepError::Fatal(format!("bad arguments: {error}")))
}

/// Step `call`: one `services::call`, its outcome as JSON.
fn call(args: CallArgs) -> Result<Value, StepError> {
    let method = match args.method.to_ascii_lowercase().as_str() {
        "get" => services::Method::Get,
        "head" => services::Method::Head,
        "post" => services::Method::Post,
        "put" => services::Method::Put,
        "patch" => services::Method::Patch,
        "delete" => services::Method::Delete,
        other => return Err(StepError::Fatal(format!("unknown method `{other}`"))),
    };
    let request = services::Request {
        service: args.service,
        method,
        path: args.path,
        headers: args.headers,
        body: args.body.map(String::into_bytes),
        timeout_ms: args.timeout_ms,
    };
    Ok(match services::call(&request) {
        Ok(response) => json!({
            "ok": {
                "status": response.status,
                "headers": response.headers,
                "body": String::from_utf8_lossy(&response.body),
            }
        }),
        Err(error) => {
            let (kind, message, status) = match error {
                services::CallError::Denied(message) => ("denied", message, None),
                services::CallError::UnknownService(message) => ("unknown-service", message, None),
                services::CallError::Timeout(message) => ("timeout", message, None),
                services::CallError::Connection(message) => ("connection", message, None),
                services::CallError::Other(message) => ("other", message, None),
                services::CallError::Http(response) => (
                    "http",
                    String::from_utf8_lossy(&response.body).into_owned(),
                    Some(response.status),
                ),
            };
            let mut err = json!({ "kind": kind, "message": message });
            if let Some(status) = status {
                err["status"] = json!(status);
            }
            json!({ "err": err })
        }
    })
}

/// Step `cache_set`.
fn cache_set(args: CacheSetArgs) -> Value {
    match cache::set(&args.key, args.value.as_bytes(), args.ttl_ms) {
        Ok(()) => json!({ "ok": null }),
        Err(cache::CacheError::InvalidKey(message)) => {
            json!({ "err": { "kind": "invalid-key", "message": message } })
        }
        Err(cache::CacheError::TooLarge(message)) => {
            json!({ "err": { "kind": "too-large", "message": message } })
        }
    }
}

/// Step `publish`: `data` goes to the host as it is, valid JSON or not.
fn publish(args: PublishArgs) -> Value {
    match events::publish(&args.topic, &args.data, args.key.as_deref()) {
        Ok(id) => json!({ "ok": id }),
        Err(error) => {
            let (kind, message) = match error {
                events::PublishError::Denied(message) => ("denied", message),
                events::PublishError::InvalidTopic(message) => ("invalid-topic", message),
                events::PublishError::InvalidData(message) => ("invalid-data", message),
                events::PublishError::Unavailable(message) => ("unavailable", message),
            };
            json!({ "err": { "kind": kind, "message": message } })
        }
    }
}

/// The log level called `name`.
fn level_from(name: &str) -> Result<log::Level, StepError> {
    Ok(match name {
        "trace" => log::Level::Trace,
        "debug" => log::Level::Debug,
        "info" => log::Level::Info,
        "warn" => log::Level::Warn,
        "error" => log::Level::Error,
        other => return Err(StepError::Fatal(format!("unknown log level `{other}`"))),
    })
}

flowhost_sdk::bindings::step::export!(Probe with_types_in flowhost_sdk::bindings::step);
