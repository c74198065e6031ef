//! One attempt of a command task, from its environment to how it ended: the `AGENT_OS_*`
//! variables over the scrubbed base environment, the outputs file, the process group with the
//! task's timeout and kill grace, a stop (a user's cancel or a shutdown's interrupt), the exit
//! turned into an [`AttemptEnd`] and the outputs read back. The server's local attempts
//! (`Engine::attempt`) and the worker (`agent-os worker`) both run tasks through
//! [`run_command`], so a task behaves the same wherever its project lives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

use agent_os_core::manifest::Command;
use agent_os_core::run::{AttemptEnd, EXIT_NO_RETRY};

use crate::plugin::PROTOCOL;
use crate::runner::{Exit, LogSink, ProcessSpec, Stream, base_env, read_outputs, run_process};

/// The reason recorded on an attempt cut short by a shutdown of Agent OS (a server or a
/// worker): such an attempt is retried at once without using up one of the task's attempts.
pub const INTERRUPTED: &str = "interrupted: Agent OS shut down";

/// Why a running task is being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// A user cancelled it.
    Cancel,
    /// The process running it is shutting down; the run is retried later.
    Interrupt,
}

/// What identifies an attempt to its task: the `AGENT_OS_*` variables.
#[derive(Clone, Copy, Debug)]
pub struct AttemptVars<'a> {
    /// `AGENT_OS_URL`: how the task reaches the API.
    pub url: &'a str,
    pub project: &'a str,
    pub task: &'a str,
    pub run_id: &'a str,
    pub attempt: i64,
    /// `AGENT_OS_TOKEN`: the attempt's run token.
    pub token: &'a str,
}

/// One attempt of a command task.
pub struct CommandAttempt<'a> {
    /// The project's canonical root, where the task starts.
    pub root: &'a Path,
    pub command: &'a Command,
    /// The run's input, written to the task's stdin.
    pub input: &'a Value,
    pub vars: AttemptVars<'a>,
    /// `AGENT_OS_OUTPUT`: where the task may write its outputs. Removed before the task starts
    /// and once read.
    pub output_path: PathBuf,
    pub timeout: Duration,
    pub kill_grace: Duration,
    /// Largest outputs file accepted.
    pub max_output_bytes: u64,
}

/// How a command attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandEnd {
    pub end: AttemptEnd,
    /// The outputs of a success (not yet redacted).
    pub outputs: Option<Value>,
    /// The task's exit code, when it exited by itself.
    pub exit_code: Option<i64>,
}

/// The task's environment: [`base_env`] plus the attempt's `AGENT_OS_*` variables.
pub fn attempt_env(vars: &AttemptVars<'_>, output_path: &Path) -> Vec<(String, String)> {
    let mut env = base_env();
    for (k, v) in [
        ("AGENT_OS_URL", vars.url.to_string()),
        ("AGENT_OS_PROJECT", vars.project.to_string()),
        ("AGENT_OS_TASK", vars.task.to_string()),
        ("AGENT_OS_RUN_ID", vars.run_id.to_string()),
        ("AGENT_OS_ATTEMPT", vars.attempt.to_string()),
        ("AGENT_OS_TOKEN", vars.token.to_string()),
        ("AGENT_OS_OUTPUT", output_path.display().to_string()),
        ("AGENT_OS_PROTOCOL", PROTOCOL.to_string()),
    ] {
        env.push((k.to_string(), v));
    }
    env
}

/// Runs one attempt of a command task to its end. Output lines go to `sink` as they arrive
/// (unredacted: the caller redacts with the attempt's token among the exact values), followed
/// by a system line naming the reason of a failure. `stop` stops the task: its process group
/// gets SIGTERM, then SIGKILL after the kill grace. `on_spawn` receives the task's pid (its
/// process group) and start time as soon as it exists, for crash recovery.
pub async fn run_command(
    a: CommandAttempt<'_>,
    sink: LogSink,
    stop: watch::Receiver<Option<Stop>>,
    on_spawn: impl AsyncFnOnce(i64, Option<i64>),
) -> CommandEnd {
    let _ = std::fs::remove_file(&a.output_path);
    let env = attempt_env(&a.vars, &a.output_path);
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut stop_watch = stop.clone();
    let forward = AbortOnDropHandle::new(tokio::spawn(async move {
        if stop_watch.wait_for(Option::is_some).await.is_ok() {
            let _ = cancel_tx.send(true);
        }
    }));
    let spec = ProcessSpec {
        root: a.root,
        command: a.command,
        env,
        stdin: a.input.to_string().into_bytes(),
        timeout: a.timeout,
        kill_grace: a.kill_grace,
    };
    let exit = run_process(spec, sink.clone(), cancel_rx, on_spawn).await;
    drop(forward);
    let stop_reason = *stop.borrow();
    let exit_code = match exit {
        Exit::Code(c) => Some(i64::from(c)),
        _ => None,
    };
    let (end, outputs) = exit_to_end(exit, stop_reason, a.timeout, &a.output_path, a.max_output_bytes);
    if let AttemptEnd::Failed { reason, .. } = &end {
        let _ = sink.send((Stream::System, format!("attempt failed: {reason}\n")));
    }
    CommandEnd { end, outputs, exit_code }
}

