//! `flowhost:plugin/services`: calls to named services, with the host's credentials,
//! request ids, idempotency keys, timeouts, retries and passive health checks.
//!
//! - [`Services`] is built once from `[services]` and shared: one connection pool, each
//!   service's instances and their health.
//! - [`ServicesCtx`] is the per-call state: which services the plugin is granted and the
//!   ids of the call it serves. `host.rs` implements the WIT `Host` trait on it.
//!
//! A call tries the service's instances in rotation, skipping any that refused a connection
//! or timed out within the cool-down; connection errors, timeouts, 429 and 5xx are retried
//! with exponential backoff and jitter (the [`crate::model::RetryPolicy`] that steps and
//! deliveries use too), or after `Retry-After` when the service sends one.
//!
//! A service's instances are listed in its configuration, or found in a registry (Consul,
//! DNS SRV) and kept current by a task of its own: see [`discovery`]. `instances.rs` holds
//! the set calls rotate over, which discovery swaps whole.
//!
//! A call of a recorded workflow's step ([`ServicesCtx::recording`]) keeps each call and
//! its answer ([`crate::model::recording`]), the service's token blanked; a replay
//! ([`ServicesCtx::replaying`]) answers calls from such a recording, in order, with no
//! network.

mod config;
mod discovery;
mod host;
mod instances;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio_util::sync::{CancellationToken, DropGuard};

pub use self::config::{DiscoverySource, InvalidService, ServiceConfig, ServiceDiscovery};
use self::discovery::Discovery;
use self::instances::{Endpoint, Instance, Instances};
pub use crate::bindings::services::{CallError, Method, Request, Response};
use crate::model::recording::{
    RecordedBody, RecordedCall, RecordedResponse, RecordedResult, public_headers,
};
use crate::telemetry::metrics::{SERVICE_CALL_DURATION, SERVICE_CALLS, SERVICE_RETRIES};
use crate::telemetry::trace::{Kind, Span, TRACEPARENT};

