//! Telemetry: what the host tells operators about itself.
//!
//! - [`metrics`]: every Prometheus metric family, declared in one file, and the recorder
//!   that `GET /metrics` renders;
//! - [`trace`]: W3C trace context carried through runs, service calls and events; the spans
//!   made along the way, exported over OTLP.
//!
//! A layer of its own below everything: any module may record a metric or read the trace
//! context, and this module uses none of the others.

pub mod metrics;
pub mod trace;

use serde::{Deserialize, Serialize};

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Record metrics and serve them at `GET /metrics` (Prometheus text format). Off, the
    /// route answers 404 and nothing is recorded. Default on.
    pub metrics: bool,
    /// Carry W3C trace context (`traceparent`) through runs, service calls and events, so
    /// that a trace crosses services and brokers: flowhost's own spans when they are
    /// exported, a caller's context as it came otherwise. Default on.
    pub traces: bool,
    /// Where to export spans, over OTLP/HTTP (protobuf): the collector's base URL, such as
    /// `http://127.0.0.1:4318` (spans go to `/v1/traces`). Without it no span is recorded.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of exported spans. Default `flowhost`.
    pub service_name: String,
    /// The share of new traces (those no caller started) that are sampled, 0 to 1; a trace a
    /// caller started keeps the caller's decision. Default 1.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            metrics: true,
            traces: true,
            otlp_endpoint: None,
            service_name: "flowhost".into(),
            sample_ratio: 1.0,
        }
    }
}

/// A `[telemetry]` value out of range: the key and why.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.{key}: {reason}")]
pub struct InvalidTelemetry {
    /// The key.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl TelemetryConfig {
    /// Checks the ranges and the endpoint's form.
    pub fn validate(&self) -> Result<(), InvalidTelemetry> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(InvalidTelemetry {
                key: "sample-ratio",
                reason: format!("{} is not between 0 and 1", self.sample_ratio),
            });
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            let fine = (endpoint.starts_with("http://") || endpoint.starts_with("https://"))
                && endpoint.parse::<http::Uri>().is_ok();
            if !fine {
                return Err(InvalidTelemetry {
                    key: "otlp-endpoint",
                    reason: format!("`{endpoint}` is not an http:// or https:// URL"),
                });
            }
            if !self.traces {
                return Err(InvalidTelemetry {
                    key: "otlp-endpoint",
                    reason: "spans are exported only with `traces = true`".into(),
                });
            }
        }
        if self.service_name.is_empty() {
            return Err(InvalidTelemetry {
                key: "service-name",
                reason: "must not be empty".into(),
            });
        }
        Ok(())
    }
}
