//! Calls to the named services of the host configuration, with JSON bodies.
//!
//! A plugin names a service (`"payments"`) and a path; the host resolves the instances, adds
//! credentials, an `X-Request-ID` and the step's `Idempotency-Key`, applies the timeout and
//! retries connection errors, timeouts, 429 and 5xx itself. What reaches the plugin as an
//! error has already been retried.
//!
//! - [`get`], [`post`], [`put`], [`delete`]: one JSON call, the 2xx body decoded into `T`.
//! - [`request`]: a [`RequestBuilder`] for headers (an `idempotency-key` per call), a
//!   timeout, or a body that is not JSON.
//! - [`call`]: the raw [`Request`] record, with the error as a [`ServiceError`].
//!
//! An empty response body decodes as JSON `null`, so `T = ()` or `Option<_>` fits a 204.
//! `serde_json::Value` accepts any JSON. [`encode_segment`] makes an id safe to put in a path.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::flowhost::plugin::services as raw;

pub use raw::{Method, Request, Response};

/// Why a call failed: the WIT `call-error`, plus [`ServiceError::Decode`] for a successful
/// response whose body is not the expected JSON.
///
/// [`ServiceError::is_retryable`] tells which errors a step should retry; `?` in a step
/// applies it (see [`crate::step`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceError {
    /// The plugin's configuration does not grant it the service.
    Denied(String),
    /// No service of that name is configured.
    UnknownService(String),
    /// Every attempt timed out.
    Timeout(String),
    /// Every attempt failed to connect (refused, reset, DNS).
    Connection(String),
    /// The service answered with a 4xx, or with a 429 or 5xx after the host's retries.
    Http {
        /// The HTTP status code.
        status: u16,
        /// The response body, decoded as UTF-8 (invalid sequences replaced).
        body: String,
    },
    /// An invalid request (bad path or header, a body that does not serialize) or a response
    /// over the host's cap.
    Other(String),
    /// A 2xx response whose body does not decode into the expected type.
    Decode(String),
}

impl ServiceError {
    /// The HTTP status, for [`ServiceError::Http`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the service answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether trying again later may succeed: timeouts, connection failures, and HTTP 408,
    /// 429 and 5xx. Everything else (a 4xx, a denied or unknown service, an invalid request, a
    /// body that does not decode) fails the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout(_) | Self::Connection(_) => true,
            Self::Http { status, .. } => matches!(status, 408 | 429 | 500..=599),
            Self::Denied(_) | Self::UnknownService(_) | Self::Other(_) | Self::Decode(_) => false,
        }
    }
}

/// How much of an HTTP error body [`ServiceError`]'s `Display` shows.
const DISPLAY_BODY_CAP: usize = 512;

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Denied(message) => write!(f, "service call denied: {message}"),
            Self::UnknownService(message) => write!(f, "unknown service: {message}"),
            Self::Timeout(message) => write!(f, "service call timed out: {message}"),
            Self::Connection(message) => write!(f, "service unreachable: {message}"),
            Self::Http { status, body } => {
                write!(f, "service answered {status}")?;
                if !body.is_empty() {
                    let mut end = body.len().min(DISPLAY_BODY_CAP);
                    while !body.is_char_boundary(end) {
                        end -= 1;
                    }
                    let ellipsis = if end < body.len() { "..." } else { "" };
                    write!(f, ": {}{ellipsis}", &body[..end])?;
                }
                Ok(())
            }
            Self::Other(message) => write!(f, "service call failed: {message}"),
            Self::Decode(message) => write!(f, "unexpected response body: {message}"),
        }
    }
}

impl std::error::Error for ServiceError {}

impl From<raw::CallError> for ServiceError {
    fn from(error: raw::CallError) -> Self {
        match error {
            raw::CallError::Denied(message) => Self::Denied(message),
            raw::CallError::UnknownService(message) => Self::UnknownService(message),
            raw::CallError::Timeout(message) => Self::Timeout(message),
            raw::CallError::Connection(message) => Self::Connection(message),
            raw::CallError::Http(response) => Self::Http {
                status: response.status,
                body: String::from_utf8_lossy(&response.body).into_owned(),
            },
            raw::CallError::Other(message) => Self::Other(message),
        }
    }
}

