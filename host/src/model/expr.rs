//! Expressions in workflow definitions: [CEL](https://cel.dev), the language of Kubernetes'
//! validation rules and Google's APIs, evaluated by the `cel` crate.
//!
//! An expression is written as a string (`when = "context.total > 100"`) and compiled when
//! its definition is validated, so that a syntax error or an unknown variable is an error
//! that names the step, not a failed run. Evaluation is pure: it sees only the variables
//! given to it — a step's `context` (the run's input with the outputs of the steps before
//! it) and, in an `await` match, the `event` — and no clock, so a run that evaluates the
//! same expression again after a restart gets the same answer.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The variables an expression may name.
pub const VARIABLES: [&str; 2] = ["context", "event"];

/// A CEL expression, compiled on first use.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    /// The compiled program, or why it does not compile: shared by every clone, so that a
    /// definition compiles each expression once.
    program: Arc<OnceLock<Result<cel::Program, String>>>,
}

/// Why an expression did not compile or evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExprError(pub String);

impl Expr {
    /// The expression written as `source`; [`Self::check`] tells whether it compiles.
    pub fn new(source: impl Into<Arc<str>>) -> Self {
        Self {
            source: source.into(),
            program: Arc::default(),
        }
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Compiles the expression (once) and checks that it names only the variables in
    /// `allowed`.
    pub fn check(&self, allowed: &[&str]) -> Result<(), ExprError> {
        let program = self.program()?;
        let references = program.references();
        if let Some(unknown) = references
            .variables()
            .into_iter()
            .find(|v| !allowed.contains(v))
        {
            return Err(ExprError(format!(
                "unknown variable `{unknown}`: an expression here may use {}",
                allowed
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }

    fn program(&self) -> Result<&cel::Program, ExprError> {
        self.program
            .get_or_init(|| {
                cel::Program::compile(&self.source).map_err(|e| {
                    // The parser's message spans lines, with a caret under the error.
                    let message = e.to_string();
                    format!(
                        "`{}` is not a valid CEL expression: {}",
                        self.source,
                        message.split_whitespace().collect::<Vec<_>>().join(" ")
                    )
                })
            })
            .as_ref()
            .map_err(|e| ExprError(e.clone()))
    }

    /// The two paths of an equality `event.<a…> == context.<b…>` the expression requires
    /// (alone, or as a term of a chain of `&&`): `(a, b)`. An index can then find the runs
    /// an event may match by one value, instead of evaluating every run's expression.
    pub fn correlation(&self) -> Option<(Vec<String>, Vec<String>)> {
        use cel::common::ast::{Expr as Node, IdedExpr, operators};

        fn path(node: &IdedExpr) -> Option<(&str, Vec<String>)> {
            match &node.expr {
                Node::Ident(name) => Some((name, Vec::new())),
                Node::Select(select) if !select.test => {
                    let (root, mut path) = path(&select.operand)?;
                    path.push(select.field.clone());
                    Some((root, path))
                }
                _ => None,
            }
        }

        fn find(node: &IdedExpr) -> Option<(Vec<String>, Vec<String>)> {
            let Node::Call(call) = &node.expr else {
                return None;
            };
            match call.func_name.as_str() {
                operators::LOGICAL_AND => call.args.iter().find_map(find),
                operators::EQUALS if call.args.len() == 2 => {
                    match (path(&call.args[0])?, path(&call.args[1])?) {
                        (("event", event), ("context", context))
                        | (("context", context), ("event", event)) => Some((event, context)),
                        _ => None,
                    }
                }
                _ => None,
            }
        }

        find(self.program().ok()?.expression())
    }

    /// Evaluates the expression with `variables` bound.
    fn evaluate(&self, variables: &[(&str, &Value)]) -> Result<cel::Value, ExprError> {
        let program = self.program()?;
        let mut context = cel::Context::default();
        for (name, value) in variables {
            context
                .add_variable(*name, *value)
                .map_err(|e| ExprError(format!("binding `{name}`: {e}")))?;
        }
        program
            .execute(&context)
            .map_err(|e| ExprError(format!("`{}` failed: {e}", self.source)))
    }

    /// Evaluates to a boolean, or fails saying what it gave instead.
    pub fn truth(&self, variables: &[(&str, &Value)]) -> Result<bool, ExprError> {
        match self.evaluate(variables)? {
            cel::Value::Bool(truth) => Ok(truth),
            other => Err(ExprError(format!(
                "`{}` gave {} where true or false was expected",
                self.source,
                kind(&other)
            ))),
        }
    }

    /// Evaluates to a time, in ms since the Unix epoch: a CEL timestamp or an RFC 3339
    /// string. A time before the epoch is the epoch.
    pub fn time_ms(&self, variables: &[(&str, &Value)]) -> Result<u64, ExprError> {
        let time = match self.evaluate(variables)? {
            cel::Value::Timestamp(time) => time,
            cel::Value::String(text) => {
                chrono::DateTime::parse_from_rfc3339(&text).map_err(|e| {
                    ExprError(format!(
                        "`{}` gave \"{text}\", which is not an RFC 3339 time: {e}",
                        self.source
                    ))
                })?
            }
            other => {
                return Err(ExprError(format!(
                    "`{}` gave {} where a timestamp or an RFC 3339 string was expected",
                    self.source,
                    kind(&other)
                )));
            }
        };
        Ok(u64::try_from(time.timestamp_millis()).unwrap_or(0))
    }

    /// Evaluates to any value, as JSON.
    pub fn json(&self, variables: &[(&str, &Value)]) -> Result<Value, ExprError> {
        let value = self.evaluate(variables)?;
        value.json().map_err(|e| {
            ExprError(format!(
                "`{}` gave a value JSON cannot hold: {e}",
                self.source
            ))
        })
    }
}

/// What a CEL value is, for messages.
fn kind(value: &cel::Value) -> String {
    match value {
        cel::Value::String(s) => format!("the string \"{s}\""),
        cel::Value::Null => "null".into(),
        other => format!("{:?}", other.type_of()).to_lowercase(),
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Expr").field(&&*self.source).finish()
    }
}

impl Serialize for Expr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Expr::new)
    }
}

impl schemars::JsonSchema for Expr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Expression".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A CEL expression (https://cel.dev) over `context` (and `event` in an await match)."
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn conditions_see_the_context() {
        let context = json!({"total": 120, "country": "FR"});
        let rich = Expr::new("context.total > 100 && context.country == 'FR'");
        assert!(rich.truth(&[("context", &context)]).unwrap());
        let poor = Expr::new("context.total < 100");
        assert!(!poor.truth(&[("context", &context)]).unwrap());
        let not_bool = Expr::new("context.total");
        let error = not_bool.truth(&[("context", &context)]).unwrap_err();
        assert!(error.0.contains("where true or false"), "{error}");
        let missing = Expr::new("context.nope > 1");
        assert!(missing.truth(&[("context", &context)]).is_err());
    }

    #[test]
    fn a_typo_fails_the_check_and_names_what_is_wrong() {
        let syntax = Expr::new("context.total >");
        assert!(
            syntax
                .check(&VARIABLES)
                .unwrap_err()
                .0
                .contains("not a valid CEL")
        );
        let unknown = Expr::new("contxt.total > 1");
        let error = unknown.check(&["context"]).unwrap_err();
        assert!(error.0.contains("unknown variable `contxt`"), "{error}");
        Expr::new("event.data.order_id == context.order_id")
            .check(&VARIABLES)
            .unwrap();
    }

    #[test]
    fn an_equality_of_event_and_context_is_found_for_the_index() {
        let paths = |source: &str| Expr::new(source).correlation();
        let order = Some((
            vec!["data".to_owned(), "order_id".to_owned()],
            vec!["order_id".to_owned()],
        ));
        assert_eq!(paths("event.data.order_id == context.order_id"), order);
        assert_eq!(
            paths("context.order_id == event.data.order_id && event.data.ok"),
            order
        );
        assert_eq!(
            paths("event.data.total > 1 && event.data.order_id == context.order_id"),
            order
        );
        assert_eq!(
            paths("event.data.order_id == context.order_id || true"),
            None
        );
        assert_eq!(paths("event.data.total > context.total"), None);
    }

    #[test]
    fn times_are_timestamps_or_rfc3339_strings() {
        let context = json!({"at": "2026-12-01T10:00:00Z"});
        let at = Expr::new("context.at");
        assert_eq!(
            at.time_ms(&[("context", &context)]).unwrap(),
            1_796_119_200_000
        );
        let later = Expr::new("timestamp(context.at) + duration('90s')");
        assert_eq!(
            later.time_ms(&[("context", &context)]).unwrap(),
            1_796_119_290_000
        );
        let bad = Expr::new("'tomorrow'");
        assert!(bad.time_ms(&[]).unwrap_err().0.contains("RFC 3339"));
    }
}
