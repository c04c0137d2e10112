//! What a trigger and a backfill ask for, read from a browser's form or an
//! API call and validated the same way for both. A form that fails keeps
//! what the user typed and says, per field, what is wrong.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use rtmas_scheduler::dag::{Dag, parse_start_date};
use rtmas_scheduler::state::RunState;
use rtmas_scheduler::store::{NewBackfill, Reprocess, RunFilter, RunType};
use serde::Deserialize;

use crate::WebError;
use serde::Serialize;
use serde_json::{Map, Value};

/// Longest run id accepted.
const MAX_RUN_ID: usize = 250;

/// The type a DAG param's default gives it, which a trigger must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamKind {
    /// Text.
    String,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// True or false.
    Boolean,
    /// Any JSON value (lists, objects, null).
    Json,
}

impl ParamKind {
    /// The kind of a param whose default is `value`.
    pub fn of(value: &Value) -> ParamKind {
        match value {
            Value::String(_) => ParamKind::String,
            Value::Number(n) if n.is_i64() || n.is_u64() => ParamKind::Integer,
            Value::Number(_) => ParamKind::Number,
            Value::Bool(_) => ParamKind::Boolean,
            _ => ParamKind::Json,
        }
    }

    /// Whether `value` is of this kind.
    fn admits(self, value: &Value) -> bool {
        match self {
            ParamKind::String => value.is_string(),
            ParamKind::Integer => value.is_i64() || value.is_u64(),
            ParamKind::Number => value.is_number(),
            ParamKind::Boolean => value.is_boolean(),
            ParamKind::Json => true,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ParamKind::String => "text",
            ParamKind::Integer => "a whole number",
            ParamKind::Number => "a number",
            ParamKind::Boolean => "true or false",
            ParamKind::Json => "JSON",
        }
    }
}

/// Problems with a run's conf: it must be a JSON object, and a key that
/// names a DAG param must hold a value of the param's kind.
pub fn check_conf(dag: &Dag, conf: &Value) -> Vec<String> {
    let Some(conf) = conf.as_object() else {
        return vec!["conf must be a JSON object, e.g. {\"days\": 3}".to_owned()];
    };
    dag.params
        .iter()
        .filter_map(|(name, default)| {
            let kind = ParamKind::of(default);
            let value = conf.get(name)?;
            (!kind.admits(value)).then(|| format!("param `{name}` must be {}", kind.name()))
        })
        .collect()
}

/// Problems with a run id the user chose: letters, digits and `_ - . : +`,
/// at most 250 of them.
pub fn check_run_id(run_id: &str) -> Option<String> {
    let valid = !run_id.is_empty()
        && run_id.len() <= MAX_RUN_ID
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:+".contains(c));
    (!valid).then(|| {
        format!("the run id may hold letters, digits and _ - . : +, at most {MAX_RUN_ID} of them")
    })
}

/// One field of the trigger form: a DAG param.
#[derive(Debug, Clone, Serialize)]
pub struct ParamField {
    /// The param's name.
    pub name: String,
    /// Its kind, which chooses the input.
    pub kind: ParamKind,
    /// The value shown (the default, or what was posted).
    pub value: String,
    /// For booleans: whether the box is ticked.
    pub checked: bool,
    /// What is wrong with the posted value.
    pub error: Option<String>,
}

/// The trigger form: one field per DAG param, extra conf as JSON, and an
/// optional run id.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerForm {
    /// The param fields, in name order.
    pub fields: Vec<ParamField>,
    /// Extra conf, a JSON object; param fields win over its keys.
    pub conf: String,
    /// The run id; empty for the default.
    pub run_id: String,
    /// Problems that belong to no one field.
    pub errors: Vec<String>,
}

/// What a valid trigger asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// The run's conf.
    pub conf: Value,
    /// The run id, when chosen.
    pub run_id: Option<String>,
}

