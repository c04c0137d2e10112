//! What pages and the API both show, built from store rows: DAG summaries
//! with their next run, the grid of runs by tasks, the layered graph of a
//! DAG's tasks and the time axis of a run's task instances.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rtmas_scheduler::dag::Dag;
use rtmas_scheduler::state::TaskState;
use rtmas_scheduler::store::{DagRow, RunRow, RunSummary, Store, TaskInstanceRow};
use rtmas_scheduler::timetable::{DataInterval, Timetable};
use serde::Serialize;

use crate::WebError;

/// Runs shown per DAG on the DAGs page.
pub const RECENT_RUNS: i64 = 12;

/// A DAG as the DAGs page lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DagSummary {
    /// The DAG's id.
    pub dag_id: String,
    /// Its description.
    pub description: Option<String>,
    /// Its schedule, as people read it; `None` for manual-only DAGs.
    pub schedule: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Whether scheduling is paused.
    pub is_paused: bool,
    /// The file it comes from.
    pub fileloc: String,
    /// The data interval of the next scheduled run, when there is one.
    #[schema(value_type = Option<Object>)]
    pub next_run: Option<DataInterval>,
    /// When that run will be created (the end of its interval).
    pub next_run_at: Option<DateTime<Utc>>,
    /// Its latest runs, newest first.
    #[schema(value_type = Vec<Object>)]
    pub recent_runs: Vec<RunSummary>,
}

/// Every active DAG with its next run and recent runs, in id order.
///
/// Fails when the store does.
pub async fn dag_summaries(store: &Store, now: DateTime<Utc>) -> Result<Vec<DagSummary>, WebError> {
    let dags = store.list_dags().await?;
    let mut recent = store.recent_runs_by_dag(RECENT_RUNS).await?;
    let scheduled: HashMap<String, Option<DataInterval>> = store
        .scheduled_dags()
        .await?
        .into_iter()
        .map(|s| (s.dag_id.clone(), s.last_scheduled()))
        .collect();
    let mut out = Vec::with_capacity(dags.len());
    for dag in dags.into_iter().filter(|d| d.is_active) {
        let next_run = match scheduled.get(&dag.dag_id) {
            Some(last) => next_run(store, &dag, last.as_ref(), now).await?,
            None => None,
        };
        out.push(DagSummary {
            recent_runs: recent.remove(&dag.dag_id).unwrap_or_default(),
            next_run_at: next_run.map(|i| i.end),
            next_run,
            dag_id: dag.dag_id,
            description: dag.description,
            schedule: dag.schedule,
            tags: dag.tags.0,
            is_paused: dag.is_paused,
            fileloc: dag.fileloc,
        });
    }
    Ok(out)
}

/// When the next scheduled run of one DAG will be created (the end of its
/// data interval); `None` for manual-only DAGs.
///
/// Fails when the store does.
pub async fn next_run_at(
    store: &Store,
    dag: &DagRow,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, WebError> {
    let last = store
        .scheduled_dags()
        .await?
        .into_iter()
        .find(|s| s.dag_id == dag.dag_id)
        .and_then(|s| s.last_scheduled());
    Ok(next_run(store, dag, last.as_ref(), now)
        .await?
        .map(|i| i.end))
}

/// The interval of the DAG's next scheduled run, as the scheduler will
/// choose it.
async fn next_run(
    store: &Store,
    dag: &DagRow,
    last: Option<&DataInterval>,
    now: DateTime<Utc>,
) -> Result<Option<DataInterval>, WebError> {
    let definition = store.dag_version(dag.version_id).await?;
    let Some(schedule) = &definition.schedule else {
        return Ok(None);
    };
    let timetable = Timetable::new(schedule, definition.start_date)
        .map_err(|err| WebError::Internal(err.to_string()))?;
    Ok(timetable.next_run(last, definition.catchup, now))
}

/// One cell of the grid: a task instance of a run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GridCell {
    /// The run's store key.
    pub run_pk: i64,
    /// The task.
    pub task_id: String,
    /// Its state; `none` when the run has no instance of the task.
    #[schema(value_type = String)]
    pub state: TaskState,
    /// Its current try.
    pub try_number: i32,
    /// How long it ran.
    pub duration_ms: Option<i64>,
}

/// A row of the grid: one task across the runs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GridRow {
    /// The task.
    pub task_id: String,
    /// Its job kind.
    pub kind: String,
    /// One cell per run, oldest run first.
    pub cells: Vec<GridCell>,
}

