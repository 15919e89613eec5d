//! What the API answers with: one type per shape, each with its OpenAPI schema. The API's
//! contract lives here, apart from the stored model, so that the one can change without the
//! other.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::events::{SubscriptionInfo, SubscriptionTarget, cloud_event};
use crate::model::recording::Recording;
use crate::model::{
    DeadLetter, Direction, JournalEntry, Outcome, PluginVersion, Run, RunStatus, StepKind,
    StepStatus, VersionSource, WorkflowDefinition, rfc3339,
};
use crate::plugins::{PluginView, Registered, VersionView};
use crate::telemetry::trace;
use crate::workflows::{Pushed, WorkflowVersionView, WorkflowView};

/// A run as `GET /v1/runs/{id}` shows it.
#[derive(Serialize, ToSchema)]
pub struct RunView<'a> {
    /// The run's id: a ULID, or the id its client chose.
    id: &'a str,
    /// The workflow it runs.
    workflow: &'a str,
    /// The SHA-256 of the definition the run follows (it is pinned to it).
    workflow_version: Option<&'a str>,
    status: RunStatus,
    /// What the run started with.
    #[schema(value_type = Object)]
    input: &'a Map<String, Value>,
    /// The run's input, with each completed step's output merged in (a branch's steps as
    /// their parallel step's output): the context after step `k` is the input merged with
    /// the `output` of the steps before it that have no `branch`.
    #[schema(value_type = Object)]
    context: Map<String, Value>,
    /// Why the run failed, when it did.
    error: Option<RunErrorView<'a>>,
    /// Every step of its definition, branches' steps included, in order.
    steps: Vec<StepView<'a>>,
    /// The plugin versions the run is pinned to: name to SHA-256.
    plugins: &'a BTreeMap<String, String>,
    /// The run whose child workflow step started this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<&'a str>,
    /// The W3C trace id of the trace the run belongs to, when tracing is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    updated_at: String,
    /// RFC 3339, once the run ended.
    ended_at: Option<String>,
}

/// Why a run failed.
#[derive(Serialize, ToSchema)]
pub struct RunErrorView<'a> {
    /// The step that failed (or whose compensation failed); empty when no step did.
    step: &'a str,
    /// What happened.
    message: &'a str,
}

/// One step of a run.
#[derive(Serialize, ToSchema)]
pub struct StepView<'a> {
    /// The step's name, unique in its workflow.
    name: &'a str,
    /// What the step does: `plugin`, `sleep`, `await`, `parallel` or `workflow` (a child
    /// run); none when the run's definition could not be read.
    kind: Option<&'static str>,
    /// What it calls or waits for: the plugin, the child workflow, `signal <name>` or
    /// `event <topic>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    status: StepStatus,
    /// Attempts to execute it so far.
    attempts: u32,
    /// Attempts to compensate it so far.
    compensation_attempts: u32,
    /// RFC 3339.
    started_at: Option<String>,
    /// RFC 3339.
    ended_at: Option<String>,
    /// The last attempt's error.
    error: Option<&'a str>,
    /// For a step that waits (a sleep, or an await with a timeout): when it is due, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    due_at: Option<String>,
    /// What a completed step returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    output: Option<&'a Map<String, Value>>,
    /// The parallel branch the step belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    branch: Option<&'a str>,
    /// The child run a child workflow step started.
    #[serde(skip_serializing_if = "Option::is_none")]
    child: Option<&'a str>,
}

impl<'a> RunView<'a> {
    /// The view of `run`, whose steps `definition` (the one it is pinned to) describes.
    pub fn new(run: &'a Run, definition: Option<&WorkflowDefinition>) -> Self {
        let described = |name: &str| {
            let step = definition?.step(name)?;
            Some(match step.kind() {
                StepKind::Plugin(plugin) => ("plugin", Some(plugin.to_owned())),
                StepKind::Sleep(_) | StepKind::SleepUntil(_) => ("sleep", None),
                StepKind::Await(awaits) => (
                    "await",
                    awaits
                        .signal
                        .as_ref()
                        .map(|s| format!("signal {s}"))
                        .or_else(|| awaits.topic.as_ref().map(|t| format!("event {t}"))),
                ),
                StepKind::Parallel(..) => ("parallel", None),
                StepKind::Child(workflow, _) => ("workflow", Some(workflow.to_owned())),
            })
        };
        Self {
            id: &run.id,
            workflow: &run.workflow,
            workflow_version: run.workflow_version.as_deref(),
            status: run.status,
            input: &run.input,
            context: run.context(),
            error: run.error.as_ref().map(|error| RunErrorView {
                step: &error.step,
                message: &error.message,
            }),
            steps: run
                .steps
                .iter()
                .map(|step| {
                    let (kind, target) = described(&step.name).unzip();
                    StepView {
                        name: &step.name,
                        kind,
                        target: target.flatten(),
                        status: step.status,
                        attempts: step.attempts,
                        compensation_attempts: step.compensation_attempts,
                        started_at: step.started_ms.map(rfc3339),
                        ended_at: step.ended_ms.map(rfc3339),
                        error: step.error.as_deref(),
                        due_at: step.due_ms.map(rfc3339),
                        output: step.output.as_ref(),
                        branch: step.branch.as_deref(),
                        child: step.child.as_deref(),
                    }
                })
                .collect(),
            plugins: &run.plugins,
            parent: run.parent.as_deref(),
            trace_id: run.traceparent.as_deref().and_then(trace::trace_id),
            created_at: rfc3339(run.created_ms),
            updated_at: rfc3339(run.updated_ms),
            ended_at: run.ended_ms.map(rfc3339),
        }
    }
}

