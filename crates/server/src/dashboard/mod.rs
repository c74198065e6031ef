//! The web dashboard, served at `/` by the same binary: server-rendered HTML (maud, escaped
//! by construction), one stylesheet and one small script embedded in the binary, and live
//! parts kept current over Server-Sent Events. Pages read through the same handlers as the
//! JSON API, so the dashboard never shows something the API would not, and every action it
//! offers is an API call made for the logged-in admin.

mod approvals;
mod assets;
mod costs;
mod events;
mod incidents;
mod links;
mod live;
mod overview;
mod project;
mod projects;
mod resources;
mod runs;
mod schedules;
pub mod session;
mod settings;
mod ui;
mod workflows;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::AppState;
use crate::error::ApiError;

pub use assets::total_bytes as asset_bytes;

/// A page that could not be made: rendered as an HTML error page.
pub struct PageError(ApiError);

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        ui::error_page(self.0.status, &self.0.message)
    }
}

pub type PageResult = Result<Response, PageError>;

/// `?_fragment=NAME`: the live part a page's script asks for.
pub struct Fragment(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Fragment {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let name = q.split('&').find_map(|kv| kv.strip_prefix("_fragment="));
        Ok(Fragment(name.map(|n| if n == "%2A" { "*".to_string() } else { n.to_string() })))
    }
}

impl Fragment {
    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// The dashboard's routes: pages behind a session, the login page and the assets open.
pub fn routes(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(overview::page))
        .route("/live", get(live::stream))
        .route("/logout", post(session::logout))
        .route("/runs", get(runs::list).post(runs::start))
        .route("/runs/{id}", get(runs::detail))
        .route("/runs/{id}/log", get(runs::log))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/runs/{id}/retry", post(runs::retry))
        .route("/projects", get(projects::page))
        .merge(project::routes())
        .merge(schedules::routes())
        .merge(events::routes())
        .merge(resources::routes())
        .merge(workflows::routes())
        .merge(approvals::routes())
        .merge(costs::routes())
        .merge(incidents::routes())
        .merge(settings::routes())
        .route_layer(axum::middleware::from_fn_with_state(state, session::require));
    Router::new()
        .merge(pages)
        .route("/login", get(session::login_page).post(session::login))
        .merge(links::routes())
        .merge(approvals::link_routes())
        .route("/assets/{name}", get(assets::serve))
        .layer(axum::middleware::from_fn(security_headers))
}

/// Headers every dashboard response carries: scripts, styles and images from this origin only,
/// no framing, no sniffing, no referrer leaving the site.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    r
}

/// The HTML 404 page, for a browser that asked for a page that is not there.
pub fn not_found_page() -> Response {
    ui::error_page(StatusCode::NOT_FOUND, "There is no page here.")
}
