//! Rendering task params: every string in a task's params is a handlebars
//! template filled from the run it belongs to, e.g. `{{ds}}` or
//! `{{params.greeting}}`.
//!
//! Rendering is strict: a template naming a variable the run does not have
//! fails rather than rendering an empty string. Nothing is HTML-escaped.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use handlebars::{Handlebars, RenderErrorReason};
use serde_json::{Map, Value};

/// What a template can see of the run a task belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct RunContext {
    /// The DAG's id, e.g. `log_pipeline`.
    pub dag_id: String,
    /// The run's id, e.g. `scheduled__2024-01-31T06:00:00+00:00`.
    pub run_id: String,
    /// The date the run is for; for scheduled runs, the start of its data
    /// interval.
    pub logical_date: DateTime<Utc>,
    /// Start of the data the run processes (inclusive).
    pub data_interval_start: DateTime<Utc>,
    /// End of the data the run processes (exclusive).
    pub data_interval_end: DateTime<Utc>,
    /// The DAG's param defaults with the trigger's conf merged over them; see
    /// [`RunContext::merge_params`].
    pub params: Map<String, Value>,
    /// The conf the run was triggered with, `{}` or null when none.
    pub conf: Value,
}

impl RunContext {
    /// The DAG's param defaults overridden by the keys of `conf`, when `conf`
    /// is an object; keys of `conf` the DAG does not declare are added too.
    pub fn merge_params(defaults: &BTreeMap<String, Value>, conf: &Value) -> Map<String, Value> {
        let mut params: Map<String, Value> = defaults
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Value::Object(overrides) = conf {
            params.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        params
    }

    /// The variables templates see.
    fn variables(&self) -> Value {
        let rfc3339 =
            |at: &DateTime<Utc>| Value::from(at.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        serde_json::json!({
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "logical_date": rfc3339(&self.logical_date),
            "ds": self.logical_date.format("%Y-%m-%d").to_string(),
            "data_interval_start": rfc3339(&self.data_interval_start),
            "data_interval_end": rfc3339(&self.data_interval_end),
            "params": self.params,
            "conf": self.conf,
        })
    }
}

/// A param template that could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("cannot render `{path}`: {reason}")]
pub struct TemplateError {
    /// Where the template is in the task's params, e.g. `command[2]` or
    /// `env.TARGET`.
    pub path: String,
    /// Why, e.g. ``variable `params.missing` is not defined``.
    pub reason: String,
    /// The handlebars error.
    #[source]
    pub source: handlebars::RenderError,
}

/// Renders every string in `params`, at any depth, as a handlebars template
/// with the variables `dag_id`, `run_id`, `logical_date`, `ds` (YYYY-MM-DD of
/// the logical date), `data_interval_start`, `data_interval_end` (RFC 3339),
/// `params` and `conf`. Other values are kept as they are.
///
/// Fails on the first template that does not parse or that uses a variable
/// the context does not have.
pub fn render_params(params: &Value, ctx: &RunContext) -> Result<Value, TemplateError> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(handlebars::no_escape);
    let variables = ctx.variables();
    render_value(&registry, params, &variables, &mut String::new())
}

fn render_value(
    registry: &Handlebars,
    value: &Value,
    variables: &Value,
    path: &mut String,
) -> Result<Value, TemplateError> {
    match value {
        // Most strings hold no template; leave them untouched.
        Value::String(text) if !text.contains("{{") => Ok(value.clone()),
        Value::String(text) => registry
            .render_template(text, variables)
            .map(Value::String)
            .map_err(|source| TemplateError {
                path: if path.is_empty() {
                    "params".to_owned()
                } else {
                    path.clone()
                },
                reason: explain(&source),
                source,
            }),
        Value::Array(items) => {
            let mut rendered = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let result = render_value(registry, item, variables, path);
                path.truncate(len);
                rendered.push(result?);
            }
            Ok(Value::Array(rendered))
        }
        Value::Object(entries) => {
            let mut rendered = Map::with_capacity(entries.len());
            for (key, item) in entries {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                let result = render_value(registry, item, variables, path);
                path.truncate(len);
                rendered.insert(key.clone(), result?);
            }
            Ok(Value::Object(rendered))
        }
        _ => Ok(value.clone()),
    }
}

