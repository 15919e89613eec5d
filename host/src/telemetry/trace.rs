//! Traces: W3C trace context carried through runs, service calls and events, and the spans
//! flowhost records along the way, exported over OTLP.
//!
//! Context travels explicitly, as a `traceparent` string: read from a request's header, kept
//! with a run ([`crate::model::Run::traceparent`]) and with an event (its CloudEvents
//! `traceparent` extension), handed to a plugin call's capabilities, sent on every service
//! call. So a run stays one trace however often it waits or the host restarts, and a
//! delivery on another host joins the trace of the step that published.
//!
//! The spans are few and made where they happen ([`Span::start`]): the trigger's request
//! (server), each step attempt, each service call (client), each event published
//! (producer), its delivery (consumer) and the handler's call. What [`install`] set up decides
//! what a span is:
//!
//! - **exported** (`telemetry.otlp-endpoint` set): a span of its own, recorded by the
//!   OpenTelemetry SDK and exported in batches; its context is its own;
//! - **passed on** (`traces = true`, no endpoint, the default): nothing is recorded, and a
//!   span's context is its parent's, so that the caller's trace reaches the services and
//!   consumers unchanged (a span id of ours that no backend ever sees would break it);
//! - **off** (`traces = false`, or nothing installed, as for an embedder): no context at all.
//!
//! Spans are made through the OpenTelemetry API directly rather than from `tracing` spans:
//! flowhost's `tracing` spans serve its logs, and bridging every one of them cost more than
//! the spans themselves (see `cargo bench --bench sagas`).

use std::borrow::Cow;
use std::sync::OnceLock;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

use super::TelemetryConfig;

/// The header (and CloudEvents extension) that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// What spans are, once [`install`] ran.
enum Mode {
    /// Recorded with this tracer and exported.
    Export(SdkTracer),
    /// Not recorded: the caller's context passed on.
    PassOn,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// The kind of a span, as OpenTelemetry says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request served.
    Server,
    /// A request made.
    Client,
    /// A message sent.
    Producer,
    /// A message taken.
    Consumer,
    /// Work inside the host.
    Internal,
}

impl From<Kind> for SpanKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Server => SpanKind::Server,
            Kind::Client => SpanKind::Client,
            Kind::Producer => SpanKind::Producer,
            Kind::Consumer => SpanKind::Consumer,
            Kind::Internal => SpanKind::Internal,
        }
    }
}

/// A span of a trace: ended when dropped.
pub struct Span {
    /// The recording span, when spans are exported.
    recording: Option<opentelemetry_sdk::trace::Span>,
    /// The context its children take: its own when recorded, else its parent's.
    context: Option<SpanContext>,
}

impl Span {
    /// Starts a span of `kind`, named by `name` (called only when it is recorded), as a
    /// child of `parent` (a `traceparent`; none or a malformed one: the root of a new trace
    /// when exported, no context otherwise).
    pub fn start<N: Into<Cow<'static, str>>>(
        name: impl FnOnce() -> N,
        kind: Kind,
        parent: Option<&str>,
    ) -> Span {
        let parent = parent.and_then(parse);
        match MODE.get() {
            Some(Mode::Export(tracer)) => {
                let cx = match &parent {
                    Some(parent) => Context::new().with_remote_span_context(parent.clone()),
                    None => Context::new(),
                };
                let span = tracer
                    .span_builder(name())
                    .with_kind(kind.into())
                    .start_with_context(tracer, &cx);
                Span {
                    context: Some(span.span_context().clone()),
                    recording: Some(span),
                }
            }
            Some(Mode::PassOn) => Span {
                recording: None,
                context: parent,
            },
            None => Span {
                recording: None,
                context: None,
            },
        }
    }

    /// Whether it is recorded: what its attributes are worth making for.
    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// The `traceparent` its children (and the services and consumers it calls) take.
    pub fn traceparent(&self) -> Option<String> {
        self.context.as_ref().map(format)
    }

    /// The id of the trace it belongs to.
    pub fn trace_id(&self) -> Option<String> {
        self.context.as_ref().map(|c| c.trace_id().to_string())
    }

    /// Sets an attribute, when the span is recorded.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(span) = &mut self.recording {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed, with `why`.
    pub fn fail(&mut self, why: impl Into<Cow<'static, str>>) {
        if let Some(span) = &mut self.recording {
            span.set_status(Status::error(why));
        }
    }
}

/// A `traceparent` as W3C Trace Context writes it: `00-<trace id>-<span id>-<flags>`.
pub fn format(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// The context a `traceparent` carries, if it is a valid one (version `00`).
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if version != "00"
        || parts.next().is_some()
        || !hex(trace, 32)
        || !hex(span, 16)
        || !hex(flags, 2)
    {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// The trace id a `traceparent` carries, if it is one.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    parse(traceparent)?;
    traceparent.trim().split('-').nth(1)
}

/// Why the pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp-endpoint: {0}")]
pub struct PipelineError(#[from] opentelemetry_otlp::ExporterBuildError);

/// The OpenTelemetry tracer provider of exported spans: a thread of its own exports them in
/// batches. [`Pipeline::shutdown`] exports what is left.
pub struct Pipeline {
    provider: SdkTracerProvider,
}

impl Pipeline {
    /// Exports what is buffered and stops the export thread.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("flowhost: exporting the last spans failed: {error}");
        }
    }
}

/// Sets up traces for this process as `config` says (once: later calls change nothing);
/// with an OTLP endpoint, the pipeline that exports them, to shut down at exit. Builds a
/// blocking HTTP client: call it outside any async runtime.
pub fn install(config: &TelemetryConfig) -> Result<Option<Pipeline>, PipelineError> {
    if !config.traces || MODE.get().is_some() {
        return Ok(None);
    }
    let Some(endpoint) = &config.otlp_endpoint else {
        let _ = MODE.set(Mode::PassOn);
        return Ok(None);
    };
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(config.service_name.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(resource)
        .with_batch_exporter(exporter)
        .build();
    let _ = MODE.set(Mode::Export(provider.tracer("flowhost")));
    Ok(Some(Pipeline { provider }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACEPARENT_OF_CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_reads_back_as_it_was_written() {
        let context = parse(TRACEPARENT_OF_CALLER).unwrap();
        assert_eq!(format(&context), TRACEPARENT_OF_CALLER);
        assert_eq!(
            trace_id(TRACEPARENT_OF_CALLER),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for malformed in [
            "garbage",
            "00-nothex0000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse(malformed).is_none(), "{malformed}");
        }
    }

    #[test]
    fn without_an_installed_mode_a_span_carries_no_context() {
        // The unit tests install nothing: the embedder's case.
        let span = Span::start(
            || "flowhost.test",
            Kind::Internal,
            Some(TRACEPARENT_OF_CALLER),
        );
        assert_eq!(span.traceparent(), None);
    }
}
