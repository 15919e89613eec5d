//! What a recorded attempt keeps (a workflow with `record = true`): the context the step
//! saw, each service call it made with its answer, each cache read with what it found, the
//! settings it read, and the events it published with the ids the host gave them: all that
//! came from outside the
//! component, so that the attempt can be replayed against a plugin version with no network,
//! deterministically, and compared.
//!
//! Bodies are kept up to [`MAX_RECORDED_BODY`] bytes (a longer one is cut and marked), and
//! headers that may carry secrets ([`is_secret_header`]) are never kept: the host's
//! credentials never reach a plugin, and what a plugin sends or receives in such a header
//! stays out of the journal too.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::PublishedEvent;

/// The longest body a recording keeps, in bytes.
pub const MAX_RECORDED_BODY: usize = 16 * 1024;

/// One recorded attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    /// The context the step was called with.
    pub input: Map<String, Value>,
    /// Its service calls, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<RecordedCall>,
    /// The events it published, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<RecordedEvent>,
    /// Its cache reads, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<RecordedRead>,
    /// The plugin settings it read (`config`), and what they held.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub config: std::collections::BTreeMap<String, Option<String>>,
}

/// A cache read and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRead {
    /// The key.
    pub key: String,
    /// The value found; none for a miss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<RecordedBody>,
}

/// A service call and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCall {
    /// The service's name.
    pub service: String,
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The plugin's headers, those that may carry secrets left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<RecordedBody>,
    /// The answer.
    pub result: RecordedResult,
}

/// How a recorded call ended: the `call-error` cases of the WIT, and a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RecordedResult {
    /// A 2xx or 3xx response.
    Response(RecordedResponse),
    /// A 4xx, or a 429 or 5xx after the retries.
    Http(RecordedResponse),
    /// Not granted.
    Denied {
        /// The message.
        message: String,
    },
    /// No such service.
    UnknownService {
        /// The message.
        message: String,
    },
    /// Every attempt timed out.
    Timeout {
        /// The message.
        message: String,
    },
    /// Every attempt failed to connect.
    Connection {
        /// The message.
        message: String,
    },
    /// Anything else.
    Other {
        /// The message.
        message: String,
    },
}

/// A recorded response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedResponse {
    /// The status code.
    pub status: u16,
    /// Its headers, those that may carry secrets left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: RecordedBody,
}

/// A body: text when it is UTF-8 without NUL (which PostgreSQL's `jsonb` refuses), else
/// base64; cut at [`MAX_RECORDED_BODY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedBody {
    /// UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Base64, for a body that is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// Set when the body was longer than kept: its whole length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_from: Option<usize>,
}

impl RecordedBody {
    /// `bytes` as kept: at most [`MAX_RECORDED_BODY`] of them.
    pub fn new(bytes: &[u8]) -> Self {
        let truncated_from = (bytes.len() > MAX_RECORDED_BODY).then_some(bytes.len());
        let kept = &bytes[..bytes.len().min(MAX_RECORDED_BODY)];
        match std::str::from_utf8(kept) {
            Ok(text) if !text.contains('\0') => Self {
                text: Some(text.to_owned()),
                base64: None,
                truncated_from,
            },
            // Cut inside a character: keep the text up to it.
            Err(e)
                if truncated_from.is_some()
                    && e.error_len().is_none()
                    && !kept[..e.valid_up_to()].contains(&0) =>
            {
                Self {
                    text: Some(String::from_utf8_lossy(&kept[..e.valid_up_to()]).into_owned()),
                    base64: None,
                    truncated_from,
                }
            }
            _ => {
                use base64::Engine as _;
                Self {
                    text: None,
                    base64: Some(base64::engine::general_purpose::STANDARD.encode(kept)),
                    truncated_from,
                }
            }
        }
    }

    /// The bytes kept.
    pub fn bytes(&self) -> Vec<u8> {
        use base64::Engine as _;
        match (&self.text, &self.base64) {
            (Some(text), _) => text.clone().into_bytes(),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }
}

/// An event a recorded attempt published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// The id the host gave it (a replay gives the same ones, in order).
    #[serde(default)]
    pub id: String,
    /// Its topic.
    pub topic: String,
    /// Its partition key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its data, as published.
    pub data: String,
}

impl From<&PublishedEvent> for RecordedEvent {
    fn from(event: &PublishedEvent) -> Self {
        Self {
            id: event.id.clone(),
            topic: event.topic.clone(),
            key: event.key.clone(),
            data: event.data.clone(),
        }
    }
}

/// Whether a header (its name in any case) may carry a secret, and so is never recorded:
/// credentials, cookies, and any name that says token, secret, password or signature.
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-api-key"
    ) || [
        "token",
        "secret",
        "password",
        "signature",
        "credential",
        "api-key",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// `headers` without those that may carry secrets.
pub fn public_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !is_secret_header(name))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_headers_are_left_out_and_others_kept() {
        let headers: Vec<(String, String)> = [
            ("Authorization", "Bearer s3cret"),
            ("x-auth-token", "t"),
            ("X-Client-Secret", "s"),
            ("cookie", "c"),
            ("x-webhook-signature", "sig"),
            ("idempotency-key", "k"),
            ("content-type", "application/json"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
        let public = public_headers(&headers);
        let kept: Vec<&str> = public.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(kept, ["idempotency-key", "content-type"]);
    }

    #[test]
    fn bodies_are_text_or_base64_and_cut_at_the_cap() {
        let text = RecordedBody::new(b"{\"a\":1}");
        assert_eq!(text.text.as_deref(), Some("{\"a\":1}"));
        assert_eq!(text.bytes(), b"{\"a\":1}");
        let binary = RecordedBody::new(&[0xff, 0x00, 0x10]);
        assert_eq!(binary.text, None);
        assert_eq!(binary.bytes(), [0xff, 0x00, 0x10]);
        // UTF-8, but with a NUL that PostgreSQL's jsonb would refuse.
        let nul = RecordedBody::new(b"a\0b");
        assert_eq!((nul.text.as_deref(), nul.bytes()), (None, b"a\0b".to_vec()));
        let long = "é".repeat(MAX_RECORDED_BODY);
        let cut = RecordedBody::new(long.as_bytes());
        assert_eq!(cut.truncated_from, Some(long.len()));
        let kept = cut.text.unwrap();
        assert!(kept.len() <= MAX_RECORDED_BODY && kept.chars().all(|c| c == 'é'));
    }
}
