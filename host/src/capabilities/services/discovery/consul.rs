//! Instances from Consul's health API, followed with blocking queries.
//!
//! `GET /v1/health/service/<service>?passing=true` lists the service's instances whose
//! checks all pass: each entry's `Service.Address` (or, when empty, its node's
//! `Node.Address`) and `Service.Port`. The answer's `X-Consul-Index` header names the state
//! it reflects; the next read sends it back with `index=<it>&wait=<wait>`, and Consul holds
//! that request until the state moves past it or `wait` (plus up to a sixteenth of it,
//! Consul's jitter) runs out. So a change reaches the host within one round trip, and an
//! idle service costs one request per `wait`.
//!
//! Following Consul's advice to blocking-query clients, an index that goes backwards (a
//! restored or rebuilt Consul) starts over from 0, and a 0 answered after a read is taken
//! as 1, so that a bad index never turns blocking queries into a busy loop; the watcher
//! spaces reads anyway.

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde::Deserialize;

use super::{Endpoint, ReadError, base_url, error_chain};

/// How long a read that asks at once may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an answer read: a health listing of thousands of instances fits.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// A Consul service, read from one agent.
pub(super) struct Consul {
    client: reqwest::Client,
    /// `<agent>/v1/health/service/<service>`.
    url: reqwest::Url,
    /// `X-Consul-Token`, if a token is configured.
    token: Option<HeaderValue>,
    /// How long a blocking query may wait.
    wait: Duration,
    scheme: String,
    /// The `X-Consul-Index` of the last answer; 0 before the first and after a reset.
    index: u64,
}

/// One entry of the health API's answer, with only what is used.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    node: Node,
    service: Service,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Service {
    #[serde(default)]
    address: String,
    port: u16,
}

impl Consul {
    /// Reads service `service` from the agent at `agent`.
    pub fn new(
        client: reqwest::Client,
        agent: &str,
        service: &str,
        token: Option<&str>,
        wait: Duration,
        scheme: &str,
    ) -> Result<Self, String> {
        let mut url = reqwest::Url::parse(agent).map_err(|e| format!("consul: {e}"))?;
        url.path_segments_mut()
            .map_err(|()| "consul: not a base URL".to_owned())?
            .pop_if_empty()
            .extend(["v1", "health", "service", service]);
        let token = token
            .map(|token| {
                let mut value = HeaderValue::from_str(token)
                    .map_err(|_| "token-env: the token holds characters not allowed in a header")?;
                value.set_sensitive(true);
                Ok::<_, String>(value)
            })
            .transpose()?;
        Ok(Self {
            client,
            url,
            token,
            wait,
            scheme: scheme.to_owned(),
            index: 0,
        })
    }

    /// The passing instances: at once when `at_once` or before the first answer, else
    /// once they differ from the last answer's index or the wait runs out.
    pub async fn read(&mut self, at_once: bool) -> Result<Vec<Endpoint>, ReadError> {
        let mut url = self.url.clone();
        let blocking = !at_once && self.index > 0;
        let timeout = {
            let mut query = url.query_pairs_mut();
            query.append_pair("passing", "true");
            if blocking {
                query
                    .append_pair("index", &self.index.to_string())
                    .append_pair("wait", &format!("{}ms", self.wait.as_millis()));
                // Consul adds up to wait/16 of jitter; then the answer needs to come back.
                self.wait + self.wait / 16 + READ_TIMEOUT
            } else {
                READ_TIMEOUT
            }
        };
        let mut request = self.client.get(url).timeout(timeout);
        if let Some(token) = &self.token {
            request = request.header("x-consul-token", token.clone());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| ReadError::Unreachable(error_chain(&e)))?;
        let status = response.status();
        let index = response
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ReadError::Unreachable(error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(ReadError::Answer(format!(
                    "the answer exceeds {MAX_ANSWER_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(ReadError::Answer(format!(
                "Consul answered {status}: {}",
                text.trim().chars().take(200).collect::<String>()
            )));
        }
        let Some(index) = index else {
            return Err(ReadError::Answer(
                "the answer has no X-Consul-Index header: is this Consul's HTTP API?".into(),
            ));
        };
        let entries: Vec<Entry> = serde_json::from_slice(&body)
            .map_err(|e| ReadError::Answer(format!("not a health listing: {e}")))?;
        self.index = next_index(self.index, index);
        Ok(entries
            .into_iter()
            .map(|entry| entry.endpoint(&self.scheme))
            .collect())
    }
}

impl Entry {
    /// The instance: at the service's address if it has one, else at its node's.
    fn endpoint(self, scheme: &str) -> Endpoint {
        let host = if self.service.address.is_empty() {
            self.node.address
        } else {
            self.service.address
        };
        Endpoint {
            base: base_url(scheme, &host, self.service.port),
            priority: 0,
        }
    }
}

/// The index to send with the next blocking query, after an answer at `answered` to one
/// sent with `sent`: back to 0 (a read at once) when it went backwards, and never 0 after
/// an answer.
fn next_index(sent: u64, answered: u64) -> u64 {
    if answered < sent { 0 } else { answered.max(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_starts_over_when_it_goes_backwards_and_is_never_zero() {
        assert_eq!(next_index(0, 42), 42);
        assert_eq!(next_index(42, 42), 42, "wait expired, nothing changed");
        assert_eq!(next_index(42, 50), 50);
        assert_eq!(next_index(42, 7), 0, "went backwards: start over");
        assert_eq!(next_index(0, 0), 1, "a zero index would never block");
    }

    #[test]
    fn entries_use_the_service_address_else_the_node_address() {
        let body = r#"[
            {"Node": {"Node": "n1", "Address": "10.0.0.1"}, "Service": {"ID": "p1", "Service": "payments", "Address": "", "Port": 9100}, "Checks": []},
            {"Node": {"Node": "n2", "Address": "10.0.0.2"}, "Service": {"ID": "p2", "Service": "payments", "Address": "fd00::7", "Port": 9101}, "Checks": []}
        ]"#;
        let entries: Vec<Entry> = serde_json::from_str(body).unwrap();
        let bases: Vec<String> = entries
            .into_iter()
            .map(|e| e.endpoint("http").base)
            .collect();
        assert_eq!(bases, ["http://10.0.0.1:9100", "http://[fd00::7]:9101"]);
    }
}
