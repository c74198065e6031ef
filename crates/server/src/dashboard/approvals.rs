//! Deciding a workflow's `approval` step from a page: the run page's form (behind a session)
//! and the pages a signed approve or reject link opens (no login: the token in the link is the
//! credential). As with acknowledge links, opening a link (GET) only shows the question, the
//! form and a button; the button posts the token back with the answers, and only that POST
//! decides. Both post the same fields: `comment` and one `input.NAME` per form field.

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use serde_json::{Map, Value};

use agent_os_core::workflow::{Decision, FormType};
use agent_os_engine::EngineError;
use agent_os_engine::engine::links::{LinkAction, LinkRefusal};
use agent_os_engine::engine::workflows::approvals::{ApprovalState, Decide};

use super::links::{TokenField, page};
use super::session::Session;
use super::{PageResult, ui};
use crate::AppState;
use agent_os_core::url::encode_component as urlencode;

/// Who a decision from the dashboard is recorded as.
pub const DECIDED_BY_DASHBOARD: &str = "dashboard";

/// The run page's form (behind the session).
pub fn routes() -> Router<AppState> {
    Router::new().route("/workflows/runs/{id}/steps/{step}/decide", post(decide))
}

/// The pages signed links open (no session).
pub fn link_routes() -> Router<AppState> {
    Router::new()
        .route("/links/workflows/runs/{id}/steps/{step}/approve", get(confirm_approve).post(approve_by_link))
        .route("/links/workflows/runs/{id}/steps/{step}/reject", get(confirm_reject).post(reject_by_link))
}

/// The fields the forms post, as sent.
type Fields = Vec<(String, String)>;

fn field<'a>(fields: &'a Fields, name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// The form's answers from `input.NAME` fields (a checkbox sends nothing when unticked).
fn answers(fields: &Fields) -> Value {
    let mut out = Map::new();
    for (k, v) in fields {
        if let Some(name) = k.strip_prefix("input.") {
            out.insert(name.to_string(), Value::String(v.clone()));
        }
    }
    Value::Object(out)
}

/// The question, the form's fields and a comment box (without the `<form>` itself).
pub fn form_fields(state: &ApprovalState) -> Markup {
    html! {
        @for (name, f) in &state.approval.inputs {
            @let id = format!("input-{name}");
            @let default = f.default.as_ref().map(|d| match d { Value::String(s) => s.clone(), v => v.to_string() });
            div.field {
                label for=(id) { (name) @if f.required { " *" } }
                @match f.kind {
                    FormType::Choice => {
                        select id=(id) name={"input." (name)} {
                            @if !f.required || default.is_none() { option value="" { "—" } }
                            @for o in &f.options {
                                option value=(o) selected[default.as_deref() == Some(o.as_str())] { (o) }
                            }
                        }
                    }
                    FormType::Boolean => {
                        select id=(id) name={"input." (name)} {
                            option value="" { "—" }
                            option value="true" selected[default.as_deref() == Some("true")] { "yes" }
                            option value="false" selected[default.as_deref() == Some("false")] { "no" }
                        }
                    }
                    FormType::Number | FormType::Integer => {
                        input id=(id) name={"input." (name)} type="number"
                            step=(if f.kind == FormType::Integer { "1" } else { "any" }) value=[default];
                    }
                    FormType::String => {
                        input id=(id) name={"input." (name)} type="text" value=[default];
                    }
                }
                @if !f.description.is_empty() { div.small.muted { (f.description) } }
            }
        }
        div.field {
            label for="comment" { "Comment" }
            input id="comment" name="comment" type="text" maxlength="2000";
        }
    }
}