/// Lets `?` pass a service error up from an event handler.
impl From<ServiceError> for String {
    fn from(error: ServiceError) -> Self {
        error.to_string()
    }
}

impl Response {
    /// The body decoded from JSON into `T` (an empty body as `null`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ServiceError> {
        decode(&self.body)
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header called `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Decodes a JSON body, reading an empty one as `null`.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ServiceError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"null".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|error| ServiceError::Decode(error.to_string()))
}

/// Percent-encodes `segment` for use as one path segment: everything but the unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`, so an id taken from the context cannot
/// add segments, a query or a fragment to the path.
pub fn encode_segment(segment: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(byte >> 4)]));
            encoded.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    encoded
}

/// Makes one call as it is.
pub fn call(request: Request) -> Result<Response, ServiceError> {
    raw::call(&request).map_err(ServiceError::from)
}

/// `GET path` on `service`, the body decoded into `T`.
pub fn get<T: DeserializeOwned>(service: &str, path: &str) -> Result<T, ServiceError> {
    request(Method::Get, service, path).send_json()
}

/// `POST path` on `service` with `body` as JSON, the response decoded into `T`.
pub fn post<T: DeserializeOwned, B: Serialize + ?Sized>(
    service: &str,
    path: &str,
    body: &B,
) -> Result<T, ServiceError> {
    request(Method::Post, service, path).json(body).send_json()
}

/// `PUT path` on `service` with `body` as JSON, the response decoded into `T`.
pub fn put<T: DeserializeOwned, B: Serialize + ?Sized>(
    service: &str,
    path: &str,
    body: &B,
) -> Result<T, ServiceError> {
    request(Method::Put, service, path).json(body).send_json()
}

/// `DELETE path` on `service`, the response decoded into `T` (`()` for an empty one).
pub fn delete<T: DeserializeOwned>(service: &str, path: &str) -> Result<T, ServiceError> {
    request(Method::Delete, service, path).send_json()
}

/// Starts a call of `method` to `path` on `service`.
pub fn request(method: Method, service: &str, path: &str) -> RequestBuilder {
    RequestBuilder {
        request: Request {
            service: service.to_string(),
            method,
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
            timeout_ms: None,
        },
        encode_error: None,
    }
}

/// A call being put together; [`RequestBuilder::send`] makes it.
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    /// The record handed to the host.
    request: Request,
    /// Why [`RequestBuilder::json`] could not serialize the body; reported by `send`, so the
    /// builder chains without a `Result` at every step.
    encode_error: Option<String>,
}

impl RequestBuilder {
    /// Adds a header. `Authorization`, `X-Request-ID` and `Host` are the host's.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.request.headers.push((name.into(), value.into()));
        self
    }

    /// Tells this call apart from the step's other calls of the same kind: the host sends
    /// `Idempotency-Key: <step key>/<key>`. Use something stable across attempts, such as an
    /// item id, never a random value or a counter of attempts.
    pub fn idempotency_key(self, key: impl Into<String>) -> Self {
        self.header("idempotency-key", key)
    }

    /// Sets a JSON body and its `content-type`.
    pub fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.request.body = Some(bytes);
                self.header("content-type", "application/json")
            }
            Err(error) => {
                self.encode_error = Some(format!("request body does not serialize: {error}"));
                self
            }
        }
    }

    /// Sets a body as is; add its `content-type` with [`RequestBuilder::header`].
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.request.body = Some(body.into());
        self
    }

    /// Sets the timeout of each attempt, capped by the host at the service's configured one.
    /// Milliseconds beyond `u32::MAX` are cut to it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.request.timeout_ms = Some(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
        self
    }

    /// The record this builder would send.
    pub fn into_request(self) -> Request {
        self.request
    }

    /// Makes the call.
    pub fn send(self) -> Result<Response, ServiceError> {
        if let Some(message) = self.encode_error {
            return Err(ServiceError::Other(message));
        }
        call(self.request)
    }

    /// Makes the call and decodes the body into `T`.
    pub fn send_json<T: DeserializeOwned>(self) -> Result<T, ServiceError> {
        self.send()?.json()
    }
}