/// One page of `GET /v1/runs`.
#[derive(Serialize, ToSchema)]
pub struct RunPage<'a> {
    /// Newest first.
    pub runs: Vec<RunView<'a>>,
    /// Pass as `cursor` for the next page; none on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/runs/{id}/journal`.
#[derive(Serialize, ToSchema)]
pub struct Journal<'a> {
    /// The run.
    pub run_id: &'a str,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptView<'a>>,
}

/// One attempt of a step, in either direction.
#[derive(Serialize, ToSchema)]
pub struct AttemptView<'a> {
    /// The step.
    step: &'a str,
    direction: Direction,
    /// 1 for the first attempt in this direction.
    attempt: u32,
    /// Start, ms since the Unix epoch.
    started_ms: u64,
    /// End, ms since the Unix epoch.
    ended_ms: u64,
    outcome: Outcome,
    /// The error, unless it succeeded.
    error: Option<&'a str>,
    /// What a successful `execute` returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    output: Option<&'a Map<String, Value>>,
    /// For a step that began to wait: when it is due, ms since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    due_ms: Option<u64>,
    /// For an await step that took a message: its id.
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    /// The parallel branch the step belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    branch: Option<&'a str>,
    /// For a child workflow step that began: the child run's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    child: Option<&'a str>,
    /// For a workflow with `record = true`: the context the attempt saw (`input`), its
    /// service calls with their answers (`calls`: service, method, path, headers, body,
    /// `result`; bodies capped at 16 KiB, headers that may carry secrets left out) and the
    /// events it published (`events`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    recording: Option<&'a Recording>,
}

impl<'a> AttemptView<'a> {
    /// The view of a journal entry.
    pub fn new(entry: &'a JournalEntry) -> Self {
        Self {
            step: &entry.step,
            direction: entry.direction,
            attempt: entry.attempt,
            started_ms: entry.started_ms,
            ended_ms: entry.ended_ms,
            outcome: entry.outcome,
            error: entry.error.as_deref(),
            output: entry.output.as_ref(),
            due_ms: entry.due_ms,
            message: entry.message.as_deref(),
            branch: entry.branch.as_deref(),
            child: entry.child.as_deref(),
            recording: entry.recording.as_deref(),
        }
    }
}

/// `POST /v1/runs/{id}/signals/{name}`.
#[derive(Serialize, ToSchema)]
pub struct SignalAccepted {
    /// The run.
    pub run_id: String,
    /// The signal.
    pub signal: String,
    /// The message's id in the run's inbox.
    pub message_id: String,
}

/// `POST /v1/events/{topic}`.
#[derive(Serialize, ToSchema)]
pub struct EventAccepted {
    /// The event's id (a ULID).
    pub id: String,
    /// Its topic.
    pub topic: String,
}

/// A delivery given up on.
#[derive(Serialize, ToSchema)]
pub struct DeadLetterView {
    /// Its id (a ULID).
    id: String,
    /// The subscription that gave up.
    subscription: String,
    /// Attempts made.
    attempts: u32,
    /// The last attempt's error.
    error: String,
    /// When it was given up on, RFC 3339.
    dead_at: String,
    /// The event, as CloudEvents 1.0 JSON.
    #[schema(value_type = Object)]
    event: Value,
}

impl DeadLetterView {
    /// The view of `letter`.
    pub fn new(letter: &DeadLetter) -> Self {
        Self {
            id: letter.id.clone(),
            subscription: letter.subscription.clone(),
            attempts: letter.attempts,
            error: letter.error.clone(),
            dead_at: rfc3339(letter.dead_ms),
            event: cloud_event(&letter.event),
        }
    }
}