/// The longest `Retry-After` the host honours; the call's deadline bounds it further.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Headers the host sets itself; a plugin's values for them are ignored.
const HOST_HEADERS: [&str; 6] = [
    "authorization",
    "x-request-id",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

/// The guest-settable header whose value the host appends to the step's idempotency key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A service configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// The token variable a service names is not set.
    #[error("services.{service}.token-env: environment variable `{var}` is not set")]
    MissingToken {
        /// The service.
        service: String,
        /// The variable.
        var: String,
    },
    /// A URL or setting is malformed.
    #[error("services.{service}: {reason}")]
    Invalid {
        /// The service.
        service: String,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Every configured service, shared by all calls.
pub struct Services {
    client: reqwest::Client,
    services: HashMap<String, Service>,
    /// Stops the discovery watchers when the services are dropped.
    _watchers: DropGuard,
}

struct Service {
    config: ServiceConfig,
    /// `Bearer <token>`, resolved once at start.
    authorization: Option<HeaderValue>,
    /// The token itself, kept out of recordings: a service may echo it back.
    token: Option<String>,
    /// The instances calls rotate over: the configured ones, or those discovery found.
    instances: Arc<Instances>,
    /// The watcher keeping `instances` current, for a service with `discovery`.
    discovery: Option<Discovery>,
}

/// The ids a call carries to services.
#[derive(Debug, Clone, Default)]
pub struct CallMeta {
    /// Sent as `X-Request-ID`: the run's id, or a fresh one per plugin call.
    pub request_id: String,
    /// The step's idempotency key, sent as `Idempotency-Key` on every call.
    pub idempotency_key: Option<String>,
    /// The trace of the plugin call: each service call is a span of it.
    pub traceparent: Option<String>,
}

/// Why one attempt failed, and whether another may help.
enum Attempt {
    Done(Result<Response, CallError>),
    Retry {
        error: CallError,
        retry_after: Option<Duration>,
    },
}

impl Services {
    /// Resolves tokens and URLs of every service in `configs`, and starts the discovery of
    /// those that name a registry (which needs a Tokio runtime); the watchers stop when the
    /// services are dropped.
    pub fn new(configs: &BTreeMap<String, ServiceConfig>) -> Result<Self, ServicesError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        let stop = CancellationToken::new();
        let mut services = HashMap::new();
        for (name, config) in configs {
            config.validate().map_err(|e| ServicesError::Invalid {
                service: name.clone(),
                reason: e.0,
            })?;
            let (token, authorization) = match &config.token_env {
                None => (None, None),
                Some(var) => {
                    let token = std::env::var(var).map_err(|_| ServicesError::MissingToken {
                        service: name.clone(),
                        var: var.clone(),
                    })?;
                    let mut value =
                        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                            ServicesError::Invalid {
                                service: name.clone(),
                                reason: format!(
                                    "token-env: `{var}` holds characters not allowed in a header"
                                ),
                            }
                        })?;
                    value.set_sensitive(true);
                    (Some(token), Some(value))
                }
            };
            let instances = Arc::new(Instances::new(
                config.urls.iter().map(|url| Endpoint::new(url)).collect(),
            ));
            let discovery = config
                .discovery
                .as_ref()
                .map(|discovery| {
                    Discovery::start(
                        name,
                        discovery,
                        &client,
                        instances.clone(),
                        stop.child_token(),
                    )
                })
                .transpose()?;
            services.insert(
                name.clone(),
                Service {
                    config: config.clone(),
                    authorization,
                    token,
                    instances,
                    discovery,
                },
            );
        }
        Ok(Self {
            client,
            services,
            _watchers: stop.drop_guard(),
        })
    }

    /// The base URLs calls to `service` go to now, lowest priority first: its configured
    /// URLs, or what discovery last found. None for a service not configured.
    pub fn instances(&self, service: &str) -> Option<Vec<String>> {
        self.services.get(service).map(|s| s.instances.bases())
    }

    /// Whether a service of this name is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.services.contains_key(name)
    }

    /// Removes `service`'s credentials from `call` wherever they show (a service that
    /// echoes the request): a recording never holds them.
    fn redact(&self, call: &mut RecordedCall) {
        let Some(token) = self
            .services
            .get(&call.service)
            .and_then(|s| s.token.as_deref())
            .filter(|token| !token.is_empty())
        else {
            return;
        };
        let scrub = |text: &mut String| {
            if text.contains(token) {
                *text = text.replace(token, "[redacted]");
            }
        };
        let mut bodies = vec![call.body.as_mut()];
        let headers = match &mut call.result {
            RecordedResult::Response(response) | RecordedResult::Http(response) => {
                bodies.push(Some(&mut response.body));
                Some(&mut response.headers)
            }
            _ => None,
        };
        for body in bodies.into_iter().flatten() {
            if let Some(text) = &mut body.text {
                scrub(text);
            }
        }
        for (_, value) in headers.into_iter().flatten() {
            scrub(value);
        }
        scrub(&mut call.path);
    }

    /// Makes `request` with retries. The caller has checked the plugin's grant. The call is
    /// a span of the trace the plugin call belongs to, and the service gets its
    /// `traceparent`.
    pub async fn call(&self, meta: &CallMeta, request: Request) -> Result<Response, CallError> {
        let Some((name, service)) = self.services.get_key_value(&request.service) else {
            record_call(None, &Err(CallError::UnknownService(String::new())));
            return Err(CallError::UnknownService(format!(
                "no service named `{}`",
                request.service
            )));
        };
        let mut span = Span::start(
            || format!("call {name}"),
            Kind::Client,
            meta.traceparent.as_deref(),
        );
        if span.is_recording() {
            span.set("service", name.clone());
            span.set(
                "http.request.method",
                reqwest::Method::from(request.method).to_string(),
            );
            span.set("url.path", request.path.clone());
        }
        let started = Instant::now();
        let result = self
            .call_service(name, service, meta, request, span.traceparent())
            .await;
        metrics::histogram!(SERVICE_CALL_DURATION, "service" => name.clone())
            .record(started.elapsed());
        let status = record_call(Some(name), &result);
        span.set("http.response.status", status);
        if result.is_err() {
            span.fail(status);
        }
        result
    }

    /// [`Self::call`], unmeasured.
    async fn call_service(
        &self,
        name: &str,
        service: &Service,
        meta: &CallMeta,
        request: Request,
        traceparent: Option<String>,
    ) -> Result<Response, CallError> {
        if !request.path.starts_with('/') {
            return Err(CallError::Other(format!(
                "path `{}` must start with `/`",
                request.path
            )));
        }
        let mut headers = service.headers(meta, &request.headers)?;
        if let Some(traceparent) = traceparent
            && let Ok(value) = HeaderValue::from_str(&traceparent)
        {
            headers.insert(HeaderName::from_static(TRACEPARENT), value);
        }
        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
            .map_or(service.config.timeout, |t| t.min(service.config.timeout));
        let body = request.body.map(bytes::Bytes::from);
        let policy = service.config.retry_policy();
        // A call never outlives its attempts, so its jitter may be random.
        let seed = ulid::Ulid::new().random() as u64;
        if let Some(discovery) = &service.discovery {
            discovery.settled(timeout).await;
        }
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let attempt = match service.instances.pick() {
                Some(instance) => {
                    let url = format!("{}{}", instance.base, request.path);
                    self.attempt(
                        service,
                        &instance,
                        &url,
                        request.method,
                        &headers,
                        body.clone(),
                        timeout,
                    )
                    .await
                }
                None => service.no_instance(name),
            };
            match attempt {
                Attempt::Done(result) => return result,
                Attempt::Retry { error, retry_after } => {
                    if attempts >= policy.attempts {
                        tracing::debug!(
                            service = name,
                            attempts,
                            "service call failed after retries"
                        );
                        return Err(error);
                    }
                    let delay = retry_after.map_or_else(
                        || policy.delay(attempts + 1, seed),
                        |d| d.min(MAX_RETRY_AFTER),
                    );
                    tracing::debug!(service = name, attempts, ?delay, "retrying service call");
                    metrics::counter!(SERVICE_RETRIES, "service" => name.to_owned()).increment(1);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one attempt's inputs, all borrowed from `call`"
    )]
    async fn attempt(
        &self,
        service: &Service,
        instance: &Instance,
        url: &str,
        method: Method,
        headers: &HeaderMap,
        body: Option<bytes::Bytes>,
        timeout: Duration,
    ) -> Attempt {
        let mut builder = self
            .client
            .request(method.into(), url)
            .headers(headers.clone())
            .timeout(timeout);
        if let Some(body) = body {
            builder = builder.body(body);
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(e) => return Attempt::from_transport(e, service, instance),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let response = match read_capped(response, service.config.max_response_bytes).await {
            Ok(response) => response,
            Err(ReadError::TooLarge(limit)) => {
                return Attempt::Done(Err(CallError::Other(format!(
                    "response body exceeds the limit of {limit} bytes"
                ))));
            }
            Err(ReadError::Transport(e)) => return Attempt::from_transport(e, service, instance),
        };
        if status.is_success() || status.is_redirection() || status.is_informational() {
            Attempt::Done(Ok(response))
        } else if status.as_u16() == 429 || status.is_server_error() {
            Attempt::Retry {
                error: CallError::Http(response),
                retry_after,
            }
        } else {
            Attempt::Done(Err(CallError::Http(response)))
        }
    }
}

/// Counts a finished call of `service` (none for a name no service has) by its final
/// status, which it returns: the HTTP status, or what kept the call from having one.
fn record_call(service: Option<&String>, result: &Result<Response, CallError>) -> &'static str {
    let status = match result {
        Ok(response) | Err(CallError::Http(response)) => status_label(response.status),
        Err(CallError::Timeout(_)) => "timeout",
        Err(CallError::Connection(_)) => "connection",
        Err(CallError::Denied(_)) => "denied",
        Err(CallError::UnknownService(_)) => "unknown_service",
        Err(CallError::Other(_)) => "other",
    };
    // A name no service has came from the guest: not a label value, or any guest could
    // grow the series without bound.
    let service = service.cloned().unwrap_or_default();
    metrics::counter!(SERVICE_CALLS, "service" => service, "status" => status).increment(1);
    status
}

