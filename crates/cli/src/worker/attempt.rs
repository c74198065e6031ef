//! Running a run the server claimed for this worker: the refusal of a project or task the
//! local manifest does not declare, then the task through the engine's command attempt (the
//! same code as the server's local attempts), its output redacted and batched into numbered
//! chunks in the spool, and its end recorded there for delivery.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use agent_os_core::manifest::MANIFEST_FILE;
use agent_os_core::redact::Redactor;
use agent_os_core::run::{AttemptEnd, LogStream, RunStatus};
use agent_os_engine::command::{AttemptVars, CommandAttempt, INTERRUPTED, Stop, run_command};

use super::Worker;
use super::client::{AttemptRef, End, WorkerRun};

/// Timeout of a task whose manifest sets none (as on a server with the default config).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// SIGTERM → SIGKILL grace of a task whose manifest sets none.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);
/// Largest outputs file accepted.
pub const MAX_OUTPUT_BYTES: u64 = 512 * 1024;
/// Output is sent at most this late.
const BATCH_WINDOW: Duration = Duration::from_millis(200);
/// A batch this large is written at once.
const BATCH_BYTES: usize = 64 * 1024;

/// Runs one claimed attempt to its end. The attempt is already in the spool and in the
/// worker's running set; this records its end and takes it out of that set.
pub async fn run(worker: Arc<Worker>, claimed: WorkerRun, public_url: String, stop: watch::Receiver<Option<Stop>>) {
    let key = AttemptRef::of(&claimed);
    let refused = refusal(&worker, &claimed);
    let end = match refused {
        _ if *stop.borrow() == Some(Stop::Interrupt) => End {
            end: RunStatus::Failed,
            exit_code: None,
            error: Some(INTERRUPTED.into()),
            retryable: true,
            interrupted: true,
            outputs: None,
            last_seq: 0,
        },
        Some(why) => {
            let now = now();
            worker.spool.append(&key, vec![(LogStream::System, now, format!("{why}\n"))]);
            End {
                end: RunStatus::Failed,
                exit_code: None,
                error: Some(why),
                retryable: false,
                interrupted: false,
                outputs: None,
                last_seq: 0,
            }
        }
        None => execute(&worker, &claimed, &public_url, stop).await,
    };
    if let Err(e) = worker.spool.finish(&key, end) {
        tracing::error!(attempt = %key, error = %e, "could not record an attempt's end in the spool");
    }
    worker.attempt_ended(&key);
}