impl TriggerForm {
    /// The form as first shown: every param at its default.
    pub fn blank(dag: &Dag) -> TriggerForm {
        let fields = dag
            .params
            .iter()
            .map(|(name, default)| ParamField {
                name: name.clone(),
                kind: ParamKind::of(default),
                value: match default {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
                checked: default.as_bool().unwrap_or(false),
                error: None,
            })
            .collect();
        TriggerForm {
            fields,
            conf: "{}".to_owned(),
            run_id: String::new(),
            errors: Vec::new(),
        }
    }

    /// Reads a posted form (`param.NAME` fields, `conf`, `run_id`) and
    /// validates it: the trigger when valid, else the form with its errors
    /// and the user's input kept.
    pub fn read(dag: &Dag, posted: &HashMap<String, String>) -> Result<Trigger, TriggerForm> {
        let (form, trigger) = TriggerForm::fill(dag, posted);
        trigger.ok_or(form)
    }

    /// The form as posted, with `error` added: for a valid trigger that
    /// the store refused (a run id that is taken).
    pub fn refused(dag: &Dag, posted: &HashMap<String, String>, error: String) -> TriggerForm {
        let (mut form, _) = TriggerForm::fill(dag, posted);
        form.errors.push(error);
        form
    }

    fn fill(dag: &Dag, posted: &HashMap<String, String>) -> (TriggerForm, Option<Trigger>) {
        let mut form = TriggerForm::blank(dag);
        form.conf = posted.get("conf").cloned().unwrap_or_default();
        form.run_id = posted
            .get("run_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();

        let mut conf = match form.conf.trim() {
            "" => Map::new(),
            text => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => map,
                Ok(_) => {
                    form.errors
                        .push("conf must be a JSON object, e.g. {\"days\": 3}".to_owned());
                    Map::new()
                }
                Err(err) => {
                    form.errors.push(format!("conf is not valid JSON: {err}"));
                    Map::new()
                }
            },
        };
        for field in &mut form.fields {
            let posted_value = posted.get(&format!("param.{}", field.name));
            let value = match field.kind {
                ParamKind::Boolean => {
                    field.checked = posted_value.is_some_and(|v| v == "true" || v == "on");
                    Ok(Value::Bool(field.checked))
                }
                kind => {
                    field.value = posted_value.cloned().unwrap_or_default();
                    parse_param(kind, &field.value)
                }
            };
            match value {
                Ok(value) => {
                    conf.insert(field.name.clone(), value);
                }
                Err(err) => field.error = Some(err),
            }
        }
        let conf = Value::Object(conf);
        form.errors.extend(check_conf(dag, &conf));
        if !form.run_id.is_empty()
            && let Some(err) = check_run_id(&form.run_id)
        {
            form.errors.push(err);
        }
        let trigger = (form.errors.is_empty() && form.fields.iter().all(|f| f.error.is_none()))
            .then(|| Trigger {
                conf,
                run_id: (!form.run_id.is_empty()).then(|| form.run_id.clone()),
            });
        (form, trigger)
    }
}

fn parse_param(kind: ParamKind, text: &str) -> Result<Value, String> {
    let text_trimmed = text.trim();
    match kind {
        ParamKind::String => Ok(Value::String(text.to_owned())),
        ParamKind::Integer => text_trimmed
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("`{text_trimmed}` is not a whole number")),
        ParamKind::Number => text_trimmed
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("`{text_trimmed}` is not a number")),
        ParamKind::Json => {
            serde_json::from_str(text_trimmed).map_err(|err| format!("not valid JSON: {err}"))
        }
        ParamKind::Boolean => Ok(Value::Bool(text_trimmed == "true")),
    }
}

/// The backfill form's fields, as posted (all text, so that a bad value can
/// be shown back as typed).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct BackfillFields {
    /// First logical date: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM` (UTC) or RFC 3339.
    #[serde(default)]
    pub from: String,
    /// Last logical date, included; same forms.
    #[serde(default)]
    pub to: String,
    /// Which existing runs to run again: `none`, `failed` or `all`.
    #[serde(default)]
    pub reprocess: String,
    /// Newest date first (`true` when set).
    #[serde(default)]
    pub backwards: Option<String>,
    /// How many of its runs may be active at once.
    #[serde(default)]
    pub max_active_runs: String,
    /// Conf for every run, a JSON object.
    #[serde(default)]
    pub conf: String,
}

