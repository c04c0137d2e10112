//! The orchestration core of RTMAS: DAGs, their schedules, the metadata
//! store and the scheduling loop. Workers (the `rtmas-jobs` crate) and the
//! web UI build on it; it depends on neither.
//!
//! # Layout
//!
//! - [`dag`]: the DAG model, YAML loading with located errors, and task
//!   param templating.
//! - [`state`]: task instance and run states, named as in Airflow.
//! - [`store`]: the metadata store on PostgreSQL or SQLite.
//! - [`queue`]: the job carried from scheduler to workers through apalis.
//! - [`scheduler`]: the scheduling loop and the trigger-rule decisions.
//! - [`timetable`]: the data intervals a schedule produces and which is due.
//! - [`backfill`]: planning and creating backfills over past date ranges.
//! - [`clock`]: the current time, controllable in tests.

pub mod backfill;
pub mod clock;
pub mod dag;
pub mod queue;
pub mod scheduler;
pub mod state;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timetable;