/// Runs the task as the local manifest declares it.
async fn execute(
    worker: &Arc<Worker>,
    claimed: &WorkerRun,
    public_url: &str,
    stop: watch::Receiver<Option<Stop>>,
) -> End {
    let key = AttemptRef::of(claimed);
    let failed = |why: String| End {
        end: RunStatus::Failed,
        exit_code: None,
        error: Some(why),
        retryable: false,
        interrupted: false,
        outputs: None,
        last_seq: 0,
    };
    let Some(project) = worker.project(&claimed.project) else {
        return failed(format!("this worker no longer serves project {:?}", claimed.project));
    };
    let Some(task) = project.manifest.task(&claimed.task).cloned() else {
        return failed(format!("project {:?} no longer declares task {:?}", claimed.project, claimed.task));
    };
    let Some(command) = task.run.as_ref() else {
        return failed(format!("task {}.{} has nothing to run", claimed.project, claimed.task));
    };
    // One redactor for everything the attempt produces, the run's token among its values: no
    // secret reaches the spool.
    let redactor = Redactor::new([claimed.token.clone()]);
    let (sink, lines) = mpsc::unbounded_channel();
    let collector = tokio::spawn(collect(worker.clone(), key.clone(), lines, redactor.clone()));
    if claimed.attempt > 1 {
        let _ = sink.send((LogStream::System, format!("attempt {} of {}\n", claimed.attempt, claimed.max_attempts)));
    }
    let output_path = worker.outputs_dir().join(format!(
        "{}-{}.json",
        agent_os_core::url::encode_component(&claimed.run_id),
        claimed.attempt
    ));
    let attempt = CommandAttempt {
        root: &project.root,
        command,
        input: &claimed.input,
        vars: AttemptVars {
            url: public_url,
            project: &claimed.project,
            task: &claimed.task,
            run_id: &claimed.run_id,
            attempt: claimed.attempt,
            token: &claimed.token,
        },
        output_path,
        timeout: task.timeout.unwrap_or(DEFAULT_TIMEOUT),
        kill_grace: task.kill_grace.unwrap_or(DEFAULT_KILL_GRACE),
        max_output_bytes: MAX_OUTPUT_BYTES,
    };
    let spool_worker = worker.clone();
    let spawned_key = key.clone();
    let done = run_command(attempt, sink, stop.clone(), async move |pid, start| {
        spool_worker.spool.set_process(&spawned_key, pid, start);
    })
    .await;
    // Every line is in the spool before the end is.
    let _ = collector.await;
    let interrupted = *stop.borrow() == Some(Stop::Interrupt);
    let outputs = done.outputs.map(|v| redactor.redact_json(v));
    match done.end {
        AttemptEnd::Succeeded => End {
            end: RunStatus::Succeeded,
            exit_code: done.exit_code,
            error: None,
            retryable: false,
            interrupted: false,
            outputs,
            last_seq: 0,
        },
        AttemptEnd::Failed { reason, retryable } => End {
            end: RunStatus::Failed,
            exit_code: done.exit_code,
            interrupted: interrupted && reason == INTERRUPTED,
            error: Some(redactor.redact(&reason)),
            retryable,
            outputs: None,
            last_seq: 0,
        },
        AttemptEnd::TimedOut => End {
            end: RunStatus::TimedOut,
            exit_code: None,
            error: Some("timed out".into()),
            retryable: true,
            interrupted: false,
            outputs: None,
            last_seq: 0,
        },
        AttemptEnd::Cancelled | AttemptEnd::Lost => End {
            end: RunStatus::Cancelled,
            exit_code: None,
            error: Some("cancelled".into()),
            retryable: false,
            interrupted: false,
            outputs: None,
            last_seq: 0,
        },
    }
}

/// Collects the task's output lines, redacts them and writes them to the spool in batches: a
/// line waits at most [`BATCH_WINDOW`] before it is written and its deliverer woken.
async fn collect(
    worker: Arc<Worker>,
    key: AttemptRef,
    mut lines: mpsc::UnboundedReceiver<(LogStream, String)>,
    redactor: Redactor,
) {
    loop {
        let Some(first) = lines.recv().await else { return };
        let deadline = Instant::now() + BATCH_WINDOW;
        let mut size = first.1.len();
        let mut batch = vec![first];
        let mut closed = false;
        while size < BATCH_BYTES {
            match tokio::time::timeout_at(deadline, lines.recv()).await {
                Ok(Some(line)) => {
                    size += line.1.len();
                    batch.push(line);
                }
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        write(&worker, &key, batch, &redactor);
        if closed {
            return;
        }
    }
}

/// One chunk per run of lines from the same stream.
fn write(worker: &Worker, key: &AttemptRef, batch: Vec<(LogStream, String)>, redactor: &Redactor) {
    let at = now();
    let mut pieces: Vec<(LogStream, String, String)> = Vec::new();
    for (stream, line) in batch {
        let data = redactor.redact(&line);
        match pieces.last_mut() {
            Some((s, _, text)) if *s == stream => text.push_str(&data),
            _ => pieces.push((stream, at.clone(), data)),
        }
    }
    worker.spool.append(key, pieces);
    worker.wake_delivery(key);
}

/// Now in RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// Why this worker will not run `claimed`, if it will not: a project it does not serve, or a
/// task its local manifest does not declare.
pub fn refusal(worker: &Worker, claimed: &WorkerRun) -> Option<String> {
    let Some(project) = worker.project(&claimed.project) else {
        return Some(format!(
            "this worker ({}) does not serve project {:?}; it serves {}",
            worker.name(),
            claimed.project,
            worker.project_names().join(", ")
        ));
    };
    if project.manifest.task(&claimed.task).is_none() {
        return Some(format!(
            "project {:?} on this worker ({}) does not declare task {:?} in {}; the worker runs only what its local manifest declares",
            claimed.project,
            worker.name(),
            claimed.task,
            project.root.join(MANIFEST_FILE).display()
        ));
    }
    None
}