impl BackfillFields {
    /// The form as first shown: the last three days, nothing re-run.
    pub fn blank(now: DateTime<Utc>) -> BackfillFields {
        let day = |days: i64| {
            (now - chrono::TimeDelta::days(days))
                .format("%Y-%m-%d")
                .to_string()
        };
        BackfillFields {
            from: day(3),
            to: day(1),
            reprocess: "none".to_owned(),
            backwards: None,
            max_active_runs: "4".to_owned(),
            conf: "{}".to_owned(),
        }
    }

    /// The backfill these fields ask for, or every problem with them.
    pub fn read(&self, dag: &Dag) -> Result<NewBackfill, Vec<String>> {
        let mut errors = Vec::new();
        let from = parse_when(&self.from)
            .map_err(|err| errors.push(format!("from: {err}")))
            .ok();
        let to = parse_when(&self.to)
            .map_err(|err| errors.push(format!("to: {err}")))
            .ok();
        let reprocess = match self.reprocess.trim() {
            "" => Reprocess::None,
            text => text
                .parse::<Reprocess>()
                .map_err(|err| errors.push(err))
                .unwrap_or(Reprocess::None),
        };
        let max_active_runs = match self.max_active_runs.trim() {
            "" => 4,
            text => match text.parse::<u32>() {
                Ok(n) if (1..=64).contains(&n) => n,
                _ => {
                    errors.push("max active runs must be a whole number from 1 to 64".to_owned());
                    1
                }
            },
        };
        let conf = match self.conf.trim() {
            "" => Value::Object(Map::new()),
            text => serde_json::from_str(text).unwrap_or_else(|err| {
                errors.push(format!("conf is not valid JSON: {err}"));
                Value::Object(Map::new())
            }),
        };
        errors.extend(check_conf(dag, &conf));
        match (from, to) {
            (Some(from), Some(to)) if errors.is_empty() => Ok(NewBackfill {
                dag_id: dag.dag_id.clone(),
                from,
                to,
                reprocess,
                backwards: self
                    .backwards
                    .as_deref()
                    .is_some_and(|v| v == "true" || v == "on"),
                max_active_runs,
                conf,
            }),
            _ => Err(errors),
        }
    }
}

/// A date or time as a form or API call writes it: RFC 3339, `YYYY-MM-DD`
/// (midnight UTC) or `YYYY-MM-DDTHH:MM[:SS]` (UTC, as `datetime-local`
/// inputs send it).
pub fn parse_when(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a date is needed, e.g. 2026-12-01".to_owned());
    }
    if let Ok(at) = parse_start_date(text) {
        return Ok(at);
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|at| at.and_utc())
        .ok_or_else(|| format!("`{text}` is not a date (e.g. 2026-12-01 or 2026-12-01T06:00)"))
}

#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    /// Only runs in this state.
    #[serde(default)]
    pub state: Option<String>,
    /// Only runs of this type.
    #[serde(default)]
    pub run_type: Option<String>,
    /// Keyset cursor: `<logical date RFC 3339>,<run key>` of the last run
    /// shown.
    #[serde(default)]
    pub before: Option<String>,
}

