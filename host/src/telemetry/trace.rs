//! Trace context: W3C `traceparent` read from requests, kept on runs and events, and sent
//! on service calls; and the OpenTelemetry pipeline that exports the spans.
//!
//! Spans are `tracing` spans (`flowhost.http`, `flowhost.run`, `flowhost.step`,
//! `flowhost.services.call`, `flowhost.events.publish`, `flowhost.delivery`,
//! `flowhost.handler`); the [`Pipeline`]'s layer gives them OpenTelemetry ids. A run is
//! driven in several pieces (across waits and restarts), each a `flowhost.run` span whose
//! parent is the trace context stored with the run when it started, so that one trace runs
//! from the trigger to the run's end. Events carry theirs in the CloudEvents `traceparent`
//! extension, so that a delivery on another host joins the trace of the step that
//! published.
//!
//! Without the pipeline's layer (`telemetry.traces = false`, or an embedder's own
//! subscriber) every function here finds no context and does nothing.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, Tracer};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::registry::LookupSpan;

use super::TelemetryConfig;

/// The header (and CloudEvents extension) that carries the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of `span`, if it belongs to a trace.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` of the current span, if it belongs to a trace.
pub fn current() -> Option<String> {
    traceparent(&tracing::Span::current())
}

/// Makes `span` a child of the span `traceparent` names. A malformed value, or none, leaves
/// `span` the root of a trace of its own.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        // Fails only for a span already entered or without the layer: nothing to do then.
        let _ = span.set_parent(context);
    }
}

/// The trace id a `traceparent` carries (`00-<trace id>-<span id>-<flags>`), if it is one.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace_id)
}

/// Why the pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp-endpoint: {0}")]
pub struct PipelineError(#[from] opentelemetry_otlp::ExporterBuildError);

/// The OpenTelemetry tracer provider: spans get ids from it and, with an OTLP endpoint, are
/// exported in batches by a thread of its own. [`Pipeline::shutdown`] exports what is left.
pub struct Pipeline {
    provider: SdkTracerProvider,
}

impl Pipeline {
    /// The pipeline `config` describes; none when `traces` is off. Builds a blocking HTTP
    /// client: call it outside any async runtime.
    pub fn new(config: &TelemetryConfig) -> Result<Option<Self>, PipelineError> {
        if !config.traces {
            return Ok(None);
        }
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(config.service_name.clone())
            .build();
        let mut provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(resource);
        if let Some(endpoint) = &config.otlp_endpoint {
            use opentelemetry_otlp::{Protocol, WithExportConfig};
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .build()?;
            provider = provider.with_batch_exporter(exporter);
        }
        Ok(Some(Self {
            provider: provider.build(),
        }))
    }

    /// The `tracing` layer that gives spans their OpenTelemetry ids.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, Tracer>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("flowhost"))
            .with_tracked_inactivity(false)
            // Entering a span does not start it, so that a run's drive, entered before
            // the run is read, can still take the run's trace as its parent
            // ([`set_parent`]). flowhost reads trace context through `tracing` spans only.
            .with_context_activation(false)
    }

    /// Exports the spans still buffered and stops the export thread.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("flowhost: exporting the last spans failed: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_id_is_read_off_a_traceparent() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id(traceparent),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id("00-nothex-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id("garbage"), None);
    }

    #[test]
    fn spans_without_the_layer_have_no_context() {
        let span = tracing::info_span!("flowhost.test");
        assert_eq!(traceparent(&span), None);
        set_parent(
            &span,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(traceparent(&span), None);
    }

    #[test]
    fn a_span_under_the_layer_continues_the_callers_trace() {
        use tracing_subscriber::layer::SubscriberExt;
        let pipeline = Pipeline::new(&TelemetryConfig::default()).unwrap().unwrap();
        let subscriber = tracing_subscriber::registry().with(pipeline.layer());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("flowhost.test");
            set_parent(
                &span,
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            );
            let own = traceparent(&span).expect("a span of the trace");
            assert_eq!(trace_id(&own), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
            assert!(
                !own.contains("00f067aa0ba902b7"),
                "a span of its own: {own}"
            );
            let child = span.in_scope(|| tracing::info_span!("flowhost.child"));
            let child = traceparent(&child).unwrap();
            assert_eq!(trace_id(&child), trace_id(&own));
        });
        pipeline.shutdown();
    }
}