/// The grid: recent runs (oldest first, as time reads left to right) by
/// the DAG's tasks.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Grid {
    /// The runs, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub runs: Vec<RunRow>,
    /// The tasks, in the DAG's order.
    pub rows: Vec<GridRow>,
    /// Whether a run is still going, so the page keeps refreshing.
    pub live: bool,
}

/// Builds the grid of `dag` from its latest runs and their task instances.
/// Tasks of older versions that the current one lacks come last.
pub fn grid(dag: &Dag, mut runs: Vec<RunRow>, tis: Vec<TaskInstanceRow>) -> Grid {
    runs.reverse();
    let mut by_task: BTreeMap<String, HashMap<i64, TaskInstanceRow>> = BTreeMap::new();
    let mut kinds: HashMap<String, String> = HashMap::new();
    for ti in tis {
        kinds.entry(ti.task_id.clone()).or_insert(ti.kind.clone());
        by_task
            .entry(ti.task_id.clone())
            .or_default()
            .insert(ti.run_pk, ti);
    }
    let mut order: Vec<(String, String)> = dag
        .tasks
        .iter()
        .map(|t| (t.id.clone(), t.kind.clone()))
        .collect();
    for (task_id, kind) in &kinds {
        if dag.task(task_id).is_none() {
            order.push((task_id.clone(), kind.clone()));
        }
    }
    let rows = order
        .into_iter()
        .map(|(task_id, kind)| {
            let tis = by_task.get(&task_id);
            let cells = runs
                .iter()
                .map(|run| {
                    let ti = tis.and_then(|m| m.get(&run.id));
                    GridCell {
                        run_pk: run.id,
                        task_id: task_id.clone(),
                        state: ti.map(|t| t.state).unwrap_or(TaskState::None),
                        try_number: ti.map(|t| t.try_number).unwrap_or(0),
                        duration_ms: ti.and_then(|t| t.duration_ms),
                    }
                })
                .collect();
            GridRow {
                task_id,
                kind,
                cells,
            }
        })
        .collect();
    Grid {
        live: runs.iter().any(|r| !r.state.is_finished()),
        runs,
        rows,
    }
}

/// A task drawn in the graph.
#[derive(Debug, Clone, Serialize)]
pub struct GraphNode {
    /// The task.
    pub task_id: String,
    /// Its job kind.
    pub kind: String,
    /// Its state in the latest run, `none` when unknown.
    pub state: String,
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Where the text starts, vertically.
    pub text_y: u32,
}

/// A dependency drawn in the graph, from upstream to downstream.
#[derive(Debug, Clone, Serialize)]
pub struct GraphEdge {
    /// Start, on the upstream's right edge.
    pub x1: u32,
    /// Start height.
    pub y1: u32,
    /// End, on the downstream's left edge.
    pub x2: u32,
    /// End height.
    pub y2: u32,
}

/// The layered graph of a DAG's tasks, in SVG units: each task sits one
/// column right of its furthest upstream.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    /// The tasks.
    pub nodes: Vec<GraphNode>,
    /// The dependencies.
    pub edges: Vec<GraphEdge>,
    /// Width of the drawing.
    pub width: u32,
    /// Height of the drawing.
    pub height: u32,
}

const NODE_W: u32 = 180;
const NODE_H: u32 = 44;
const COL_GAP: u32 = 60;
const ROW_GAP: u32 = 16;

