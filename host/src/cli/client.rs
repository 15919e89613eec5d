//! The HTTP client every command uses: the host's URL, the tokens, and errors as one line.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

/// Where the commands send their requests, and with which tokens: from the flags, or the
/// environment (`FLOWHOST_URL`, `FLOWHOST_ADMIN_TOKEN`, `FLOWHOST_TRIGGER_TOKEN`).
#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// The host's base URL.
    #[arg(
        long,
        global = true,
        env = "FLOWHOST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// The admin token, for plugins and workflows.
    #[arg(
        long = "token",
        global = true,
        env = "FLOWHOST_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The trigger token, for the commands that make plugins run (when the host has one).
    #[arg(
        long,
        global = true,
        env = "FLOWHOST_TRIGGER_TOKEN",
        hide_env_values = true
    )]
    pub trigger_token: Option<String>,
}

/// Which token a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// None: reads.
    Open,
    /// The trigger token, if one is given: starting, retrying, cancelling and signalling
    /// runs, publishing and redelivering events.
    Trigger,
    /// The admin token: plugins and workflows.
    Admin,
}

/// A client of one host.
pub struct Client {
    http: reqwest::Client,
    connection: Connection,
}

impl Client {
    /// A client of `connection`'s host.
    pub fn new(connection: &Connection) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(300))
                .build()?,
            connection: connection.clone(),
        })
    }

    /// A request to `path`, with the token `auth` asks for.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        auth: Auth,
    ) -> anyhow::Result<RequestBuilder> {
        let url = format!("{}{path}", self.connection.server.trim_end_matches('/'));
        let request = self.http.request(method, url);
        Ok(match auth {
            Auth::Open => request,
            Auth::Trigger => match &self.connection.trigger_token {
                Some(token) => request.bearer_auth(token),
                None => request,
            },
            Auth::Admin => {
                let Some(token) = &self.connection.token else {
                    bail!("this command needs the admin token: --token or FLOWHOST_ADMIN_TOKEN");
                };
                request.bearer_auth(token)
            }
        })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, auth: Auth) -> anyhow::Result<Value> {
        send(self.request(Method::GET, path, auth)?).await
    }

    /// `POST path` with a JSON body (none when `body` is `None`).
    pub async fn post(
        &self,
        path: &str,
        auth: Auth,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self.request(Method::POST, path, auth)?;
        if let Some(body) = body {
            request = request.json(body);
        }
        send(request).await
    }
}

/// Sends `request`; an answer other than 2xx is an error carrying the problem's `detail`.
pub async fn send(request: RequestBuilder) -> anyhow::Result<Value> {
    let body = send_for_bytes(request).await?;
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// [`send`], the answer's body as it came (a component, say).
pub async fn send_for_bytes(request: RequestBuilder) -> anyhow::Result<bytes::Bytes> {
    let response = request.send().await.map_err(|e| {
        let url = e.url().map(|u| u.to_string()).unwrap_or_default();
        anyhow::anyhow!("cannot reach the host at {url}: {}", root_cause(&e))
    })?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .context("reading the host's answer")?;
    if !status.is_success() {
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let text = String::from_utf8_lossy(&body);
        let detail = json["detail"].as_str().unwrap_or(text.trim());
        if status == StatusCode::NOT_FOUND && detail.is_empty() {
            bail!("{status}: not found");
        }
        bail!("{status}: {detail}");
    }
    Ok(body)
}

/// The innermost cause of `error`: reqwest's own message is often just "error sending
/// request".
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// Percent-encodes `text` for one path segment or query value.
pub fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
