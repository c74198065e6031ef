//! Delivering what the spool holds: one deliverer per attempt sends its log chunks in order,
//! then its end once every chunk is acknowledged, and deletes each from the spool when the
//! server has it. When the server is out of reach the deliverer waits for the worker's next
//! hello and carries on from what the server acknowledged (a repeat stores nothing twice:
//! the server keeps only chunks above the highest it has, and records one end).

use std::sync::Arc;

use tokio::sync::Notify;

use agent_os_core::run::RunStatus;

use super::Worker;
use super::client::{AttemptRef, CallError, End};

/// Most bytes of output in one request: JSON escaping can make text up to six times longer,
/// and the server's default body limit is 1 MiB.
const MAX_BATCH_BYTES: usize = 128 * 1024;
/// Most chunks in one request.
const MAX_BATCH_CHUNKS: usize = 1000;

pub async fn deliver(worker: Arc<Worker>, key: AttemptRef, wake: Arc<Notify>) {
    // Whether the end was already replaced once by a plain failure the server can take.
    let mut end_replaced = false;
    loop {
        if !worker.spool.holds(&key) {
            break;
        }
        let Some((generation, hello)) = worker.connected().await else { break };
        let chunks = worker.spool.unsent(&key, MAX_BATCH_BYTES, MAX_BATCH_CHUNKS);
        if let Some(last) = chunks.last().map(|c| c.seq) {
            match worker.client.logs(&hello.worker_id, &key, &chunks).await {
                Ok(acked) => {
                    if acked < last {
                        // The server keeps every chunk above the highest it has; anything else
                        // would be sent again forever.
                        tracing::warn!(attempt = %key, acked, sent = last, "the server acknowledged less than it was sent; not sending it again");
                    }
                    worker.spool.ack(&key, acked.max(last));
                }
                Err(e) => {
                    if !worker.delivery_failed(&key, generation, &e, "log chunks") {
                        break;
                    }
                    if matches!(e, CallError::Refused { .. }) {
                        // A refusal of these chunks would repeat: they are dropped.
                        worker.spool.ack(&key, last);
                    }
                }
            }
            continue;
        }
        if let Some(end) = worker.spool.end_to_send(&key) {
            match worker.client.end(&hello.worker_id, &key, &end).await {
                Ok(answer) => {
                    if !answer.recorded {
                        tracing::info!(
                            attempt = %key,
                            run_status = %answer.run_status,
                            reason = answer.reason.as_deref().unwrap_or(""),
                            "the server had this attempt's end already"
                        );
                    }
                    worker.spool.remove(&key);
                    break;
                }
                Err(CallError::Refused { status, message, .. })
                    if !end_replaced && matches!(status, 400 | 413 | 422) =>
                {
                    // The server will not take this end as it is (outputs too large, say): it
                    // still learns that the attempt ended, as a failure saying why.
                    tracing::warn!(attempt = %key, %message, "the server refused an attempt's end; reporting it as failed");
                    end_replaced = true;
                    let plain = End {
                        end: RunStatus::Failed,
                        exit_code: end.exit_code,
                        error: Some(format!("the worker could not report how this attempt ended: {message}")),
                        retryable: false,
                        interrupted: false,
                        outputs: None,
                        last_seq: end.last_seq,
                    };
                    if let Err(e) = worker.spool.finish(&key, plain) {
                        tracing::warn!(attempt = %key, error = %e, "could not record the replaced end");
                        worker.spool.remove(&key);
                        break;
                    }
                }
                Err(e) => {
                    if !worker.delivery_failed(&key, generation, &e, "the end") {
                        break;
                    }
                    if matches!(e, CallError::Refused { .. }) {
                        worker.spool.remove(&key);
                        break;
                    }
                }
            }
            continue;
        }
        // Nothing to send until the attempt writes more or ends.
        tokio::select! {
            _ = wake.notified() => {}
            _ = worker.given_up() => break,
        }
    }
    worker.delivery_done(&key);
}
