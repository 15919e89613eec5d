//! Saga steps: the [`Step`] trait a step plugin implements, the [`Ctx`] wrapper around the
//! run's context, and the [`StepError`] constructors and conversions that make `?` choose
//! between a retry and a compensation.
//!
//! # Error mapping
//!
//! `?` converts these errors into a [`StepError`]:
//!
//! | error | becomes |
//! |---|---|
//! | a context that does not parse, a missing or mistyped field ([`Ctx`]) | fatal |
//! | [`serde_json::Error`] | fatal |
//! | [`ServiceError::Timeout`], [`ServiceError::Connection`] | retryable |
//! | [`ServiceError::Http`] with 408, 429 or 5xx | retryable |
//! | [`ServiceError::Http`] with any other status (a 4xx) | fatal |
//! | [`ServiceError::Denied`], [`ServiceError::UnknownService`], [`ServiceError::Other`] | fatal |
//! | [`ServiceError::Decode`] (a 2xx whose body is not the expected JSON) | fatal |
//! | [`PublishError::Unavailable`] | retryable |
//! | any other [`PublishError`] | fatal |
//! | any [`CacheError`] | fatal |
//!
//! A retryable error makes the host retry the step per its retry policy (and compensate once
//! the retries run out); a fatal one compensates at once. When a status means something
//! specific to a step (a 409 "out of stock", a 402 "declined"), match on it before `?`.

use std::cell::OnceCell;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::bindings::step::exports::flowhost::plugin::saga_step::Guest;
use crate::cache::CacheError;
use crate::events::PublishError;
use crate::services::ServiceError;

pub use crate::bindings::flowhost::plugin::types::{StepError, StepInfo};

/// What [`Step::execute`] and [`Step::compensate`] return: a JSON object merged into the
/// run's context (`Value::Null` counts as `{}`), or the reason the step failed.
pub type StepResult = Result<Value, StepError>;

/// A saga step: `execute` does the work, `compensate` undoes it.
///
/// # Lifecycle
///
/// The host calls one of the two functions per instance: every call runs in a fresh
/// instance, so a `static` set in one call is gone in the next. Keep what must survive in the
/// run's context (return it) or in [`crate::cache`].
///
/// Both functions may run more than once for the same step (at-least-once): after a crash, a
/// timeout or a retryable error. Make repeats harmless: the host sends
/// [`StepInfo::idempotency_key`] as the `Idempotency-Key` header of every service call, and a
/// step that makes several calls of the same kind adds its own `idempotency-key` header per
/// call ([`crate::services::RequestBuilder::idempotency_key`]) to keep them apart.
///
/// A call blocks its instance; the host bounds it with a deadline and a memory cap.
///
/// # Example
///
/// ```ignore
/// use flowhost_sdk::prelude::*;
///
/// struct Hello;
///
/// impl Step for Hello {
///     fn execute(_info: StepInfo, ctx: Ctx) -> StepResult {
///         let name: String = ctx.get("name")?;
///         Ok(json!({ "greeting": format!("hello, {name}") }))
///     }
/// }
///
/// export_step!(Hello);
/// ```
pub trait Step {
    /// Runs the step. `ctx` is the run's context; the returned object is merged into it
    /// (its top-level keys replace the context's). Return `Ok(json!({}))` to change nothing.
    fn execute(info: StepInfo, ctx: Ctx) -> StepResult;

    /// Undoes a completed [`execute`](Step::execute) after a later step failed. `ctx` is the
    /// context as it was after this step's `execute`. Must be idempotent: a retryable error
    /// is retried, and a compensation that keeps failing stops the run until an operator
    /// retries it. The default has nothing to undo and returns `{}`.
    fn compensate(info: StepInfo, ctx: Ctx) -> StepResult {
        let _ = (info, ctx);
        Ok(Value::Object(Map::new()))
    }
}

impl StepError {
    /// A transient failure: the host retries the step.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable(message.into())
    }

    /// A permanent failure: no retry, the host compensates the completed steps.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::Fatal(message.into())
    }

    /// Whether the host will retry the step.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }

    /// The message, whichever the kind.
    pub fn message(&self) -> &str {
        match self {
            Self::Retryable(message) | Self::Fatal(message) => message,
        }
    }

    /// Prefixes the message with `context` (`"<context>: <message>"`), keeping the kind.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        match self {
            Self::Retryable(message) => Self::Retryable(format!("{context}: {message}")),
            Self::Fatal(message) => Self::Fatal(format!("{context}: {message}")),
        }
    }

    /// A fatal error naming a step this plugin does not serve: the fallback arm of a
    /// dispatch on [`StepInfo::step`].
    pub fn unknown_step(step: &str) -> Self {
        Self::fatal(format!("unknown step `{step}`"))
    }
}