/// One page of `GET /v1/dead-letters`.
#[derive(Serialize, ToSchema)]
pub struct DeadLetterPage {
    /// Newest first.
    pub dead_letters: Vec<DeadLetterView>,
    /// Pass as `cursor` for the next page; none on the last page.
    pub next_cursor: Option<String>,
}

/// A subscription, with what waits in its queue.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionView {
    /// Its name: as configured, `workflow.<name>` for a workflow's trigger, or
    /// `flowhost.awaits` for the events runs await.
    name: String,
    /// The topic pattern it takes.
    topic: String,
    /// `handler`, `workflow` or `awaits`.
    kind: &'static str,
    /// The handler plugin or the workflow; none for `awaits`.
    target: Option<String>,
    /// Attempts before an event becomes a dead letter.
    attempts: u32,
    /// Deliveries in flight at once.
    concurrency: usize,
    /// Events waiting in its queue (or handed out and not settled); none when the
    /// transport could not say.
    backlog: Option<u64>,
    /// Why the backlog is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    backlog_error: Option<String>,
}

impl SubscriptionView {
    /// The view of `subscription` with its backlog (or why it is unknown).
    pub fn new(subscription: SubscriptionInfo, backlog: Result<u64, String>) -> Self {
        let (kind, target) = match subscription.target {
            SubscriptionTarget::Handler(plugin) => ("handler", Some(plugin)),
            SubscriptionTarget::Workflow(workflow) => ("workflow", Some(workflow)),
            SubscriptionTarget::Awaits => ("awaits", None),
        };
        let (backlog, backlog_error) = match backlog {
            Ok(backlog) => (Some(backlog), None),
            Err(error) => (None, Some(error)),
        };
        Self {
            name: subscription.name,
            topic: subscription.topic,
            kind,
            target,
            attempts: subscription.attempts,
            concurrency: subscription.concurrency,
            backlog,
            backlog_error,
        }
    }
}

/// `GET /v1/subscriptions`.
#[derive(Serialize, ToSchema)]
pub struct Subscriptions {
    /// Every subscription.
    pub subscriptions: Vec<SubscriptionView>,
}

/// A stored plugin version.
#[derive(Serialize, ToSchema)]
pub struct PluginVersionView {
    /// The plugin's name.
    name: String,
    /// SHA-256 of the component: the version's identity.
    digest: String,
    /// The label it was uploaded with (`1.4.2`), if any.
    version: Option<String>,
    /// The worlds it implements: `step-plugin`, `handler-plugin`.
    worlds: Vec<String>,
    /// Its size in bytes.
    size: u64,
    /// RFC 3339.
    registered_at: String,
    source: VersionSource,
    /// What its name was granted when it was registered.
    grants: GrantsView,
    /// Who signed it, if it came signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    signed_by: Option<SignerView>,
    /// Whether it is current.
    current: bool,
    /// Runs pinned to it that may still call it; not shown right after an upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned_runs: Option<usize>,
}

/// Who signed a plugin version.
#[derive(Serialize, ToSchema)]
pub struct SignerView {
    /// The public key: `ed25519:<base64>`.
    key: String,
    /// Its name in `registry.trusted-keys`, if it was there when the version came.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// What a plugin was granted.
#[derive(Serialize, ToSchema)]
pub struct GrantsView {
    /// Services it may call.
    services: Vec<String>,
    /// Topic patterns it may publish on.
    publish: Vec<String>,
    /// Its cache namespace.
    cache_namespace: String,
}

impl PluginVersionView {
    fn new(version: &PluginVersion, current: bool, pinned_runs: Option<usize>) -> Self {
        Self {
            name: version.name.clone(),
            digest: version.digest.clone(),
            version: version.label.clone(),
            worlds: version.worlds.clone(),
            size: version.size,
            registered_at: rfc3339(version.registered_ms),
            source: version.source,
            grants: GrantsView {
                services: version.grants.services.clone(),
                publish: version.grants.publish.clone(),
                cache_namespace: version.grants.cache_namespace.clone(),
            },
            signed_by: version.signed_by.as_ref().map(|signer| SignerView {
                key: signer.key.clone(),
                name: signer.name.clone(),
            }),
            current,
            pinned_runs,
        }
    }

