//! The registry of job kinds: what a task's `kind` names.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use rtmas_scheduler::dag::KindCatalog;
use rtmas_scheduler::store::Store;

use crate::logs::PipelineSettings;
use crate::logs::compact::Compact;
use crate::logs::consume::KafkaConsume;
use crate::notify::{AlertNotify, NotifySettings};
use crate::report::DailyReport;
use crate::tasklog::TaskLog;

/// Why a try failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The task's params do not fit the kind.
    #[error("invalid params: {0}")]
    Params(String),
    /// The work itself failed; the message says how.
    #[error("{0}")]
    Failed(String),
}

/// What a job kind gets to run one try.
pub struct JobContext {
    /// The task's params, rendered for this run.
    pub params: serde_json::Value,
    /// Where the try's log lines go.
    pub log: TaskLog,
    /// The metadata store, for kinds that record more than their result.
    pub store: Store,
}

/// A kind of job a task can name.
pub trait JobKind: Send + Sync {
    /// The name tasks use in `kind:`.
    fn name(&self) -> &'static str;

    /// Problems with a task's params, one message each; empty when they fit.
    fn check_params(&self, params: &serde_json::Value) -> Vec<String>;

    /// Runs one try. The future is dropped when the try times out, so a
    /// kind that starts processes must stop them when dropped.
    fn run(
        &self,
        ctx: JobContext,
    ) -> BoxFuture<'static, Result<Option<serde_json::Value>, JobError>>;
}

/// The job kinds a worker knows.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn JobKind>>,
}

impl Registry {
    /// The kinds every worker has: `command` and `noop`.
    pub fn builtin() -> Registry {
        let mut registry = Registry::default();
        registry.register(Arc::new(crate::command::Command));
        registry.register(Arc::new(Noop));
        registry
    }

    /// The built-in kinds, the log pipeline's (`kafka_consume`, `compact`,
    /// on the brokers and object store of `settings`), and the alerts'
    /// (`anomaly_scan`, and `alert_notify` and `daily_report` to the
    /// channels of `notify`).
    pub fn standard(settings: &PipelineSettings, notify: &NotifySettings) -> Registry {
        let mut registry = Registry::builtin();
        registry.register(Arc::new(KafkaConsume::new(settings.clone())));
        registry.register(Arc::new(Compact::new(settings.clone())));
        registry.register(Arc::new(crate::anomaly::AnomalyScan));
        registry.register(Arc::new(AlertNotify::new(notify.clone())));
        registry.register(Arc::new(DailyReport::new(notify.clone())));
        registry
    }

    /// Adds a kind, replacing one of the same name.
    pub fn register(&mut self, kind: Arc<dyn JobKind>) {
        self.kinds.insert(kind.name(), kind);
    }

    /// The kind with this name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn JobKind>> {
        self.kinds.get(name).cloned()
    }
}

impl KindCatalog for Registry {
    fn is_known(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    fn kinds(&self) -> Vec<String> {
        self.kinds.keys().map(|k| (*k).to_owned()).collect()
    }

    fn check_params(&self, kind: &str, params: &serde_json::Value) -> Vec<String> {
        self.kinds
            .get(kind)
            .map(|k| k.check_params(params))
            .unwrap_or_default()
    }
}

/// `noop`: succeeds at once. Useful for structure and benchmarks.
struct Noop;

impl JobKind for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }

    fn check_params(&self, params: &serde_json::Value) -> Vec<String> {
        match params.as_object() {
            Some(map) if !map.is_empty() => vec!["`noop` takes no params".to_owned()],
            _ => Vec::new(),
        }
    }

    fn run(
        &self,
        _ctx: JobContext,
    ) -> BoxFuture<'static, Result<Option<serde_json::Value>, JobError>> {
        Box::pin(async { Ok(None) })
    }
}