/// Lays out `dag`, colouring each task by its state in `latest`.
pub fn graph(dag: &Dag, latest: &[TaskInstanceRow]) -> Graph {
    // Tasks are in dependency order once loaded (upstreams exist and there
    // is no cycle), but files may list them in any order: relax until the
    // depths settle, at most once per task.
    let mut depth: HashMap<&str, u32> = dag.tasks.iter().map(|t| (t.id.as_str(), 0)).collect();
    for _ in 0..dag.tasks.len() {
        let mut changed = false;
        for task in &dag.tasks {
            let d = task
                .depends_on
                .iter()
                .filter_map(|up| depth.get(up.as_str()).map(|d| d + 1))
                .max()
                .unwrap_or(0);
            if depth[task.id.as_str()] < d {
                depth.insert(task.id.as_str(), d);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let states: HashMap<&str, &str> = latest
        .iter()
        .map(|ti| (ti.task_id.as_str(), ti.state.as_str()))
        .collect();
    let mut per_column: HashMap<u32, u32> = HashMap::new();
    let mut place: HashMap<&str, (u32, u32)> = HashMap::new();
    let mut nodes = Vec::with_capacity(dag.tasks.len());
    for task in &dag.tasks {
        let column = depth[task.id.as_str()];
        let row = per_column.entry(column).or_insert(0);
        let (x, y) = (
            8 + column * (NODE_W + COL_GAP),
            8 + *row * (NODE_H + ROW_GAP),
        );
        *row += 1;
        place.insert(task.id.as_str(), (x, y));
        nodes.push(GraphNode {
            task_id: task.id.clone(),
            kind: task.kind.clone(),
            state: states
                .get(task.id.as_str())
                .copied()
                .unwrap_or("none")
                .to_owned(),
            x,
            y,
            text_y: y + 18,
        });
    }
    let edges = dag
        .tasks
        .iter()
        .flat_map(|task| {
            let (x2, y2) = place[task.id.as_str()];
            let place = &place;
            task.depends_on.iter().filter_map(move |up| {
                let (x1, y1) = *place.get(up.as_str())?;
                Some(GraphEdge {
                    x1: x1 + NODE_W,
                    y1: y1 + NODE_H / 2,
                    x2,
                    y2: y2 + NODE_H / 2,
                })
            })
        })
        .collect();
    let columns = depth.values().max().map(|d| d + 1).unwrap_or(1);
    let rows = per_column.values().max().copied().unwrap_or(1);
    Graph {
        nodes,
        edges,
        width: 16 + columns * (NODE_W + COL_GAP) - COL_GAP,
        height: 16 + rows * (NODE_H + ROW_GAP) - ROW_GAP,
    }
}

/// A task instance's bar on the run's time axis, in SVG units (the axis is
/// 1000 wide).
#[derive(Debug, Clone, Serialize)]
pub struct GanttBar {
    /// The task.
    pub task_id: String,
    /// Its state.
    pub state: String,
    /// Where queuing began.
    pub queued_x: u32,
    /// Where the try started.
    pub x: u32,
    /// How long it ran, at least 2 so short tries stay visible.
    pub width: u32,
    /// The bar's row.
    pub y: u32,
    /// Where its label sits.
    pub text_y: u32,
}

/// The time axis of a run: one bar per task instance that started,
/// from the earliest queue time to the latest end (or `now` while running).
#[derive(Debug, Clone, Serialize)]
pub struct Gantt {
    /// The bars, in the order the task instances started.
    pub bars: Vec<GanttBar>,
    /// The drawing's height.
    pub height: u32,
    /// When the axis starts.
    pub start: Option<DateTime<Utc>>,
    /// When it ends.
    pub end: Option<DateTime<Utc>>,
}

const GANTT_WIDTH: f64 = 1000.0;
const GANTT_ROW: u32 = 22;

/// Lays out the task instances of a run on its time axis.
pub fn gantt(tis: &[TaskInstanceRow], now: DateTime<Utc>) -> Gantt {
    let mut started: Vec<&TaskInstanceRow> =
        tis.iter().filter(|ti| ti.start_date.is_some()).collect();
    started.sort_by_key(|ti| ti.start_date);
    let start = started
        .iter()
        .filter_map(|ti| ti.queued_at.or(ti.start_date))
        .min();
    let end = started.iter().map(|ti| ti.end_date.unwrap_or(now)).max();
    let (Some(start), Some(end)) = (start, end) else {
        return Gantt {
            bars: Vec::new(),
            height: 0,
            start: None,
            end: None,
        };
    };
    let span = (end - start).num_milliseconds().max(1) as f64;
    let at = |t: DateTime<Utc>| {
        (((t - start).num_milliseconds() as f64 / span) * GANTT_WIDTH).clamp(0.0, GANTT_WIDTH)
            as u32
    };
    let bars = started
        .iter()
        .enumerate()
        .map(|(i, ti)| {
            let began = ti.start_date.unwrap_or(start);
            let x = at(began);
            let y = 4 + i as u32 * GANTT_ROW;
            GanttBar {
                task_id: ti.task_id.clone(),
                state: ti.state.as_str().to_owned(),
                queued_x: at(ti.queued_at.unwrap_or(began)),
                x,
                width: at(ti.end_date.unwrap_or(now)).saturating_sub(x).max(2),
                y,
                text_y: y + 13,
            }
        })
        .collect::<Vec<_>>();
    Gantt {
        height: 8 + bars.len() as u32 * GANTT_ROW,
        bars,
        start: Some(start),
        end: Some(end),
    }
}