/// An HTTP status as a label value, without an allocation per call.
fn status_label(status: u16) -> &'static str {
    const KNOWN: [(u16, &str); 16] = [
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (409, "409"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
        (301, "301"),
    ];
    KNOWN.iter().find(|(code, _)| *code == status).map_or(
        match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        },
        |(_, label)| label,
    )
}

impl Attempt {
    fn from_transport(e: reqwest::Error, service: &Service, instance: &Instance) -> Self {
        let error = if e.is_timeout() {
            CallError::Timeout(format!("no answer within {:?}", service.config.timeout))
        } else {
            CallError::Connection(error_chain(&e))
        };
        if e.is_timeout() || e.is_connect() {
            instance.mark_unhealthy(service.config.cooldown);
        }
        if e.is_connect()
            && let Some(discovery) = &service.discovery
        {
            // The registry may not know yet that the instance is gone: ask again now.
            discovery.reread();
        }
        Attempt::Retry {
            error,
            retry_after: None,
        }
    }
}

impl Service {
    /// The attempt of a call that found no instance: only a discovered service has none,
    /// while its registry lists none healthy. Retried as a refused connection is, since
    /// instances may come back; the registry is asked again at once.
    fn no_instance(&self, name: &str) -> Attempt {
        let source = self
            .discovery
            .as_ref()
            .map_or("configuration", |d| d.source.as_str());
        if let Some(discovery) = &self.discovery {
            discovery.reread();
        }
        Attempt::Retry {
            error: CallError::Connection(format!(
                "service `{name}` has no healthy instance ({source})"
            )),
            retry_after: None,
        }
    }

