//! A Consul agent's HTTP API on loopback, as much of it as flowhost uses, for tests: there
//! is no Consul binary to run. What it speaks follows Consul's API documentation:
//!
//! - `GET /v1/health/service/<name>[?passing=true][&index=N&wait=D]`: the service's
//!   instances (`Node.Address`, `Service.Address`, `Service.Port`), only those passing with
//!   `passing`; with an `index`, a blocking query, held until the catalog's index moves past
//!   it or `wait` runs out. Every answer carries `X-Consul-Index`.
//! - `PUT /v1/agent/service/register` (a JSON body: `ID`, `Name`, `Address`, `Port`, `Check`)
//!   and `PUT /v1/agent/service/deregister/<id>`: the service joins or leaves the catalog,
//!   passing.
//!
//! A test changes the catalog (instances added, passing or critical), sees what was asked
//! (reads, reads at once, registrations), and stops and starts the agent on the same port.
//! The host's unit tests use this file too (`#[path]`), so it stands alone: no `crate::`.

#![allow(dead_code, reason = "each user of this file uses part of it")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The longest `wait` Consul honours.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// A mock Consul agent serving on a loopback port of its own.
pub struct MockConsul {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    addr: SocketAddr,
    state: Arc<Agent>,
    /// Stops the server that runs now, if one does.
    running: Mutex<Option<(CancellationToken, tokio::task::JoinHandle<()>)>>,
}

struct Agent {
    catalog: Mutex<Catalog>,
    /// The catalog's index, which blocking queries wait on.
    index: watch::Sender<u64>,
    reads: AtomicUsize,
    at_once_reads: AtomicUsize,
    registrations: Mutex<Vec<Value>>,
    deregistrations: Mutex<Vec<String>>,
}

struct Catalog {
    index: u64,
    instances: Vec<Registered>,
}

struct Registered {
    id: String,
    service: String,
    node_address: String,
    /// Empty: the node's address is the instance's.
    address: String,
    port: u16,
    passing: bool,
}

impl MockConsul {
    /// An agent with an empty catalog at index 1, serving.
    pub async fn start() -> MockConsul {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let consul = MockConsul {
            url: format!("http://{addr}"),
            addr,
            state: Arc::new(Agent {
                catalog: Mutex::new(Catalog {
                    index: 1,
                    instances: Vec::new(),
                }),
                index: watch::Sender::new(1),
                reads: AtomicUsize::new(0),
                at_once_reads: AtomicUsize::new(0),
                registrations: Mutex::new(Vec::new()),
                deregistrations: Mutex::new(Vec::new()),
            }),
            running: Mutex::new(None),
        };
        consul.serve(listener);
        consul
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let stop = CancellationToken::new();
        let app = Router::new()
            .route("/v1/health/service/{service}", get(health))
            .route("/v1/agent/service/register", put(register))
            .route("/v1/agent/service/deregister/{id}", put(deregister))
            .with_state((self.state.clone(), stop.clone()));
        let server = tokio::spawn({
            let stop = stop.clone();
            async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
                    .unwrap()
            }
        });
        *self.running.lock().unwrap() = Some((stop, server));
    }

    /// Stops serving: queries held are answered 503 and the port refuses connections.
    pub async fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some((stop, server)) = running {
            stop.cancel();
            server.await.unwrap();
        }
    }

    /// Serves again on the same port, with the catalog as it was.
    pub async fn start_again(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// Changes the catalog with `change`, then moves its index on, which answers the
    /// blocking queries it held.
    fn change(&self, change: impl FnOnce(&mut Vec<Registered>)) {
        let mut catalog = self.state.catalog.lock().unwrap();
        change(&mut catalog.instances);
        catalog.index += 1;
        self.state.index.send_replace(catalog.index);
    }

    /// Registers instance `id` of `service` at `addr` (as its node's address), passing.
    pub fn add(&self, service: &str, id: &str, addr: SocketAddr) {
        self.change(|instances| {
            instances.push(Registered {
                id: id.into(),
                service: service.into(),
                node_address: addr.ip().to_string(),
                address: String::new(),
                port: addr.port(),
                passing: true,
            })
        });
    }

    /// Marks instance `id` passing or critical.
    pub fn set_passing(&self, id: &str, passing: bool) {
        self.change(|instances| {
            for instance in instances.iter_mut().filter(|i| i.id == id) {
                instance.passing = passing;
            }
        });
    }

    /// Marks instance `id` passing or critical without moving the index: queries held go
    /// on waiting, and only a read without an index sees the change (as when the watch
    /// of a client was cut without its noticing).
    pub fn set_passing_quietly(&self, id: &str, passing: bool) {
        let mut catalog = self.state.catalog.lock().unwrap();
        for instance in catalog.instances.iter_mut().filter(|i| i.id == id) {
            instance.passing = passing;
        }
    }

    /// Registers instance `id` of `service` at `addr` and sets the index back to 2, below
    /// what clients hold: a Consul restored from an old snapshot, or rebuilt.
    pub fn go_back_adding(&self, service: &str, id: &str, addr: SocketAddr) {
        let mut catalog = self.state.catalog.lock().unwrap();
        catalog.instances.push(Registered {
            id: id.into(),
            service: service.into(),
            node_address: addr.ip().to_string(),
            address: String::new(),
            port: addr.port(),
            passing: true,
        });
        catalog.index = 2;
        self.state.index.send_replace(2);
    }

    /// Health reads received.
    pub fn reads(&self) -> usize {
        self.state.reads.load(Ordering::SeqCst)
    }

    /// Health reads received without an index: those answered at once.
    pub fn at_once_reads(&self) -> usize {
        self.state.at_once_reads.load(Ordering::SeqCst)
    }

    /// The bodies of the registrations received.
    pub fn registrations(&self) -> Vec<Value> {
        self.state.registrations.lock().unwrap().clone()
    }

    /// The ids of the deregistrations received.
    pub fn deregistrations(&self) -> Vec<String> {
        self.state.deregistrations.lock().unwrap().clone()
    }
}

