//! Decoding a DAG file's keys into the model: the DAG itself, its
//! `default_args` and each task.

use std::collections::BTreeMap;
use std::path::Path;

use marked_yaml::Node;
use marked_yaml::types::MarkedMappingNode;

use super::graph::{self, TaskNode};
use super::node::{
    Diag, Field, Fields, MAX_DEPTH, Pos, boolean, closest, describe, drop_flat, duration, integer,
    mapping_pos, node_pos, string, string_list, to_json, too_deep, wrong_type,
};
use super::{DagError, KindCatalog, schedule, yaml};
use crate::dag::model::{DEFAULT_MAX_ACTIVE_RUNS, Dag, Task, TaskArgs, TriggerRule};

const DAG_KEYS: [&str; 13] = [
    "dag_id",
    "description",
    "schedule",
    "start_date",
    "catchup",
    "max_active_runs",
    "max_active_tasks",
    "dagrun_timeout",
    "deadline",
    "default_args",
    "params",
    "tags",
    "tasks",
];

const ARG_KEYS: [&str; 6] = [
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "timeout",
    "retry_jitter",
];

const TASK_KEYS: [&str; 13] = [
    "pool",
    "pool_slots",
    "retry_jitter",
    "id",
    "kind",
    "params",
    "depends_on",
    "trigger_rule",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "timeout",
];

/// Longest DAG or task id, so ids fit wherever they are stored.
const MAX_ID_LEN: usize = 250;

/// What one pass over a file found.
pub(super) struct Parsed {
    /// The DAG, when no error was found.
    pub dag: Option<Dag>,
    /// The DAG id with its position, when it could be read, even if other
    /// parts of the file are wrong.
    pub dag_id: Option<(String, Pos)>,
    /// Every error, in file order.
    pub errors: Vec<DagError>,
}

/// Parses and validates one DAG file.
pub(super) fn parse(file: &Path, source: &str, kinds: &dyn KindCatalog) -> Parsed {
    let mut d = Diag::new(file);
    let root = match yaml::parse(source) {
        Ok(root) => root,
        Err((pos, message)) => {
            d.error(pos, message);
            return Parsed {
                dag: None,
                dag_id: None,
                errors: d.into_sorted(),
            };
        }
    };

    if let Some(deep) = too_deep(&root) {
        d.error(
            node_pos(deep),
            format!("YAML nests deeper than {MAX_DEPTH} levels"),
        );
        drop_flat(root);
        return Parsed {
            dag: None,
            dag_id: None,
            errors: d.into_sorted(),
        };
    }

    let (dag, dag_id) = match &root {
        Node::Mapping(map) => decode_dag(&mut d, map, kinds),
        other => {
            d.error(
                node_pos(other),
                "a DAG file must be a mapping of keys such as `dag_id`",
            );
            (None, None)
        }
    };
    let errors = d.into_sorted();
    Parsed {
        dag: dag.filter(|_| errors.is_empty()),
        dag_id,
        errors,
    }
}

type DagAndId = (Option<Dag>, Option<(String, Pos)>);

fn decode_dag(d: &mut Diag, map: &MarkedMappingNode, kinds: &dyn KindCatalog) -> DagAndId {
    let fields = Fields::check(d, map, &DAG_KEYS, "in the DAG");

    let dag_id = fields.require(d, "dag_id", "in the DAG").and_then(|f| {
        let id = identifier(d, f, "DAG id")?;
        Some((id, f.pos()))
    });
    let description = fields
        .get("description")
        .and_then(|f| string(d, f))
        .map(str::to_owned);
    let schedule = fields.get("schedule").map(|f| schedule::decode(d, f));
    let start_date = fields.get("start_date").map(|f| {
        let text = string(d, f)?;
        schedule::parse_start_date(text)
            .map_err(|err| d.error(f.pos(), err.to_string()))
            .ok()
    });
    let catchup = fields.get("catchup").map(|f| boolean(d, f));
    let max_active_runs = fields.get("max_active_runs").map(|f| integer(d, f, 1));
    let max_active_tasks = fields.get("max_active_tasks").map(|f| integer(d, f, 1));
    let dagrun_timeout = fields.get("dagrun_timeout").map(|f| duration(d, f, true));
    let deadline = fields.get("deadline").map(|f| duration(d, f, false));
    let default_args = fields.get("default_args").map(|f| match f.value {
        Node::Mapping(args) => {
            let args_fields = Fields::check(d, args, &ARG_KEYS, "in `default_args`");
            Some(task_args(d, &args_fields))
        }
        _ => {
            wrong_type(d, f, "a mapping of retry and timeout settings");
            None
        }
    });
    let params = fields.get("params").map(|f| dag_params(d, f));
    let tags = fields.get("tags").map(|f| tags(d, f));
    let tasks = match fields.require(d, "tasks", "in the DAG") {
        Some(f) => tasks(d, f, kinds),
        None => None,
    };

    // Every part decoded: build the DAG. A `None` inside means an error was
    // already recorded for that key.
    let dag = (|| {
        Some(Dag {
            dag_id: dag_id.as_ref()?.0.clone(),
            description,
            schedule: schedule.map_or(Some(None), |s| s.map(Some))?,
            start_date: start_date.map_or(Some(None), |s| s.map(Some))?,
            catchup: catchup.unwrap_or(Some(false))?,
            max_active_runs: max_active_runs.unwrap_or(Some(DEFAULT_MAX_ACTIVE_RUNS))?,
            max_active_tasks: max_active_tasks.map_or(Some(None), |v| v.map(Some))?,
            dagrun_timeout: dagrun_timeout.map_or(Some(None), |v| v.map(Some))?,
            deadline: deadline.map_or(Some(None), |v| v.map(Some))?,
            default_args: default_args.unwrap_or_else(|| Some(TaskArgs::default()))?,
            params: params.unwrap_or_else(|| Some(BTreeMap::new()))?,
            tags: tags.unwrap_or_else(|| Some(Vec::new()))?,
            tasks: tasks?,
        })
    })();
    (dag, dag_id)
}