    fn listed(version: &VersionView) -> Self {
        Self::new(&version.version, version.current, Some(version.pinned_runs))
    }
}

/// A plugin as `GET /v1/plugins` lists it.
#[derive(Serialize, ToSchema)]
pub struct PluginSummary {
    /// Its name in the configuration.
    name: String,
    /// The worlds its name is used as.
    used_as: Vec<String>,
    /// The current version.
    current: Option<PluginVersionView>,
    /// How many versions are stored.
    versions: usize,
}

/// `GET /v1/plugins`.
#[derive(Serialize, ToSchema)]
pub struct Plugins {
    /// Every configured plugin.
    pub plugins: Vec<PluginSummary>,
}

impl Plugins {
    /// The listing of `plugins`.
    pub fn new(plugins: &[PluginView]) -> Self {
        Self {
            plugins: plugins
                .iter()
                .map(|plugin| PluginSummary {
                    name: plugin.name.clone(),
                    used_as: plugin.used_as.clone(),
                    current: plugin
                        .versions
                        .iter()
                        .find(|v| v.current)
                        .map(PluginVersionView::listed),
                    versions: plugin.versions.len(),
                })
                .collect(),
        }
    }
}

/// `GET /v1/plugins/{name}`.
#[derive(Serialize, ToSchema)]
pub struct PluginDetail {
    /// Its name.
    name: String,
    /// The current version's digest.
    current: String,
    /// The worlds its name is used as.
    used_as: Vec<String>,
    /// Its versions, newest first.
    versions: Vec<PluginVersionView>,
}

impl PluginDetail {
    /// The view of `plugin`.
    pub fn new(plugin: &PluginView) -> Self {
        Self {
            name: plugin.name.clone(),
            current: plugin.current.clone(),
            used_as: plugin.used_as.clone(),
            versions: plugin
                .versions
                .iter()
                .map(PluginVersionView::listed)
                .collect(),
        }
    }
}

/// What an upload or a rollback made current.
#[derive(Serialize, ToSchema)]
pub struct PluginChange {
    #[serde(flatten)]
    version: PluginVersionView,
    /// Whether the version was new to the registry.
    new: bool,
    /// Whether the current version changed.
    changed: bool,
    /// With `?replay=N`: how many recorded attempts it replayed as recorded first.
    #[serde(skip_serializing_if = "Option::is_none")]
    replayed: Option<usize>,
}

impl PluginChange {
    /// The view of `registered`.
    pub fn new(registered: &Registered) -> Self {
        Self {
            version: PluginVersionView::new(&registered.version, true, None),
            new: registered.new,
            changed: registered.changed,
            replayed: None,
        }
    }

    /// The view of `registered` after a canary gate replayed `replayed` attempts on it.
    pub fn replayed(registered: &Registered, replayed: usize) -> Self {
        Self {
            replayed: Some(replayed),
            ..Self::new(registered)
        }
    }
}

/// A workflow with its versions.
#[derive(Serialize, ToSchema)]
pub struct WorkflowDetail<'a> {
    /// Its name.
    name: &'a str,
    /// The current version's digest; none once the name left the configuration.
    current: Option<&'a str>,
    /// Its versions, newest first.
    versions: Vec<WorkflowVersionDetail<'a>>,
}

/// One version of a workflow.
#[derive(Serialize, ToSchema)]
pub struct WorkflowVersionDetail<'a> {
    /// SHA-256 of the definition's canonical JSON.
    digest: &'a str,
    /// Whether it is current.
    current: bool,
    /// RFC 3339.
    registered_at: &'a str,
    source: VersionSource,
    /// Runs that follow it and may still run a step of it.
    pinned_runs: usize,
    /// The definition, every default filled in.
    #[schema(schema_with = workflow_definition)]
    definition: Value,
}

impl<'a> WorkflowDetail<'a> {
    /// The view of `workflow`.
    pub fn new(workflow: &'a WorkflowView) -> Self {
        Self {
            name: &workflow.name,
            current: workflow.current.as_deref(),
            versions: workflow
                .versions
                .iter()
                .map(WorkflowVersionDetail::new)
                .collect(),
        }
    }
}

impl<'a> WorkflowVersionDetail<'a> {
    fn new(version: &'a WorkflowVersionView) -> Self {
        Self {
            digest: &version.digest,
            current: version.current,
            registered_at: &version.registered_at,
            source: version.source,
            pinned_runs: version.pinned_runs,
            definition: serde_json::to_value(&version.definition).unwrap_or(Value::Null),
        }
    }
}

/// `GET /v1/workflows`.
#[derive(Serialize, ToSchema)]
pub struct Workflows<'a> {
    /// Every workflow with versions, configured or retired.
    pub workflows: Vec<WorkflowDetail<'a>>,
}