    /// The headers of every attempt: the plugin's, then the host's over them.
    fn headers(&self, meta: &CallMeta, extra: &[(String, String)]) -> Result<HeaderMap, CallError> {
        let mut headers = HeaderMap::new();
        let mut guest_key = None;
        for (name, value) in extra {
            let lower = name.to_ascii_lowercase();
            if lower == IDEMPOTENCY_KEY {
                guest_key = Some(value.as_str());
                continue;
            }
            if HOST_HEADERS.contains(&lower.as_str()) {
                continue;
            }
            let name = HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| CallError::Other(format!("invalid header name `{name}`")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| CallError::Other(format!("invalid value for header `{name}`")))?;
            headers.append(name, value);
        }
        let key = match (meta.idempotency_key.as_deref(), guest_key) {
            (Some(step), Some(own)) => Some(format!("{step}/{own}")),
            (Some(step), None) => Some(step.to_owned()),
            (None, own) => own.map(str::to_owned),
        };
        if let Some(key) = key {
            let value = HeaderValue::from_str(&key)
                .map_err(|_| CallError::Other("invalid idempotency-key header value".into()))?;
            headers.insert(HeaderName::from_static(IDEMPOTENCY_KEY), value);
        }
        if !meta.request_id.is_empty() {
            let value = HeaderValue::from_str(&meta.request_id)
                .map_err(|_| CallError::Other("invalid request id".into()))?;
            headers.insert(HeaderName::from_static("x-request-id"), value);
        }
        if let Some(authorization) = &self.authorization {
            headers.insert(reqwest::header::AUTHORIZATION, authorization.clone());
        }
        Ok(headers)
    }
}

impl From<Method> for reqwest::Method {
    fn from(method: Method) -> Self {
        match method {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        }
    }
}

enum ReadError {
    TooLarge(u64),
    Transport(reqwest::Error),
}