/// An id of letters, digits, `_`, `-` and `.`.
fn identifier(d: &mut Diag, field: Field, what: &str) -> Option<String> {
    let id = string(d, field)?;
    let valid_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if id.is_empty() || !valid_chars {
        d.error_hint(
            field.pos(),
            format!("invalid {what} `{id}`"),
            Some("use only letters, digits, `_`, `-` and `.`".to_owned()),
        );
        return None;
    }
    if id.len() > MAX_ID_LEN {
        d.error(
            field.pos(),
            format!("{what} is longer than {MAX_ID_LEN} characters"),
        );
        return None;
    }
    Some(id.to_owned())
}

/// Retry and timeout keys, from `default_args` or a task.
fn task_args(d: &mut Diag, fields: &Fields) -> TaskArgs {
    TaskArgs {
        retries: fields.get("retries").and_then(|f| integer(d, f, 0)),
        retry_delay: fields
            .get("retry_delay")
            .and_then(|f| duration(d, f, false)),
        retry_exponential_backoff: fields
            .get("retry_exponential_backoff")
            .and_then(|f| boolean(d, f)),
        max_retry_delay: fields
            .get("max_retry_delay")
            .and_then(|f| duration(d, f, false)),
        timeout: fields.get("timeout").and_then(|f| duration(d, f, true)),
        retry_jitter: fields.get("retry_jitter").and_then(|f| boolean(d, f)),
    }
}

fn dag_params(d: &mut Diag, field: Field) -> Option<BTreeMap<String, serde_json::Value>> {
    let Node::Mapping(map) = field.value else {
        wrong_type(d, field, "a mapping of param names to default values");
        return None;
    };
    Some(
        map.iter()
            .map(|(k, v)| (k.as_str().to_owned(), to_json(v)))
            .collect(),
    )
}

fn tags(d: &mut Diag, field: Field) -> Option<Vec<String>> {
    let Node::Sequence(items) = field.value else {
        wrong_type(d, field, "a list of strings");
        return None;
    };
    let before = d.errors.len();
    let mut tags = Vec::with_capacity(items.len());
    for item in items.iter() {
        match item.as_scalar() {
            Some(tag) if !tag.as_str().is_empty() => tags.push(tag.as_str().to_owned()),
            _ => d.error(
                node_pos(item),
                format!("tags must be strings, found {}", describe(item)),
            ),
        }
    }
    (d.errors.len() == before).then_some(tags)
}

fn tasks(d: &mut Diag, field: Field, kinds: &dyn KindCatalog) -> Option<Vec<Task>> {
    let items = match field.value {
        Node::Sequence(items) if !items.is_empty() => items,
        Node::Sequence(_) => {
            d.error(field.pos(), "`tasks` must list at least one task");
            return None;
        }
        _ => {
            wrong_type(d, field, "a list of tasks");
            return None;
        }
    };

    let mut decoded = Vec::with_capacity(items.len());
    let mut nodes = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Node::Mapping(map) = item else {
            d.error(
                node_pos(item),
                format!(
                    "task #{} must be a mapping with `id` and `kind`, found {}",
                    i + 1,
                    describe(item)
                ),
            );
            continue;
        };
        let (task, node) = decode_task(d, map, i, kinds);
        decoded.push(task);
        nodes.push(node);
    }

    graph::check(d, &nodes);
    decoded.into_iter().collect()
}