impl From<serde_json::Error> for StepError {
    fn from(error: serde_json::Error) -> Self {
        Self::fatal(format!("malformed JSON: {error}"))
    }
}

impl From<ServiceError> for StepError {
    fn from(error: ServiceError) -> Self {
        if error.is_retryable() {
            Self::retryable(error.to_string())
        } else {
            Self::fatal(error.to_string())
        }
    }
}

impl From<PublishError> for StepError {
    fn from(error: PublishError) -> Self {
        let message = crate::events::describe(&error);
        match error {
            PublishError::Unavailable(_) => Self::retryable(message),
            _ => Self::fatal(message),
        }
    }
}

impl From<CacheError> for StepError {
    fn from(error: CacheError) -> Self {
        Self::fatal(error.to_string())
    }
}

/// The run's context as the host sent it: a JSON object, parsed on first use.
///
/// Every accessor fails with a fatal [`StepError`] when the context or the field does not
/// have the expected shape, so `?` ends the step without a retry (a retry would see the same
/// context).
pub struct Ctx {
    /// The JSON text, kept so [`Ctx::parse`] can deserialize straight from it.
    raw: String,
    /// The parsed top-level object, filled by the first field access.
    object: OnceCell<Result<Map<String, Value>, String>>,
}

impl Ctx {
    /// Wraps the JSON text of a context.
    pub fn new(raw: String) -> Self {
        Self {
            raw,
            object: OnceCell::new(),
        }
    }

    /// The JSON text as the host sent it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The JSON text, consuming the wrapper.
    pub fn into_string(self) -> String {
        self.raw
    }

    /// Deserializes the whole context into `T`, typically a struct with the fields the step
    /// reads (unknown fields are ignored unless `T` denies them).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, StepError> {
        serde_json::from_str(&self.raw)
            .map_err(|error| StepError::fatal(format!("malformed context: {error}")))
    }

    /// The context's top-level object.
    pub fn object(&self) -> Result<&Map<String, Value>, StepError> {
        self.object
            .get_or_init(|| match serde_json::from_str(&self.raw) {
                Ok(Value::Object(object)) => Ok(object),
                Ok(_) => Err("malformed context: not a JSON object".to_string()),
                Err(error) => Err(format!("malformed context: {error}")),
            })
            .as_ref()
            .map_err(|message| StepError::fatal(message.clone()))
    }

    /// The field `field`, deserialized into `T`; a missing field is an error (a missing field
    /// of an `Option` type too: use [`Ctx::get_opt`] for those).
    pub fn get<T: DeserializeOwned>(&self, field: &str) -> Result<T, StepError> {
        match self.object()?.get(field) {
            Some(value) => decode_field(field, value),
            None => Err(StepError::fatal(format!("context has no `{field}`"))),
        }
    }

    /// The field `field`, deserialized into `T`, or `None` when it is missing or `null`.
    pub fn get_opt<T: DeserializeOwned>(&self, field: &str) -> Result<Option<T>, StepError> {
        match self.object()?.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => decode_field(field, value).map(Some),
        }
    }
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Ctx").field(&self.raw).finish()
    }
}

/// Deserializes one context field, naming it in the error.
fn decode_field<T: DeserializeOwned>(field: &str, value: &Value) -> Result<T, StepError> {
    T::deserialize(value)
        .map_err(|error| StepError::fatal(format!("context field `{field}`: {error}")))
}

/// Encodes a step's result for the host: an object as is, `null` as `{}`, anything else is a
/// fatal error (the host merges objects only).
fn encode_output(output: Value) -> Result<String, StepError> {
    match output {
        Value::Null => Ok("{}".to_string()),
        Value::Object(_) => Ok(output.to_string()),
        other => Err(StepError::fatal(format!(
            "a step must return a JSON object, not {other}"
        ))),
    }
}

/// Adapts a [`Step`] to the generated `saga-step` export trait; used by
/// [`export_step!`](crate::export_step).
#[doc(hidden)]
pub struct StepExport<S>(PhantomData<S>);

impl<S: Step> Guest for StepExport<S> {
    fn execute(info: StepInfo, ctx: String) -> Result<String, StepError> {
        encode_output(S::execute(info, Ctx::new(ctx))?)
    }

    fn compensate(info: StepInfo, ctx: String) -> Result<String, StepError> {
        encode_output(S::compensate(info, Ctx::new(ctx))?)
    }
}