/// How an exit ends the attempt: exit 0 with valid outputs succeeds; an interrupt is a
/// retryable failure ([`INTERRUPTED`]); exit 78 and a task that could not start are not
/// retried.
fn exit_to_end(
    exit: Exit,
    stop: Option<Stop>,
    timeout: Duration,
    output_path: &Path,
    max_output_bytes: u64,
) -> (AttemptEnd, Option<Value>) {
    match exit {
        Exit::Code(0) => match read_outputs(&output_path.to_path_buf(), max_output_bytes) {
            Ok(outputs) => (AttemptEnd::Succeeded, outputs),
            Err(why) => (AttemptEnd::Failed { reason: why, retryable: false }, None),
        },
        Exit::Cancelled if stop == Some(Stop::Interrupt) => {
            let _ = std::fs::remove_file(output_path);
            (AttemptEnd::Failed { reason: INTERRUPTED.into(), retryable: true }, None)
        }
        other => {
            let _ = std::fs::remove_file(output_path);
            let end = match &other {
                Exit::TimedOut => AttemptEnd::TimedOut,
                Exit::Cancelled => AttemptEnd::Cancelled,
                Exit::Code(EXIT_NO_RETRY) => AttemptEnd::Failed {
                    reason: format!("exit status {EXIT_NO_RETRY} (the task asked not to be retried)"),
                    retryable: false,
                },
                Exit::SpawnFailed(why) => AttemptEnd::Failed { reason: why.clone(), retryable: false },
                _ => AttemptEnd::Failed { reason: other.describe(timeout), retryable: true },
            };
            (end, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn vars() -> AttemptVars<'static> {
        AttemptVars { url: "http://127.0.0.1:1", project: "p", task: "t", run_id: "r1", attempt: 2, token: "aosr_x" }
    }

    async fn run(
        command: &str,
        stop_after: Option<(Duration, Stop)>,
        timeout_ms: u64,
    ) -> (CommandEnd, Vec<(Stream, String)>) {
        let dir = tempfile::tempdir().unwrap();
        let command = Command::Shell(command.into());
        let input = serde_json::json!({"n": 1});
        let (sink, mut lines) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(None);
        if let Some((after, why)) = stop_after {
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                stop_tx.send_replace(Some(why));
            });
        }
        let a = CommandAttempt {
            root: dir.path(),
            command: &command,
            input: &input,
            vars: vars(),
            output_path: dir.path().join("out.json"),
            timeout: Duration::from_millis(timeout_ms),
            kill_grace: Duration::from_millis(200),
            max_output_bytes: 1024,
        };
        let end = run_command(a, sink, stop_rx, async |_, _| {}).await;
        let mut got = Vec::new();
        while let Ok(l) = lines.try_recv() {
            got.push(l);
        }
        (end, got)
    }

    #[tokio::test]
    async fn a_task_sees_its_variables_and_input_and_writes_outputs() {
        let (end, lines) = run(
            r#"echo "$AGENT_OS_PROJECT/$AGENT_OS_TASK $AGENT_OS_RUN_ID#$AGENT_OS_ATTEMPT $AGENT_OS_PROTOCOL"; cat; echo; printf '{"ok":true}' > "$AGENT_OS_OUTPUT""#,
            None,
            5_000,
        )
        .await;
        assert_eq!(end.end, AttemptEnd::Succeeded);
        assert_eq!(end.exit_code, Some(0));
        assert_eq!(end.outputs, Some(serde_json::json!({"ok": true})));
        let out: String = lines.iter().map(|(_, l)| l.as_str()).collect();
        assert!(out.contains("p/t r1#2 1"), "{out}");
        assert!(out.contains(r#"{"n":1}"#), "{out}");
    }

    #[tokio::test]
    async fn exits_become_ends() {
        let (end, lines) = run("exit 3", None, 5_000).await;
        assert_eq!(end.end, AttemptEnd::Failed { reason: "exit status 3".into(), retryable: true });
        assert_eq!(end.exit_code, Some(3));
        assert!(lines.iter().any(|(s, l)| *s == Stream::System && l == "attempt failed: exit status 3\n"));
        let (end, _) = run("exit 78", None, 5_000).await;
        assert!(matches!(end.end, AttemptEnd::Failed { retryable: false, .. }), "{end:?}");
        let (end, _) = run("sleep 5", None, 200).await;
        assert_eq!((end.end, end.exit_code), (AttemptEnd::TimedOut, None));
    }

    #[tokio::test]
    async fn a_cancel_and_an_interrupt_end_differently() {
        let (end, _) = run("sleep 5", Some((Duration::from_millis(100), Stop::Cancel)), 5_000).await;
        assert_eq!(end.end, AttemptEnd::Cancelled);
        let (end, _) = run("sleep 5", Some((Duration::from_millis(100), Stop::Interrupt)), 5_000).await;
        assert_eq!(end.end, AttemptEnd::Failed { reason: INTERRUPTED.into(), retryable: true });
    }

    #[tokio::test]
    async fn outputs_that_are_not_an_object_fail_the_attempt() {
        let (end, _) = run(r#"echo '[1]' > "$AGENT_OS_OUTPUT""#, None, 5_000).await;
        assert!(matches!(&end.end, AttemptEnd::Failed { reason, retryable: false } if reason.contains("JSON object")));
        assert_eq!(end.outputs, None);
    }
}