/// A readable reason for a render error, with the template position when
/// handlebars gives one.
fn explain(err: &handlebars::RenderError) -> String {
    let reason = match err.reason() {
        RenderErrorReason::MissingVariable(Some(name)) => {
            format!("variable `{name}` is not defined")
        }
        RenderErrorReason::MissingVariable(None) => "a variable is not defined".to_owned(),
        other => other.to_string(),
    };
    match (err.line_no, err.column_no) {
        (Some(line), Some(column)) => format!("{reason} (template line {line}, column {column})"),
        _ => reason,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn context() -> RunContext {
        let at = |h| {
            Utc.with_ymd_and_hms(2024, 1, 31, h, 0, 0)
                .single()
                .expect("valid date")
        };
        let defaults = BTreeMap::from([
            ("greeting".to_owned(), json!("hello")),
            ("count".to_owned(), json!(3)),
        ]);
        let conf = json!({"greeting": "bonjour", "extra": true});
        RunContext {
            dag_id: "etl".to_owned(),
            run_id: "manual__1".to_owned(),
            logical_date: at(6),
            data_interval_start: at(6),
            data_interval_end: at(7),
            params: RunContext::merge_params(&defaults, &conf),
            conf,
        }
    }

    #[test]
    fn render_params_fills_every_string_leaf() {
        let params = json!({
            "command": ["echo", "{{params.greeting}} on {{ds}}", "{{params.count}}"],
            "env": {"RUN": "{{dag_id}}/{{run_id}}", "FROM": "{{data_interval_start}}"},
            "cwd": "/tmp",
            "n": 5,
            "flag": null,
        });
        let rendered = render_params(&params, &context()).expect("templates are valid");
        assert_eq!(
            rendered,
            json!({
                "command": ["echo", "bonjour on 2024-01-31", "3"],
                "env": {"RUN": "etl/manual__1", "FROM": "2024-01-31T06:00:00Z"},
                "cwd": "/tmp",
                "n": 5,
                "flag": null,
            })
        );
    }

    #[test]
    fn render_params_does_not_escape_html() {
        let params = json!({"q": "{{conf.sql}}"});
        let mut ctx = context();
        ctx.conf = json!({"sql": "a < b && c > 'd'"});
        let rendered = render_params(&params, &ctx).expect("template is valid");
        assert_eq!(rendered, json!({"q": "a < b && c > 'd'"}));
    }

    #[test]
    fn render_params_exposes_interval_end_and_logical_date() {
        let params = json!("{{logical_date}} {{data_interval_end}} {{conf.extra}}");
        let rendered = render_params(&params, &context()).expect("template is valid");
        assert_eq!(
            rendered,
            json!("2024-01-31T06:00:00Z 2024-01-31T07:00:00Z true")
        );
    }

    #[test]
    fn render_params_fails_on_missing_variable_with_its_path() {
        let params = json!({"command": ["echo", "{{params.missing}}"]});
        let err = render_params(&params, &context()).expect_err("strict mode");
        assert_eq!(err.path, "command[1]");
        assert!(err.reason.contains("params.missing"), "{}", err.reason);
        assert!(
            err.to_string().starts_with("cannot render `command[1]`"),
            "{err}"
        );
    }

    #[test]
    fn render_params_fails_on_malformed_template() {
        let params = json!({"env": {"X": "{{#if}}"}});
        let err = render_params(&params, &context()).expect_err("malformed");
        assert_eq!(err.path, "env.X");
    }

    #[test]
    fn merge_params_lets_conf_override_defaults() {
        let merged = context().params;
        assert_eq!(merged.get("greeting"), Some(&json!("bonjour")));
        assert_eq!(merged.get("count"), Some(&json!(3)));
        assert_eq!(merged.get("extra"), Some(&json!(true)));
    }
}
