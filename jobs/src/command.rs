//! The `command` kind: runs a program with args, env and working directory,
//! streams its stdout and stderr into the task log, and fails the try on a
//! non-zero exit.
//!
//! The program runs in a process group of its own. When the try is dropped
//! (its timeout passed, or the worker is stopping past its grace period) the
//! whole group is killed, so no grandchild outlives the try.

use std::collections::BTreeMap;
use std::process::Stdio;

use futures::future::BoxFuture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::registry::{JobContext, JobError, JobKind};
use crate::tasklog::TaskLog;

/// Params of a `command` task, e.g.
/// `params: {command: [sh, -c, "echo hi"], env: {A: "1"}, cwd: /tmp}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandParams {
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
}

/// The `command` job kind.
pub struct Command;

impl JobKind for Command {
    fn name(&self) -> &'static str {
        "command"
    }

    fn check_params(&self, params: &serde_json::Value) -> Vec<String> {
        match serde_json::from_value::<CommandParams>(params.clone()) {
            Ok(p) if p.command.is_empty() => {
                vec!["`command` must name a program: [program, arg, …]".to_owned()]
            }
            Ok(_) => Vec::new(),
            Err(err) => vec![format!("`command` params: {err}")],
        }
    }

    fn run(
        &self,
        ctx: JobContext,
    ) -> BoxFuture<'static, Result<Option<serde_json::Value>, JobError>> {
        Box::pin(run_command(ctx))
    }
}

/// Kills a process group when dropped, unless disarmed.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // The group may be gone already; nothing more to do then.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

async fn run_command(ctx: JobContext) -> Result<Option<serde_json::Value>, JobError> {
    let params: CommandParams =
        serde_json::from_value(ctx.params).map_err(|err| JobError::Params(err.to_string()))?;
    let (program, args) = params
        .command
        .split_first()
        .ok_or_else(|| JobError::Params("empty command".into()))?;

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(&params.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &params.cwd {
        cmd.current_dir(cwd);
    }
    let mut child = cmd
        .spawn()
        .map_err(|err| JobError::Failed(format!("cannot start `{program}`: {err}")))?;
    let mut guard = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );
    ctx.log
        .line("rtmas", format!("started `{}`", params.command.join(" ")));

    let stdout = child
        .stdout
        .take()
        .map(|out| tokio::spawn(pump(out, ctx.log.clone(), "stdout")));
    let stderr = child
        .stderr
        .take()
        .map(|err| tokio::spawn(pump(err, ctx.log.clone(), "stderr")));
    let status = child
        .wait()
        .await
        .map_err(|err| JobError::Failed(format!("cannot wait for `{program}`: {err}")))?;
    // The leader exited; kill whatever it left in its group so the pipes
    // close and the readers finish.
    if let Some(pgid) = guard.0.take() {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    for reader in [stdout, stderr].into_iter().flatten() {
        let _ = reader.await;
    }

    match status.code() {
        Some(0) => Ok(Some(serde_json::json!({ "exit_code": 0 }))),
        Some(code) => Err(JobError::Failed(format!(
            "`{program}` exited with status {code}"
        ))),
        None => Err(JobError::Failed(format!(
            "`{program}` was killed by a signal ({status})"
        ))),
    }
}

async fn pump(reader: impl AsyncRead + Unpin, log: TaskLog, stream: &'static str) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                // Bytes that are not UTF-8 are kept as U+FFFD rather than dropped.
                log.line(stream, text.trim_end_matches(['\n', '\r']));
            }
            Err(err) => {
                log.line("rtmas", format!("cannot read {stream}: {err}"));
                break;
            }
        }
    }
}