/// The run filter of a DAG page's query, or what is wrong with it.
pub fn run_filter(dag_id: &str, query: &RunsQuery, limit: i64) -> Result<RunFilter, WebError> {
    let state = match query.state.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<RunState>()
                .map_err(|err| WebError::BadRequest(err.to_string()))?,
        ),
        None => None,
    };
    let run_type = match query.run_type.as_deref().filter(|s| !s.is_empty()) {
        Some("manual") => Some(RunType::Manual),
        Some("scheduled") => Some(RunType::Scheduled),
        Some("backfill") => Some(RunType::Backfill),
        Some(other) => {
            return Err(WebError::BadRequest(format!(
                "unknown run type `{other}`: expected manual, scheduled or backfill"
            )));
        }
        None => None,
    };
    let before = match query.before.as_deref().filter(|s| !s.is_empty()) {
        Some(cursor) => {
            let bad = || WebError::BadRequest(format!("`{cursor}` is not a runs cursor"));
            let (at, id) = cursor.rsplit_once(',').ok_or_else(bad)?;
            let at = chrono::DateTime::parse_from_rfc3339(at).map_err(|_| bad())?;
            Some((at.with_timezone(&Utc), id.parse().map_err(|_| bad())?))
        }
        None => None,
    };
    Ok(RunFilter {
        dag_id: dag_id.to_owned(),
        state,
        run_type,
        before,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dag() -> Dag {
        let yaml = "dag_id: d\nparams:\n  days: 3\n  ratio: 0.5\n  name: x\n  dry: false\n  \
                    hosts: [a]\ntasks:\n  - id: t\n    kind: noop\n";
        rtmas_scheduler::dag::parse_dag(
            std::path::Path::new("d.yaml"),
            yaml,
            &rtmas_scheduler::dag::AnyKind,
        )
        .expect("the test DAG is valid")
    }

    fn posted(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_valid_form_becomes_conf_with_typed_params() {
        let trigger = TriggerForm::read(
            &dag(),
            &posted(&[
                ("param.days", "7"),
                ("param.ratio", "0.25"),
                ("param.name", "<b>x</b>"),
                ("param.dry", "true"),
                ("param.hosts", "[\"a\", \"b\"]"),
                ("conf", "{\"extra\": 1}"),
                ("run_id", "by_hand"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            trigger.conf,
            json!({"days": 7, "ratio": 0.25, "name": "<b>x</b>", "dry": true,
                   "hosts": ["a", "b"], "extra": 1})
        );
        assert_eq!(trigger.run_id.as_deref(), Some("by_hand"));
    }

    #[test]
    fn a_bad_field_is_named_and_the_input_kept() {
        let form = TriggerForm::read(
            &dag(),
            &posted(&[("param.days", "seven"), ("conf", "[1]"), ("run_id", "a b")]),
        )
        .expect_err("invalid");
        let days = form
            .fields
            .iter()
            .find(|f| f.name == "days")
            .expect("field");
        assert_eq!(days.value, "seven");
        assert_eq!(days.error.as_deref(), Some("`seven` is not a whole number"));
        assert_eq!(form.errors.len(), 2, "{:?}", form.errors);
        assert!(form.errors[0].contains("JSON object"));
        assert!(form.errors[1].contains("run id"));
    }

    #[test]
    fn conf_must_keep_the_kinds_of_params() {
        let errors = check_conf(&dag(), &json!({"days": "3", "other": "free"}));
        assert_eq!(
            errors,
            vec!["param `days` must be a whole number".to_owned()]
        );
        assert!(check_conf(&dag(), &json!({"days": 3})).is_empty());
    }

    #[test]
    fn backfill_fields_accept_dates_and_local_times_and_report_every_problem() {
        let fields = BackfillFields {
            from: "2026-12-01".into(),
            to: "2026-12-03T06:30".into(),
            reprocess: "failed".into(),
            backwards: Some("true".into()),
            max_active_runs: "2".into(),
            conf: String::new(),
        };
        let new = fields.read(&dag()).expect("valid");
        assert_eq!(new.from.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(new.to.to_rfc3339(), "2026-12-03T06:30:00+00:00");
        assert_eq!(new.reprocess, Reprocess::Failed);
        assert!(new.backwards);

        let bad = BackfillFields {
            from: "yesterday".into(),
            max_active_runs: "0".into(),
            reprocess: "some".into(),
            ..fields
        };
        let errors = bad.read(&dag()).expect_err("invalid");
        assert_eq!(errors.len(), 3, "{errors:?}");
    }
}
