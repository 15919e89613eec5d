//! Workflow definitions: `[workflows.<name>]` in the configuration, the same schema as the
//! body of `PUT /v1/workflows/{name}`, and what a run is pinned to.
//!
//! ```toml
//! [workflows.order_processing]
//! input-schema = { type = "object", required = ["order_id"] }
//! [[workflows.order_processing.steps]]
//! name = "process_payment"
//! plugin = "payment"
//! compensate = true
//! timeout = "10s"
//! retry = { attempts = 3, initial-backoff = "100ms", max-backoff = "2s", jitter = 0.5 }
//! [[workflows.order_processing.steps]]
//! name = "cool_off"
//! sleep = "10m"
//! when = "context.total_amount > 1000.0"
//! ```
//!
//! A step is one of these kinds, by the key it has: `plugin` (a `step-plugin`'s execute and
//! compensate), `sleep` (a duration), `sleep-until` (an expression giving a time), `await`
//! (an event on a topic, or a signal, with a `match` and a `timeout`), `workflow` (a child
//! run of another workflow, with an `input`) or `parallel` (branches of plugin and sleep
//! steps that run at once, at most `max-parallel` of them). Any step
//! may have a `when` condition: false skips it. Expressions are CEL ([`Expr`]), compiled by
//! [`WorkflowDefinition::validate`].
//!
//! A definition's identity is the SHA-256 of its canonical JSON ([`WorkflowDefinition::digest`]):
//! every default filled in, fields in declaration order, so that the same definition written
//! two ways has one digest, and any change that alters behaviour has another. Keys a
//! definition does not use are left out of it, so that adding a kind of step to this release
//! changes no digest of an existing definition.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::RetryPolicy;
use super::expr::{Expr, VARIABLES};
use super::schedule::{CatchUp, Schedule};

/// One workflow: an ordered list of steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[schemars(title = "flowhost workflow definition")]
pub struct WorkflowDefinition {
    /// The steps, run in order; compensations run in reverse.
    pub steps: Vec<StepDefinition>,
    /// A topic pattern whose events start a run, with the event's data as its context.
    #[serde(default)]
    pub trigger: Option<String>,
    /// A JSON Schema the input of a run must match: a start whose body does not is refused
    /// with the failing path, and no run is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub input_schema: Option<serde_json::Value>,
    /// A cron pattern (seconds optional: `"0 0 2 * * *"` is 02:00:00 each day): each firing
    /// starts a run with the id `<workflow>@<time>`, so that no restart fires one twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The schedule's time zone, an IANA name (`Europe/Paris`); default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_timezone: Option<String>,
    /// What becomes of firings missed while the host was down: `none` (the default),
    /// `latest` or `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    /// Fields of a run's input that listings find runs by, from an index
    /// (`GET /v1/runs?context.order_id=o-1`): top-level keys or dotted paths
    /// (`customer.email`) whose values are strings, numbers or booleans.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Record each plugin step's attempts in the journal: the context it saw, its service
    /// calls with their answers (bodies capped, secret headers left out) and the events it
    /// published, so that a run can be replayed against another version of its plugins.
    /// Default false. (Left out of the definition's JSON while false, so that it does not
    /// change the digest of a definition that does not use it.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record: bool,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StepDefinition {
    /// Unique within the workflow; passed to the plugin in `step-info.step`. Runs match
    /// their steps to a definition by this name, never by position.
    pub name: String,
    /// A plugin step: the plugin that serves it (a `step-plugin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Whether a completed plugin step is undone by the plugin's `compensate` when a later
    /// step fails. Default true.
    #[serde(default = "yes")]
    pub compensate: bool,
    /// How often and how patiently a failed attempt is retried (its compensation too).
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Deadline of one attempt; default the plugin's call timeout.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    /// A sleep step: how long the run waits, durably, holding no task (`"10m"`).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub sleep: Option<Duration>,
    /// A sleep step: until when the run waits, an expression over `context` giving a
    /// timestamp or an RFC 3339 string; a time past wakes it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_until: Option<Expr>,
    /// A condition over `context`: when false, the step is skipped (and never compensated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Expr>,
    /// An await step: the run waits, durably, for an event or a signal.
    #[serde(default, rename = "await", skip_serializing_if = "Option::is_none")]
    pub awaits: Option<AwaitDefinition>,
    /// What an await's timeout does: fail the step (and compensate), the default, or
    /// continue with the next step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<OnTimeout>,
    /// A parallel step: branches of steps that run at once, each from the context as it was
    /// before the fork. The step's output is each branch's output under the branch's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<BranchForm>>")]
    pub parallel: Option<Vec<Branch>>,
    /// How many branches of a parallel step run at once; default all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// A child workflow step: the workflow a child run follows. The step completes when
    /// the child completes, with the child's output under the step's name, and fails when
    /// it fails; undoing the step undoes (or cancels) the child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// A child's input: an expression over `context` giving an object; default the
    /// context as the step sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Expr>,
}

