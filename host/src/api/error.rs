//! Errors at the HTTP edge, as `application/problem+json` (RFC 9457).

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::saga::EngineError;
use crate::store::StoreError;
use crate::workflows::WorkflowError;

/// A problem to report: a status and a detail a client can act on.
#[derive(Debug)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, in one sentence.
    pub detail: String,
    /// When to try again, for 429 and 503: sent as `Retry-After`, in seconds.
    pub retry_after: Option<Duration>,
    /// Extension members (RFC 9457 §3.2): more about this problem, beside `detail`.
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    /// A problem with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            retry_after: None,
            extensions: serde_json::Map::new(),
        }
    }

    /// The problem with the extension member `name`.
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }
}

/// A problem as the client gets it: RFC 9457 problem details.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemDetails {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The status's reason phrase.
    title: &'static str,
    /// The HTTP status.
    status: u16,
    /// What went wrong, in one sentence a client can act on.
    detail: String,
    /// Extension members some problems carry (a canary gate's `differences`).
    #[serde(flatten)]
    #[schema(ignore)]
    extensions: serde_json::Map<String, serde_json::Value>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemDetails {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            detail: self.detail,
            extensions: self.extensions,
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Json(body),
        )
            .into_response();
        if let Some(after) = self.retry_after {
            let seconds = after.as_secs().max(1).to_string();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&seconds).expect("digits are a header value"),
            );
        }
        response
    }
}

/// The status a store failure answers with: the client's mistake (a cursor), the host's
/// passing trouble (503: try again), or the host's lasting trouble (500).
fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::InvalidCursor => StatusCode::BAD_REQUEST,
        // Another node took the run over while the request worked on it.
        StoreError::Fenced(_) => StatusCode::CONFLICT,
        e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<EngineError> for Problem {
    fn from(e: EngineError) -> Self {
        let mut retry_after = None;
        let status = match &e {
            EngineError::UnknownWorkflow(_)
            | EngineError::UnknownRun(_)
            | EngineError::Workflow(WorkflowError::Unknown(_)) => StatusCode::NOT_FOUND,
            EngineError::NotRetryable { .. }
            | EngineError::NotCancellable { .. }
            | EngineError::NotAwaited { .. }
            | EngineError::InboxFull(_)
            | EngineError::Conflict(_) => StatusCode::CONFLICT,
            EngineError::InvalidId(_) | EngineError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            EngineError::Workflow(WorkflowError::Invalid(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            EngineError::Workflow(WorkflowError::UnknownVersion { .. }) => StatusCode::NOT_FOUND,
            EngineError::Workflow(
                WorkflowError::NoEarlierVersion(_) | WorkflowError::Pinned { .. },
            ) => StatusCode::CONFLICT,
            EngineError::Overloaded {
                retry_after: after, ..
            } => {
                retry_after = Some(*after);
                StatusCode::TOO_MANY_REQUESTS
            }
            EngineError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::Store(e) | EngineError::Workflow(WorkflowError::Store(e)) => {
                store_status(e)
            }
            EngineError::Workflow(WorkflowError::Missing { .. }) | EngineError::Panicked(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            retry_after = Some(Duration::from_secs(1));
        }
        Problem {
            retry_after,
            ..Problem::new(status, e.to_string())
        }
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        EngineError::from(e).into()
    }
}

impl From<WorkflowError> for Problem {
    fn from(e: WorkflowError) -> Self {
        EngineError::from(e).into()
    }
}