impl Drop for MockConsul {
    fn drop(&mut self) {
        if let Some((stop, _)) = self.running.lock().unwrap().take() {
            stop.cancel();
        }
    }
}

type AppState = (Arc<Agent>, CancellationToken);

async fn health(
    State((agent, stop)): State<AppState>,
    Path(service): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    agent.reads.fetch_add(1, Ordering::SeqCst);
    let index = query
        .get("index")
        .and_then(|i| i.parse::<u64>().ok())
        .unwrap_or(0);
    if index == 0 {
        agent.at_once_reads.fetch_add(1, Ordering::SeqCst);
    } else {
        let wait = query
            .get("wait")
            .map(|w| humantime::parse_duration(w).expect("a wait Consul understands"))
            .unwrap_or(Duration::from_secs(300))
            .min(MAX_WAIT);
        let mut changes = agent.index.subscribe();
        tokio::select! {
            _ = changes.wait_for(|current| *current > index) => {}
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => {
                return (StatusCode::SERVICE_UNAVAILABLE, "agent shutting down").into_response();
            }
        }
    }
    let passing_only = query.get("passing").is_some_and(|p| p != "false");
    let catalog = agent.catalog.lock().unwrap();
    let entries: Vec<Value> = catalog
        .instances
        .iter()
        .filter(|i| i.service == service && (i.passing || !passing_only))
        .map(|i| {
            let status = if i.passing { "passing" } else { "critical" };
            json!({
                "Node": {"Node": format!("node-{}", i.id), "Address": i.node_address},
                "Service": {"ID": i.id, "Service": i.service, "Address": i.address, "Port": i.port},
                "Checks": [{"CheckID": format!("service:{}", i.id), "Status": status}],
            })
        })
        .collect();
    (
        [("x-consul-index", catalog.index.to_string())],
        Json(entries),
    )
        .into_response()
}

async fn register(State((agent, _)): State<AppState>, Json(body): Json<Value>) -> StatusCode {
    let name = body["Name"].as_str().unwrap_or_default().to_owned();
    let id = body["ID"].as_str().unwrap_or(&name).to_owned();
    let registered = Registered {
        id: id.clone(),
        service: name,
        node_address: "127.0.0.1".into(),
        address: body["Address"].as_str().unwrap_or_default().to_owned(),
        port: body["Port"].as_u64().unwrap_or_default() as u16,
        passing: true,
    };
    agent.registrations.lock().unwrap().push(body);
    let mut catalog = agent.catalog.lock().unwrap();
    catalog.instances.retain(|i| i.id != id);
    catalog.instances.push(registered);
    catalog.index += 1;
    agent.index.send_replace(catalog.index);
    StatusCode::OK
}

async fn deregister(State((agent, _)): State<AppState>, Path(id): Path<String>) -> StatusCode {
    agent.deregistrations.lock().unwrap().push(id.clone());
    let mut catalog = agent.catalog.lock().unwrap();
    catalog.instances.retain(|i| i.id != id);
    catalog.index += 1;
    agent.index.send_replace(catalog.index);
    StatusCode::OK
}

/// Waits up to `within` for `condition`, checking every 10 ms; whether it came to hold.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