/// One branch of a parallel step: steps run in order, whose outputs make the branch's
/// output. Written `{ name = "...", steps = [...] }`, or as the bare list of steps, which
/// takes the name of its first step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "BranchForm")]
pub struct Branch {
    /// The key of the branch's output in the context after the parallel step.
    pub name: String,
    /// Its steps, in order.
    pub steps: Vec<StepDefinition>,
}

/// How a [`Branch`] may be written.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum BranchForm {
    /// `{ name = "...", steps = [...] }`.
    Named {
        /// The key of the branch's output.
        name: String,
        /// Its steps, in order.
        steps: Vec<StepDefinition>,
    },
    /// `[...]`: the steps, the branch named after the first.
    Steps(Vec<StepDefinition>),
}

impl From<BranchForm> for Branch {
    fn from(form: BranchForm) -> Self {
        match form {
            BranchForm::Named { name, steps } => Self { name, steps },
            BranchForm::Steps(steps) => Self {
                name: steps.first().map(|s| s.name.clone()).unwrap_or_default(),
                steps,
            },
        }
    }
}

/// `await = { topic = "payment.settled", match = "...", timeout = "1h" }` or
/// `await = { signal = "approved" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AwaitDefinition {
    /// The topic of the events that resume the run (an exact topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The name of the signal that resumes the run (`POST /v1/runs/{id}/signals/{name}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Which events (or signals) count, over `event` and `context`; default every one. An
    /// event is `{id, topic, source, time_ms, data}`, a signal `{name, data}`.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<Expr>,
    /// How long to wait; default for ever.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
    /// Keep the events on `topic` that arrive before the run reaches the step (at most
    /// [`MAX_INBOX`] per run), so that one that came early still resumes it. Signals are
    /// always kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub buffer: bool,
}

/// How many messages (signals, buffered events) a run keeps for its await steps.
pub const MAX_INBOX: usize = 64;

/// Most search fields a workflow may declare.
pub const MAX_SEARCH_FIELDS: usize = 16;

/// Longest search field name, and longest value indexed, in bytes.
pub const MAX_SEARCH_VALUE: usize = 256;

/// What an await's timeout does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnTimeout {
    /// The step fails, and the run compensates.
    Fail,
    /// The step completes with nothing added to the context.
    Continue,
}

