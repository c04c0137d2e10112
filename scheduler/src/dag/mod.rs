//! DAGs: the model, the YAML loader that validates DAG files, and the
//! templates that task params are rendered with when a task runs.
//!
//! The loader reports every error it finds in a file at once, each as
//! `file:line:column: message`, so a DAG author can fix them in one pass.

pub mod model;
pub mod template;

mod load;

pub use load::schedule::{
    CRON_PRESETS, ScheduleError, parse_cron, parse_duration, parse_schedule_str, parse_start_date,
    parse_timezone,
};
pub use load::{
    AnyKind, DagError, FileErrors, FolderLoad, KindCatalog, LoadedDag, load_dag_file,
    load_dag_folder, parse_dag,
};
pub use model::*;