/// Decodes one task; the task is `None` when some key of it is wrong.
fn decode_task(
    d: &mut Diag,
    map: &MarkedMappingNode,
    index: usize,
    kinds: &dyn KindCatalog,
) -> (Option<Task>, TaskNode) {
    let before = d.errors.len();

    // The id names the task in every other message, so read it first.
    let place_id = map
        .get_scalar("id")
        .filter(|id| !id.as_str().is_empty())
        .map_or_else(
            || format!("in task #{}", index + 1),
            |id| format!("in task `{}`", id.as_str()),
        );
    let fields = Fields::check(d, map, &TASK_KEYS, &place_id);

    let id = fields
        .require(d, "id", &place_id)
        .and_then(|f| identifier(d, f, "task id"));
    let pos = fields
        .get("id")
        .map_or_else(|| mapping_pos(map), |f| f.pos());
    let kind = fields
        .require(d, "kind", &place_id)
        .and_then(|f| task_kind(d, f, kinds));
    let params = task_params(d, &fields, map, kind.as_deref(), kinds);
    let depends_on = fields
        .get("depends_on")
        .map(|f| string_list(d, f))
        .unwrap_or_default();
    let trigger_rule = fields.get("trigger_rule").and_then(|f| trigger_rule(d, f));
    let args = task_args(d, &fields);
    let pool = fields
        .get("pool")
        .and_then(|f| identifier(d, f, "pool name"));
    let pool_slots = fields
        .get("pool_slots")
        .and_then(|f| integer(d, f, 1))
        .unwrap_or(1);

    let node = TaskNode {
        id: id.clone(),
        pos,
        depends_on: depends_on.clone(),
    };
    let task = (d.errors.len() == before).then(|| Task {
        id: id.unwrap_or_default(),
        kind: kind.unwrap_or_default(),
        params: params.unwrap_or_default(),
        depends_on: depends_on.into_iter().map(|(dep, _)| dep).collect(),
        trigger_rule: trigger_rule.unwrap_or_default(),
        args,
        pool,
        pool_slots,
    });
    (task, node)
}

fn task_kind(d: &mut Diag, field: Field, kinds: &dyn KindCatalog) -> Option<String> {
    let kind = string(d, field)?;
    if kinds.is_known(kind) {
        return Some(kind.to_owned());
    }
    let mut known = kinds.kinds();
    known.sort();
    let hint = match closest(kind, known.iter().map(String::as_str)) {
        Some(close) => Some(format!("did you mean `{close}`?")),
        None if known.is_empty() => None,
        None => Some(format!("known kinds are {}", backticked(&known))),
    };
    d.error_hint(field.pos(), format!("unknown task kind `{kind}`"), hint);
    None
}

/// The task's `params` mapping (`{}` when absent), checked by its kind.
fn task_params(
    d: &mut Diag,
    fields: &Fields,
    map: &MarkedMappingNode,
    kind: Option<&str>,
    kinds: &dyn KindCatalog,
) -> Option<serde_json::Value> {
    let (params, pos) = match fields.get("params") {
        Some(
            f @ Field {
                value: Node::Mapping(_),
                ..
            },
        ) => (to_json(f.value), f.pos()),
        Some(f) => {
            wrong_type(d, f, "a mapping");
            return None;
        }
        None => (
            serde_json::Value::Object(serde_json::Map::new()),
            mapping_pos(map),
        ),
    };
    if let Some(kind) = kind {
        for problem in kinds.check_params(kind, &params) {
            d.error(pos, format!("invalid params for kind `{kind}`: {problem}"));
        }
    }
    Some(params)
}

fn trigger_rule(d: &mut Diag, field: Field) -> Option<TriggerRule> {
    let name = string(d, field)?;
    if let Some((_, rule)) = TriggerRule::ALL.iter().find(|(n, _)| *n == name) {
        return Some(*rule);
    }
    let names: Vec<String> = TriggerRule::ALL
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    let hint = match closest(name, TriggerRule::ALL.iter().map(|(n, _)| *n)) {
        Some(close) => format!("did you mean `{close}`?"),
        None => format!("trigger rules are {}", backticked(&names)),
    };
    d.error_hint(
        field.pos(),
        format!("unknown trigger rule `{name}`"),
        Some(hint),
    );
    None
}

fn backticked(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