/// What a step does, by the key that names its kind.
#[derive(Debug, Clone, Copy)]
pub enum StepKind<'a> {
    /// Execute (and compensate) with this plugin.
    Plugin(&'a str),
    /// Wait this long.
    Sleep(Duration),
    /// Wait until the time this expression gives.
    SleepUntil(&'a Expr),
    /// Wait for an event or a signal.
    Await(&'a AwaitDefinition),
    /// Run these branches at once, at most this many at a time.
    Parallel(&'a [Branch], usize),
    /// Run a child of this workflow, with the input this expression gives (or the context).
    Child(&'a str, Option<&'a Expr>),
}

fn yes() -> bool {
    true
}

/// A definition that does not hold together: the key below `workflows.<name>` and what is
/// wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct InvalidDefinition {
    /// The key, e.g. `steps.charge.retry.attempts`.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl StepDefinition {
    /// The step's kind. Only a validated definition's steps have exactly one: a step with
    /// none or several reads as the first of plugin, sleep, sleep-until, await, workflow,
    /// parallel it has.
    pub fn kind(&self) -> StepKind<'_> {
        if let Some(plugin) = &self.plugin {
            StepKind::Plugin(plugin)
        } else if let Some(sleep) = self.sleep {
            StepKind::Sleep(sleep)
        } else if let Some(until) = &self.sleep_until {
            StepKind::SleepUntil(until)
        } else if let Some(awaits) = &self.awaits {
            StepKind::Await(awaits)
        } else if let Some(workflow) = &self.workflow {
            StepKind::Child(workflow, self.input.as_ref())
        } else if let Some(branches) = &self.parallel {
            let max = self.max_parallel.map_or(usize::MAX, |m| m as usize);
            StepKind::Parallel(branches, max)
        } else {
            StepKind::Sleep(Duration::ZERO)
        }
    }

    /// Whether a completed run of this step is undone when the run compensates: a plugin
    /// step that says so. A wait has nothing to undo; a parallel step's branches undo their
    /// own steps.
    pub fn undoable(&self) -> bool {
        self.compensate && (self.plugin.is_some() || self.workflow.is_some())
    }

    /// Checks the step; `in_branch` if it is one of a parallel step's branches, where only
    /// plugin steps and sleeps go.
    fn validate(&self, in_branch: bool) -> Result<(), InvalidDefinition> {
        let invalid = |field: &str, reason: String| {
            Err(InvalidDefinition {
                key: format!("steps.{}.{field}", self.name),
                reason,
            })
        };
        let kinds: Vec<&str> = [
            ("plugin", self.plugin.is_some()),
            ("sleep", self.sleep.is_some()),
            ("sleep-until", self.sleep_until.is_some()),
            ("await", self.awaits.is_some()),
            ("workflow", self.workflow.is_some()),
            ("parallel", self.parallel.is_some()),
        ]
        .into_iter()
        .filter_map(|(kind, given)| given.then_some(kind))
        .collect();
        match kinds[..] {
            [_] => {}
            [] => {
                return Err(InvalidDefinition {
                    key: format!("steps.{}", self.name),
                    reason:
                        "a step needs one of `plugin`, `sleep`, `sleep-until`, `await`, `workflow` or `parallel`"
                            .into(),
                });
            }
            [first, second, ..] => {
                return invalid(
                    second,
                    format!("a step is one kind: `{first}` and `{second}` cannot go together"),
                );
            }
        }
        let only_plugin_or_sleep =
            self.awaits.is_some() || self.parallel.is_some() || self.workflow.is_some();
        if in_branch && only_plugin_or_sleep {
            let kind = kinds[0];
            return invalid(
                kind,
                format!("a parallel branch holds plugin and sleep steps, not `{kind}`"),
            );
        }
        if let Some(branches) = &self.parallel {
            if branches.len() < 2 {
                return invalid(
                    "parallel",
                    "a parallel step needs two branches or more".into(),
                );
            }
            let mut names = std::collections::HashSet::new();
            for branch in branches {
                if branch.steps.is_empty() || branch.name.is_empty() {
                    return invalid(
                        "parallel",
                        "a branch needs a name and at least one step".into(),
                    );
                }
                if !names.insert(branch.name.as_str()) {
                    return invalid("parallel", format!("duplicate branch `{}`", branch.name));
                }
                for step in &branch.steps {
                    step.validate(true)?;
                }
            }
        }
        if self.max_parallel.is_some() && self.parallel.is_none() {
            return invalid("max-parallel", "only a parallel step has branches".into());
        }
        if self.max_parallel == Some(0) {
            return invalid("max-parallel", "must be at least 1".into());
        }
        if self.plugin.as_deref() == Some("") {
            return invalid("plugin", "must name a plugin".into());
        }
        if self.workflow.as_deref() == Some("") {
            return invalid("workflow", "must name a workflow".into());
        }
        if self.input.is_some() && self.workflow.is_none() {
            return invalid("input", "only a child workflow step has an input".into());
        }
        if let Err(e) = self.retry.validate() {
            return invalid(&format!("retry.{}", e.field), e.reason.into());
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return invalid("timeout", "must be more than zero".into());
        }
        if self.timeout.is_some() && self.plugin.is_none() {
            return invalid("timeout", "only a plugin step has a deadline".into());
        }
        if let Some(awaits) = &self.awaits {
            match (&awaits.topic, &awaits.signal) {
                (Some(name), None) | (None, Some(name)) if !name.is_empty() => {}
                _ => {
                    return invalid("await", "an await names one `topic` or one `signal`".into());
                }
            }
            if awaits.timeout.is_some_and(|t| t.is_zero()) {
                return invalid("await.timeout", "must be more than zero".into());
            }
            if let Some(matches) = &awaits.matches
                && let Err(e) = matches.check(&VARIABLES)
            {
                return invalid("await.match", e.0);
            }
        }
        if self.on_timeout.is_some() && self.awaits.as_ref().is_none_or(|a| a.timeout.is_none()) {
            return invalid(
                "on-timeout",
                "only an await with a timeout times out".into(),
            );
        }
        let context_only = &VARIABLES[..1];
        for (field, expr) in [
            ("sleep-until", &self.sleep_until),
            ("when", &self.when),
            ("input", &self.input),
        ] {
            if let Some(expr) = expr
                && let Err(e) = expr.check(context_only)
            {
                return invalid(field, e.0);
            }
        }
        Ok(())
    }
}

impl WorkflowDefinition {
    /// Checks what serde cannot: names, kinds, ranges, and that every expression and the
    /// input schema compile. Plugins are checked by whoever knows them.
    pub fn validate(&self) -> Result<(), InvalidDefinition> {
        let invalid = |key: String, reason: String| Err(InvalidDefinition { key, reason });
        if self.steps.is_empty() {
            return invalid("steps".into(), "a workflow needs at least one step".into());
        }
        if self.search.len() > MAX_SEARCH_FIELDS {
            return invalid(
                "search".into(),
                format!("at most {MAX_SEARCH_FIELDS} fields"),
            );
        }
        for (at, field) in self.search.iter().enumerate() {
            let fine = !field.is_empty()
                && field.len() <= MAX_SEARCH_VALUE
                && field.split('.').all(|segment| !segment.is_empty())
                && !field.contains(['\0', '=', '&', '[', ']']);
            if !fine {
                return invalid(
                    format!("search[{at}]"),
                    format!(
                        "`{field}` is not a field: keys separated by `.`, without `=`, `&` or brackets"
                    ),
                );
            }
            if self.search[..at].contains(field) {
                return invalid(format!("search[{at}]"), format!("`{field}` twice"));
            }
        }
        // Names are unique across the branches too: runs match steps by name.
        let mut seen = std::collections::HashSet::new();
        for (step, _) in self.all_steps() {
            if step.name.is_empty() {
                return invalid("steps".into(), "a step needs a name".into());
            }
            if !seen.insert(step.name.as_str()) {
                return invalid("steps".into(), format!("duplicate step `{}`", step.name));
            }
        }
        for step in &self.steps {
            step.validate(false)?;
        }
        if self.schedule.is_none() && (self.schedule_timezone.is_some() || self.catch_up.is_some())
        {
            return invalid(
                "schedule".into(),
                "schedule-timezone and catch-up need a schedule".into(),
            );
        }
        if let Some(Err(e)) = self.schedule() {
            let key = if e.contains("time zone") {
                "schedule-timezone"
            } else {
                "schedule"
            };
            return invalid(key.into(), e);
        }
        if let Some(schema) = &self.input_schema
            && let Err(e) = jsonschema::validator_for(schema)
        {
            return invalid(
                "input-schema".into(),
                format!("not a valid JSON Schema: {e}"),
            );
        }
        Ok(())
    }

    /// The schedule, parsed, if it has one.
    pub fn schedule(&self) -> Option<Result<Schedule, String>> {
        let pattern = self.schedule.as_deref()?;
        Some(Schedule::new(
            pattern,
            self.schedule_timezone.as_deref(),
            self.catch_up.unwrap_or_default(),
        ))
    }

    /// The step named `name`, wherever it is.
    pub fn step(&self, name: &str) -> Option<&StepDefinition> {
        self.all_steps()
            .find_map(|(step, _)| (step.name == name).then_some(step))
    }

    /// Every step, each parallel step followed by its branches' steps, with the branch each
    /// belongs to.
    pub fn all_steps(&self) -> impl Iterator<Item = (&StepDefinition, Option<&Branch>)> {
        self.steps.iter().flat_map(|step| {
            let branches = step.parallel.iter().flatten();
            std::iter::once((step, None)).chain(
                branches.flat_map(|branch| branch.steps.iter().map(move |s| (s, Some(branch)))),
            )
        })
    }

    /// Where the step named `name` is, if it is in a parallel step's branch: that step and
    /// the branch.
    pub fn branch_of(&self, name: &str) -> Option<(&StepDefinition, &Branch)> {
        self.steps.iter().find_map(|parallel| {
            let branch = parallel
                .parallel
                .iter()
                .flatten()
                .find(|branch| branch.steps.iter().any(|s| s.name == name))?;
            Some((parallel, branch))
        })
    }

    /// The workflows its steps run as children, each once, in order.
    pub fn children(&self) -> impl Iterator<Item = &str> {
        let mut seen = std::collections::HashSet::new();
        self.steps
            .iter()
            .filter_map(|step| step.workflow.as_deref())
            .filter(move |workflow| seen.insert(*workflow))
    }

    /// The plugins its steps use, each once, in order.
    pub fn plugins(&self) -> impl Iterator<Item = &str> {
        let mut seen = std::collections::HashSet::new();
        self.all_steps()
            .filter_map(|(step, _)| step.plugin.as_deref())
            .filter(move |plugin| seen.insert(*plugin))
    }

    /// The canonical JSON: every default explicit, fields in declaration order.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).expect("a definition serializes")
    }

    /// SHA-256 of [`Self::canonical`], hex: the version's identity.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
    }

    /// The values of the [`search`](Self::search) fields in `input`, as JSON prints them (a
    /// string as it is): what a run is indexed by. Fields that are missing, are objects or
    /// arrays, or are longer than [`MAX_SEARCH_VALUE`] are not indexed.
    pub fn search_values(&self, input: &Map<String, Value>) -> BTreeMap<String, String> {
        self.search
            .iter()
            .filter_map(|field| {
                let mut segments = field.split('.');
                let mut value = input.get(segments.next()?)?;
                for segment in segments {
                    value = value.get(segment)?;
                }
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                (text.len() <= MAX_SEARCH_VALUE).then(|| (field.clone(), text))
            })
            .collect()
    }

    /// The JSON Schema of a definition, as `GET /v1/schemas/workflow.json` serves it.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(WorkflowDefinition)).expect("a schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> WorkflowDefinition {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn one_definition_written_two_ways_has_one_digest() {
        let short = parse(r#"{"steps":[{"name":"a","plugin":"p"}]}"#);
        let long = parse(
            r#"{"trigger":null,"steps":[{"plugin":"p","name":"a","compensate":true,
                "retry":{"attempts":3,"initial-backoff":"100ms","max-backoff":"5s","jitter":0.5}}]}"#,
        );
        assert_eq!(short.digest(), long.digest());
        let changed = parse(r#"{"steps":[{"name":"a","plugin":"p","compensate":false}]}"#);
        assert_ne!(short.digest(), changed.digest());
        assert_eq!(short.digest().len(), 64);
    }

    #[test]
    fn a_typo_or_a_duplicate_is_named() {
        let typo = serde_json::from_str::<WorkflowDefinition>(
            r#"{"steps":[{"name":"a","plugin":"p","compensat":false}]}"#,
        );
        assert!(typo.unwrap_err().to_string().contains("compensat"));
        let twice = parse(r#"{"steps":[{"name":"a","plugin":"p"},{"name":"a","plugin":"q"}]}"#);
        assert_eq!(twice.validate().unwrap_err().reason, "duplicate step `a`");
        let none = parse(r#"{"steps":[{"name":"a","plugin":"p","retry":{"attempts":0}}]}"#);
        assert_eq!(none.validate().unwrap_err().key, "steps.a.retry.attempts");
    }

    #[test]
    fn a_step_is_exactly_one_kind_and_its_expressions_compile() {
        let error = |json: &str| parse(json).validate().unwrap_err().to_string();
        assert_eq!(
            error(r#"{"steps":[{"name":"a"}]}"#),
            "steps.a: a step needs one of `plugin`, `sleep`, `sleep-until`, `await`, `workflow` or `parallel`"
        );
        assert!(
            error(r#"{"steps":[{"name":"a","plugin":"p","sleep":"1s"}]}"#)
                .starts_with("steps.a.sleep: a step is one kind")
        );
        assert!(
            error(r#"{"steps":[{"name":"a","plugin":"p","when":"context.x >"}]}"#)
                .starts_with("steps.a.when: `context.x >` is not a valid CEL expression")
        );
        assert!(
            error(r#"{"steps":[{"name":"a","sleep-until":"ctx.at"}]}"#)
                .starts_with("steps.a.sleep-until: unknown variable `ctx`")
        );
        assert!(
            error(r#"{"steps":[{"name":"a","sleep":"1s","timeout":"1s"}]}"#)
                .starts_with("steps.a.timeout")
        );
        assert!(
            error(r#"{"steps":[{"name":"a","plugin":"p"}],"input-schema":{"type":"nope"}}"#)
                .starts_with("input-schema: not a valid JSON Schema")
        );
        let fine = parse(
            r#"{"steps":[{"name":"a","plugin":"p","when":"context.total > 1"},
                {"name":"b","sleep":"10m"},{"name":"c","sleep-until":"context.at"}]}"#,
        );
        fine.validate().unwrap();
        assert!(!fine.steps[1].undoable());
    }

    #[test]
    fn the_schema_describes_every_key() {
        let schema = WorkflowDefinition::json_schema().to_string();
        for key in [
            "steps",
            "sleep-until",
            "input-schema",
            "initial-backoff",
            "when",
        ] {
            assert!(
                schema.contains(&format!("\"{key}\"")),
                "{key} missing: {schema}"
            );
        }
    }

    #[test]
    fn search_fields_take_scalars_of_the_input_as_json_prints_them() {
        let definition = parse(
            r#"{"steps":[{"name":"a","plugin":"p"}],
                "search":["order_id","user_id","vip","customer.email","items","missing"]}"#,
        );
        assert!(definition.validate().is_ok());
        let input = serde_json::json!({
            "order_id": "o-1", "user_id": 7, "vip": true,
            "customer": {"email": "a@b.c"}, "items": [1, 2],
        });
        let values = definition.search_values(input.as_object().unwrap());
        let expected = [
            ("customer.email", "a@b.c"),
            ("order_id", "o-1"),
            ("user_id", "7"),
            ("vip", "true"),
        ];
        assert_eq!(
            values,
            expected
                .map(|(f, v)| (f.to_owned(), v.to_owned()))
                .into_iter()
                .collect()
        );
        // Declaring none leaves the canonical form, and so the digest, as it was.
        let plain = parse(r#"{"steps":[{"name":"a","plugin":"p"}]}"#);
        assert!(!plain.canonical().contains("search"));
    }

    #[test]
    fn malformed_search_fields_are_refused_by_key() {
        for (search, key) in [
            (r#"[""]"#, "search[0]"),
            (r#"["a", "a..b"]"#, "search[1]"),
            (r#"["a", "a"]"#, "search[1]"),
            (r#"["a=b"]"#, "search[0]"),
        ] {
            let definition = parse(&format!(
                r#"{{"steps":[{{"name":"a","plugin":"p"}}],"search":{search}}}"#
            ));
            assert_eq!(definition.validate().unwrap_err().key, key, "{search}");
        }
        let many: Vec<String> = (0..17).map(|i| format!("f{i}")).collect();
        let definition = parse(&format!(
            r#"{{"steps":[{{"name":"a","plugin":"p"}}],"search":{}}}"#,
            serde_json::to_string(&many).unwrap()
        ));
        assert_eq!(definition.validate().unwrap_err().key, "search");
    }
}