/// Reads the whole response, refusing a body over `limit` before buffering it.
async fn read_capped(mut response: reqwest::Response, limit: u64) -> Result<Response, ReadError> {
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(ReadError::TooLarge(limit));
    }
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(ReadError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs and is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// `e` and its sources on one line: reqwest's own message is often just "error sending
/// request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Per-call state of the services capability.
pub struct ServicesCtx {
    services: Arc<Services>,
    /// Services this plugin may call.
    grants: Arc<[String]>,
    meta: CallMeta,
    /// The calls made, when the call is recorded.
    recorded: Option<Vec<RecordedCall>>,
    /// A replay's calls, answered in order instead of the network's.
    replay: Option<std::collections::VecDeque<RecordedCall>>,
}

impl ServicesCtx {
    /// State for one call of a plugin granted `grants`.
    pub fn new(services: Arc<Services>, grants: Arc<[String]>, meta: CallMeta) -> Self {
        Self {
            services,
            grants,
            meta,
            recorded: None,
            replay: None,
        }
    }

    /// Answers calls from `calls`, in order, with no network (recording the calls made):
    /// a replay. A call past the recorded ones fails with `other`.
    pub fn replaying(mut self, calls: &[RecordedCall]) -> Self {
        self.replay = Some(calls.iter().cloned().collect());
        self.recording()
    }

    /// Keeps each call made, with its answer, for [`Self::take_recorded`].
    pub fn recording(mut self) -> Self {
        self.recorded = Some(Vec::new());
        self
    }

    /// The calls made so far, when recording; none otherwise.
    pub fn take_recorded(&mut self) -> Vec<RecordedCall> {
        self.recorded
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The call, recorded when recording.
    pub async fn call(&mut self, request: Request) -> Result<Response, CallError> {
        if self.recorded.is_none() {
            return self.checked_call(request).await;
        }
        // What the recording keeps of the request, taken before the call consumes it.
        let (service, method, path) = (
            request.service.clone(),
            reqwest::Method::from(request.method).to_string(),
            request.path.clone(),
        );
        let headers = public_headers(&request.headers);
        let body = request.body.as_deref().map(RecordedBody::new);
        let result = match &mut self.replay {
            Some(replay) => match replay.pop_front() {
                Some(recorded) => replayed_result(recorded.result),
                None => Err(CallError::Other(
                    "replay: the recorded attempt made no more calls".into(),
                )),
            },
            None => self.checked_call(request).await,
        };
        let mut call = RecordedCall {
            service,
            method,
            path,
            headers,
            body,
            result: recorded_result(&result),
        };
        self.services.redact(&mut call);
        if let Some(recorded) = &mut self.recorded {
            recorded.push(call);
        }
        result
    }

    /// The grant check, then the call: what the guest's `call` does.
    async fn checked_call(&self, request: Request) -> Result<Response, CallError> {
        if !self.services.contains(&request.service) {
            return Err(CallError::UnknownService(format!(
                "no service named `{}`",
                request.service
            )));
        }
        if !self.grants.contains(&request.service) {
            let denied = Err(CallError::Denied(String::new()));
            record_call(Some(&request.service), &denied);
            return Err(CallError::Denied(format!(
                "this plugin is not granted the service `{}`",
                request.service
            )));
        }
        self.services.call(&self.meta, request).await
    }
}

/// A recorded answer as the plugin gets it again.
fn replayed_result(result: RecordedResult) -> Result<Response, CallError> {
    let response = |response: RecordedResponse| Response {
        status: response.status,
        headers: response.headers,
        body: response.body.bytes(),
    };
    match result {
        RecordedResult::Response(ok) => Ok(response(ok)),
        RecordedResult::Http(failed) => Err(CallError::Http(response(failed))),
        RecordedResult::Denied { message } => Err(CallError::Denied(message)),
        RecordedResult::UnknownService { message } => Err(CallError::UnknownService(message)),
        RecordedResult::Timeout { message } => Err(CallError::Timeout(message)),
        RecordedResult::Connection { message } => Err(CallError::Connection(message)),
        RecordedResult::Other { message } => Err(CallError::Other(message)),
    }
}

/// How a call ended, as a recording keeps it.
fn recorded_result(result: &Result<Response, CallError>) -> RecordedResult {
    let response = |response: &Response| RecordedResponse {
        status: response.status,
        headers: public_headers(&response.headers),
        body: RecordedBody::new(&response.body),
    };
    match result {
        Ok(ok) => RecordedResult::Response(response(ok)),
        Err(CallError::Http(failed)) => RecordedResult::Http(response(failed)),
        Err(CallError::Denied(message)) => RecordedResult::Denied {
            message: message.clone(),
        },
        Err(CallError::UnknownService(message)) => RecordedResult::UnknownService {
            message: message.clone(),
        },
        Err(CallError::Timeout(message)) => RecordedResult::Timeout {
            message: message.clone(),
        },
        Err(CallError::Connection(message)) => RecordedResult::Connection {
            message: message.clone(),
        },
        Err(CallError::Other(message)) => RecordedResult::Other {
            message: message.clone(),
        },
    }
}

#[cfg(test)]
mod tests;
