//! Group commit with isolation: writers that put every waiting item in one transaction (events,
//! pings) write through [`write_group`], so an item the database refuses fails alone instead
//! of failing every item that happened to share its transaction.

use agent_os_store::StoreError;
use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;

/// The next group for a writer: waits for one job, then takes every job already queued, up to
/// `max`. `None` once `closing` is cancelled and the queue is empty: what was queued before the
/// end of a shutdown is still written.
pub(crate) async fn next_group<J>(jobs: &mut Receiver<J>, closing: &CancellationToken, max: usize) -> Option<Vec<J>> {
    let first = tokio::select! {
        biased;
        Some(job) = jobs.recv() => job,
        _ = closing.cancelled() => return None,
    };
    let mut group = vec![first];
    while group.len() < max {
        match jobs.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
    Some(group)
}

/// Writes `items` with one call of `write`, one result per item in order. When the database
/// refuses the group (not when it is unreachable) and the group has several items, each is
/// written alone: the refused one gets its error, its neighbours are stored.
pub(crate) async fn write_group<'a, T, R, Fut>(
    items: &'a [T],
    write: impl Fn(&'a [T]) -> Fut,
    what: &'static str,
) -> Vec<Result<R, String>>
where
    Fut: Future<Output = Result<Vec<R>, StoreError>>,
{
    let unavailable = || "the database is not available".to_string();
    match write(items).await {
        Ok(done) if done.len() == items.len() => done.into_iter().map(Ok).collect(),
        Ok(_) => items.iter().map(|_| Err(unavailable())).collect(),
        Err(e) if items.len() > 1 && e.is_refusal() => {
            tracing::warn!(error = %e, count = items.len(), "a group of {what} was refused; writing each alone");
            let mut out = Vec::with_capacity(items.len());
            for item in items.chunks(1) {
                out.push(match write(item).await {
                    Ok(mut done) if done.len() == 1 => done.pop().ok_or_else(unavailable),
                    Ok(_) => Err(unavailable()),
                    Err(e) => {
                        tracing::warn!(error = %e, "one of {what} was not stored");
                        Err(if e.is_refusal() {
                            "the database refused this item; it was not stored".to_string()
                        } else {
                            unavailable()
                        })
                    }
                });
            }
            out
        }
        Err(e) => {
            tracing::warn!(error = %e, count = items.len(), "{what} not stored");
            items.iter().map(|_| Err(unavailable())).collect()
        }
    }
}