fn question(state: &ApprovalState) -> Markup {
    html! {
        dl {
            dt { "Workflow" } dd { (state.run.workflow) }
            dt { "Run" } dd.mono { (state.run.id) }
            @if let Some(s) = &state.step { dt { "Step" } dd.mono { (s.step_id) } }
            dt { "Question" } dd { (state.message.as_deref().unwrap_or(&state.approval.message)) }
            @if let Some(at) = state.step.as_ref().and_then(|s| s.wake_at) {
                dt { "Decided by timeout" } dd { (ui::time_ms(at)) " (" (if state.approval.on_timeout == Decision::Approved { "approved" } else { "rejected" }) ")" }
            }
            @if let Some(d) = &state.decided {
                dt { "Decision" } dd { (ui::badge(d.decision.as_str())) " by " (d.decided_by) ", " (ui::time_ms(d.decided_at)) }
                @if let Some(c) = &d.comment { dt { "Comment" } dd { (c) } }
            }
        }
    }
}

/// The run page's section for the approval steps waiting there.
pub fn waiting_section(session: &Session, waiting: &[ApprovalState]) -> Markup {
    html! {
        @if !waiting.is_empty() {
            h2 { "Waiting for a decision" }
            @for state in waiting {
                @let step = state.step.as_ref().map_or("", |s| s.step_id.as_str());
                section.approval data-approval=(step) {
                    (question(state))
                    form method="post" action=(format!("/workflows/runs/{}/steps/{}/decide", urlencode(&state.run.id), urlencode(step))) {
                        (ui::csrf_field(session))
                        (form_fields(state))
                        button.primary type="submit" name="decision" value="approve" { "Approve" }
                        " "
                        button.danger type="submit" name="decision" value="reject" { "Reject" }
                    }
                }
            }
        }
    }
}

/// The waiting approval steps of a run, for its page.
pub async fn waiting_of(st: &AppState, run: &str, steps: &[String]) -> Vec<ApprovalState> {
    let mut out = Vec::new();
    for step in steps {
        if let Ok(state) = st.engine.approval_state(run, step).await
            && state.waiting()
        {
            out.push(state);
        }
    }
    out
}

/// `POST /workflows/runs/{id}/steps/{step}/decide` from the run page: `decision` is `approve`
/// or `reject`; recorded as decided by [`DECIDED_BY_DASHBOARD`].
pub async fn decide(
    State(st): State<AppState>,
    _session: Session,
    Path((id, step)): Path<(String, String)>,
    Form(fields): Form<Fields>,
) -> PageResult {
    let decision = match field(&fields, "decision") {
        Some("approve") => Decision::Approved,
        Some("reject") => Decision::Rejected,
        _ => {
            return Ok(ui::error_page(StatusCode::BAD_REQUEST, "decision must be approve or reject"));
        }
    };
    let d = Decide {
        decision,
        by: DECIDED_BY_DASHBOARD.into(),
        comment: field(&fields, "comment").map(str::to_string),
        inputs: answers(&fields),
    };
    st.engine.decide_approval(&id, &step, d).await?;
    Ok(Redirect::to(&format!("/workflows/runs/{}", urlencode(&id))).into_response())
}

fn refused(why: &LinkRefusal) -> Response {
    let (status, message) = match why {
        LinkRefusal::Altered => (
            StatusCode::FORBIDDEN,
            "This link is not valid: it was cut short or altered. Open the link from the notification exactly as it was sent, or decide in the dashboard.",
        ),
        LinkRefusal::OtherSubject => (
            StatusCode::FORBIDDEN,
            "This link belongs to another step or action than this address names. Open the link from the notification exactly as it was sent.",
        ),
        LinkRefusal::Expired { .. } => (
            StatusCode::GONE,
            "This link has expired. Decide in the dashboard, or with `agent-os workflows approve RUN STEP`.",
        ),
        LinkRefusal::Used { .. } => (StatusCode::CONFLICT, "This link was already used; a link works once."),
    };
    let body = html! {
        p.flash.error role="alert" { (message) }
        @match why {
            LinkRefusal::Used { at, by } => p { "It was used " (ui::time_ms(*at)) " (" (by) ")." },
            LinkRefusal::Expired { expired_at } => p { "It expired " (ui::time_ms(*expired_at)) "." },
            _ => {}
        }
    };
    page(status, "Link refused", body)
}

