//! `/live`: one Server-Sent Events stream per open page that says "something changed" (a run,
//! a workflow step, an incident, a cost, an event). The page then re-fetches its live parts.
//! Changes are coalesced: at most one message every 300 ms.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::session::Session;
use crate::AppState;

pub async fn stream(
    State(st): State<AppState>,
    _session: Session,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct S {
        runs: tokio::sync::watch::Receiver<u64>,
        state: tokio::sync::watch::Receiver<u64>,
        closing: tokio::sync::watch::Receiver<bool>,
        n: u64,
    }
    let mut s =
        S { runs: st.engine.subscribe_runs(), state: st.engine.subscribe_state(), closing: st.closing.clone(), n: 0 };
    s.runs.borrow_and_update();
    s.state.borrow_and_update();
    let stream = futures_util::stream::unfold(s, |mut s| async move {
        if *s.closing.borrow() {
            return None;
        }
        tokio::select! {
            r = s.runs.changed() => r.ok()?,
            r = s.state.changed() => r.ok()?,
            _ = s.closing.changed() => return None,
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.runs.borrow_and_update();
        s.state.borrow_and_update();
        s.n += 1;
        Some((Ok(Event::default().event("change").data(s.n.to_string())), s))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