/// What a push or a rollback of a workflow made current.
#[derive(Serialize, ToSchema)]
pub struct WorkflowChange<'a> {
    /// The workflow.
    name: &'a str,
    /// The version now current.
    digest: &'a str,
    /// Whether the version was never stored before.
    new: bool,
    /// Whether the current version changed.
    changed: bool,
}

impl<'a> WorkflowChange<'a> {
    /// The view of `pushed`.
    pub fn new(pushed: &'a Pushed) -> Self {
        Self {
            name: &pushed.name,
            digest: &pushed.digest,
            new: pushed.new,
            changed: pushed.changed,
        }
    }
}

/// The schema of a workflow definition: a reference to the component the OpenAPI document
/// takes from the definition's own JSON Schema ([`super::openapi`]).
pub fn workflow_definition() -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name("WorkflowDefinition"))
}

/// An uploaded component: the bytes of a `.wasm` file.
pub struct Component;

impl PartialSchema for Component {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .description(Some("A WebAssembly component."))
            .into()
    }
}

impl ToSchema for Component {}

/// A string schema whose values are `values`, described by `description`.
fn string_enum(description: &str, values: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some(values))
        .description(Some(description))
        .into()
}

/// Each model enum the API shows is a string with the values its serde names give; the
/// schemas are written here, so that the model does not depend on the API's tooling.
macro_rules! string_schema {
    ($type:ty, $description:literal, [$($variant:expr),+ $(,)?]) => {
        impl PartialSchema for $type {
            fn schema() -> RefOr<Schema> {
                string_enum($description, [$(serde_name(&$variant)),+])
            }
        }
        impl ToSchema for $type {}
    };
}

/// The name serde gives `value`, a unit variant.
fn serde_name<T: Serialize>(value: &T) -> &'static str {
    let name = serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("a unit variant serialises as a string");
    Box::leak(name.into_boxed_str())
}

impl PartialSchema for RunStatus {
    fn schema() -> RefOr<Schema> {
        string_enum(
            "Where a run is: `pending`, `running`, `completed`, `compensating`, `compensated`, `compensation_failed`, `failed` or `cancelled`.",
            RunStatus::ALL.map(RunStatus::as_str),
        )
    }
}

impl ToSchema for RunStatus {}
string_schema!(
    StepStatus,
    "Where a step is.",
    [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Completed,
        StepStatus::Failed,
        StepStatus::Compensating,
        StepStatus::Compensated,
        StepStatus::CompensationFailed,
        StepStatus::Skipped,
        StepStatus::Waiting,
        StepStatus::Cancelled,
    ]
);
string_schema!(
    Direction,
    "Which export an attempt ran: `execute` or `compensate`.",
    [Direction::Execute, Direction::Compensate]
);
string_schema!(
    Outcome,
    "How an attempt ended.",
    [
        Outcome::Ok,
        Outcome::Retryable,
        Outcome::Fatal,
        Outcome::Host,
        Outcome::Skipped,
        Outcome::Started,
    ]
);
string_schema!(
    VersionSource,
    "Where a version came from: the configuration, the API, or the directory watch.",
    [
        VersionSource::Config,
        VersionSource::Api,
        VersionSource::Watch
    ]
);

/// The nodes sharing the store.
#[derive(Serialize, ToSchema)]
pub struct Nodes {
    /// The id of the node that answered.
    pub this: String,
    /// Every node, by id.
    pub nodes: Vec<NodeView>,
}

/// A node sharing the store.
#[derive(Serialize, ToSchema)]
pub struct NodeView {
    /// Its id (`[cluster] node-id`).
    id: String,
    /// Where its API answers.
    address: String,
    /// The flowhost release it runs.
    version: String,
    /// Whether its lease holds: it renewed it in time. Runs of a node whose lease ran out
    /// are taken over by the others.
    live: bool,
    /// Whether it is the node that answered.
    this: bool,
    /// The unfinished runs it owns.
    runs: u64,
    /// When its process started, RFC 3339.
    started_at: String,
    /// Its last heartbeat, RFC 3339 (the store's clock).
    heartbeat_at: String,
    /// When its lease ends unless renewed, RFC 3339.
    expires_at: String,
}

impl NodeView {
    /// `node`, as the node that answers (`this`) or another sees it.
    pub fn new(node: &crate::store::Node, this: bool) -> Self {
        Self {
            id: node.info.id.clone(),
            address: node.info.address.clone(),
            version: node.info.version.clone(),
            live: node.live,
            this,
            runs: node.runs,
            started_at: rfc3339(node.info.started_ms),
            heartbeat_at: rfc3339(node.heartbeat_ms),
            expires_at: rfc3339(node.expires_ms),
        }
    }
}