fn verb(action: LinkAction) -> (&'static str, &'static str) {
    match action {
        LinkAction::Reject => ("reject", "Reject"),
        _ => ("approve", "Approve"),
    }
}

/// GET: the question, the form and a button. Changes nothing.
async fn confirm(st: AppState, id: String, step: String, action: LinkAction, token: String) -> PageResult {
    let subject = agent_os_engine::engine::links::approval_subject(&id, &step);
    if let Err(why) = st.engine.check_link(action, &subject, &token).await? {
        return Ok(refused(&why));
    }
    let state = st.engine.approval_state(&id, &step).await?;
    let (word, title) = verb(action);
    let body = html! {
        (question(&state))
        @if state.decided.is_some() {
            p.flash role="status" { "This step is already decided; there is nothing left to do." }
        } @else if !state.waiting() {
            p.flash role="status" { "This step is not waiting for a decision (its run may have ended)." }
        } @else {
            form method="post" action=(format!("/links/workflows/runs/{}/steps/{}/{word}", urlencode(&id), urlencode(&step))) {
                input type="hidden" name="token" value=(token);
                @if action == LinkAction::Approve { (form_fields(&state)) } @else {
                    div.field { label for="comment" { "Comment" } input id="comment" name="comment" type="text" maxlength="2000"; }
                }
                button.primary type="submit" { (title) }
            }
        }
    };
    Ok(page(StatusCode::OK, &format!("{title} workflow step"), body))
}

/// POST: decides, once, with the token and the answers.
async fn act(st: AppState, id: String, step: String, action: LinkAction, fields: Fields) -> PageResult {
    let token = field(&fields, "token").unwrap_or_default().to_string();
    let comment = field(&fields, "comment").map(str::to_string);
    let decided = st.engine.decide_by_link(&id, &step, action, &token, comment, answers(&fields)).await;
    match decided {
        Ok(Err(why)) => Ok(refused(&why)),
        Ok(Ok(d)) => {
            let state = st.engine.approval_state(&id, &step).await?;
            let body = html! {
                p.flash role="status" { "Recorded: " (d.decision) " " (ui::time_ms(d.decided_at)) "." }
                (question(&state))
            };
            Ok(page(StatusCode::OK, &format!("Step {}", d.decision), body))
        }
        Err(EngineError::Invalid { field, message }) => {
            let body = html! {
                p.flash.error role="alert" { (message) }
                p { "Nothing was recorded, and the link still works: go back, correct " (field.unwrap_or_default()) " and send again." }
            };
            Ok(page(StatusCode::BAD_REQUEST, "Not accepted", body))
        }
        Err(EngineError::Conflict(message)) => {
            Ok(page(StatusCode::CONFLICT, "Nothing to decide", html! { p.flash role="status" { (message) } }))
        }
        Err(e) => Err(e.into()),
    }
}

async fn confirm_approve(
    State(st): State<AppState>,
    Path((id, step)): Path<(String, String)>,
    Query(q): Query<TokenField>,
) -> PageResult {
    confirm(st, id, step, LinkAction::Approve, q.token).await
}

async fn confirm_reject(
    State(st): State<AppState>,
    Path((id, step)): Path<(String, String)>,
    Query(q): Query<TokenField>,
) -> PageResult {
    confirm(st, id, step, LinkAction::Reject, q.token).await
}

async fn approve_by_link(
    State(st): State<AppState>,
    Path((id, step)): Path<(String, String)>,
    Form(fields): Form<Fields>,
) -> PageResult {
    act(st, id, step, LinkAction::Approve, fields).await
}

async fn reject_by_link(
    State(st): State<AppState>,
    Path((id, step)): Path<(String, String)>,
    Form(fields): Form<Fields>,
) -> PageResult {
    act(st, id, step, LinkAction::Reject, fields).await
}
