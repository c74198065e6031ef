//! The pages a signed link opens, without a login: the token in the link is the credential
//! (`agent_os_engine::engine::links`). Opening the link (GET) only shows what it would do and a
//! button; the button posts the same token back, and only that POST acts. A page a third site
//! could make the browser post gains it nothing: without the token the POST is refused, and
//! with it the site could have acted anyway.

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;

use agent_os_engine::engine::links::{LinkAction, LinkRefusal};
use agent_os_store::IncidentRecord;

use super::{PageResult, ui};
use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/links/incidents/{id}/ack", get(confirm_ack).post(ack))
}

/// The token of a link: in the address when it is opened, in the form when its button is pressed.
#[derive(Deserialize)]
pub struct TokenField {
    #[serde(default)]
    pub(super) token: String,
}

/// A page of the links: nothing cached, and the link never sent on as a referrer.
pub(super) fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    let body = html! {
        main.login id="main" {
            h1 { (title) }
            (body)
        }
    };
    let mut r = ui::bare_page(title, body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

fn summary(i: &IncidentRecord) -> Markup {
    html! {
        dl {
            dt { "Incident" } dd { (i.title) }
            dt { "Severity" } dd { (ui::badge(i.severity.as_str())) }
            dt { "Status" } dd { (ui::badge(i.status.as_str())) }
            dt { "Opened" } dd { (ui::time_ms(i.opened_at)) }
            dt { "Reason" } dd { (i.reason) }
            @if let (Some(at), Some(by)) = (i.acked_at, &i.acked_by) {
                dt { "Acknowledged" } dd { (ui::time_ms(at)) " by " (by) }
            }
        }
    }
}

async fn refused(st: &AppState, id: &str, why: LinkRefusal) -> Response {
    let incident = st.engine.store().get_incident(id).await.ok().flatten();
    let status = match why {
        LinkRefusal::Altered | LinkRefusal::OtherSubject => StatusCode::FORBIDDEN,
        LinkRefusal::Expired { .. } => StatusCode::GONE,
        LinkRefusal::Used { .. } => StatusCode::CONFLICT,
    };
    let body = html! {
        p.flash.error role="alert" { (why.message()) }
        @match &why {
            LinkRefusal::Used { at, by } => p { "It was used " (ui::time_ms(*at)) " (" (by) ")." },
            LinkRefusal::Expired { expired_at } => p { "It expired " (ui::time_ms(*expired_at)) "." },
            _ => {}
        }
        @if matches!(why, LinkRefusal::Used { .. } | LinkRefusal::Expired { .. }) {
            @if let Some(i) = &incident { (summary(i)) }
        }
    };
    page(status, "Link refused", body)
}

/// `GET /links/incidents/{id}/ack?token=…`: what the link would do, and a button. Changes nothing.
pub async fn confirm_ack(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<TokenField>,
) -> PageResult {
    match st.engine.check_link(LinkAction::Ack, &id, &q.token).await? {
        Err(why) => Ok(refused(&st, &id, why).await),
        Ok(claims) => {
            let Some(i) = st.engine.store().get_incident(&id).await? else {
                return Ok(page(
                    StatusCode::NOT_FOUND,
                    "No such incident",
                    html! { p { "The incident is gone (pruned)." } },
                ));
            };
            let open = i.status.as_str() == "open";
            let body = html! {
                (summary(&i))
                @if !open {
                    p.flash role="status" { "This incident is resolved; there is nothing to acknowledge." }
                } @else if i.acked_at.is_some() {
                    p.flash role="status" { "This incident is already acknowledged." }
                } @else {
                    p.muted { "This link works once, until " (ui::time_ms(claims.expires_at)) "." }
                    form method="post" action=(format!("/links/incidents/{id}/ack")) {
                        input type="hidden" name="token" value=(q.token);
                        button.primary type="submit" { "Acknowledge" }
                    }
                }
            };
            Ok(page(StatusCode::OK, "Acknowledge incident", body))
        }
    }
}

/// `POST /links/incidents/{id}/ack` with the link's token: acknowledges, once.
pub async fn ack(State(st): State<AppState>, Path(id): Path<String>, Form(f): Form<TokenField>) -> PageResult {
    match st.engine.ack_by_link(&id, &f.token).await? {
        Err(why) => Ok(refused(&st, &id, why).await),
        Ok(used) => {
            let body = html! {
                p.flash role="status" { "Acknowledged " (ui::time_ms(used.at)) ". The channels hear no escalation of it." }
                (summary(&used.incident))
            };
            Ok(page(StatusCode::OK, "Incident acknowledged", body))
        }
    }
}
