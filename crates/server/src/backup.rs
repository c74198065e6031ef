//! `GET /api/v1/backup`: a fresh snapshot of the server's SQLite database as a file download,
//! for a server whose home the admin cannot reach (a hosted one). The snapshot is written to a
//! temporary file under the home's `run/` directory, streamed, and removed when the answer is
//! done or the client goes away. On PostgreSQL the answer is a `409` saying how `pg_dump` does
//! it.

use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;

use agent_os_store::{StoreError, newest_known};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};

/// The answer header that says which schema version the snapshot is at.
pub const SCHEMA_VERSION_HEADER: &str = "x-agent-os-schema-version";

/// How much of the snapshot is read and sent at a time.
const CHUNK: usize = 64 * 1024;

/// The answer's body in the API document: the database file's bytes.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // only described, never built: the body is streamed from the file
pub struct BackupFile(Vec<u8>);

/// Removes the snapshot's temporary file when the answer's body is dropped: sent whole, cut
/// off by the client, or never started.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "a backup's temporary file could not be removed");
        }
    }
}

/// A consistent copy of the whole database (admin only): every transaction committed before
/// the snapshot began, none after, while the server goes on working. Save it as a file and
/// check it, or use `agent-os backup FILE --from-server`, which does both. On PostgreSQL this
/// answers `409` with the `pg_dump` and `pg_restore` commands to use instead.
#[utoipa::path(
    get,
    path = "/api/v1/backup",
    tag = "backup",
    responses(
        (status = 200, description = "the SQLite database file; the server does not check the copy, so check it (`PRAGMA integrity_check`) or let `agent-os backup --from-server` do it",
         content_type = "application/vnd.sqlite3", body = BackupFile,
         headers(
             ("x-agent-os-schema-version" = i64, description = "the schema version the copy is at"),
             ("content-disposition" = String, description = "`attachment; filename=\"agent-os-<UTC time>.db\"`"),
         )),
        (status = 409, description = "the database is PostgreSQL: the message says how to back it up with pg_dump", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn backup(State(st): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require_admin()?;
    let dir = st.engine.config().runtime_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| {
        tracing::error!(dir = %dir.display(), error = %e, "cannot create the directory for a backup");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server cannot write its backup file; try again",
        )
    })?;
    let id = agent_os_core::id::new_id();
    let guard = RemoveOnDrop(dir.join(format!("backup-{id}.db")));
    let store = st.engine.store();
    match store.snapshot(&guard.0).await {
        Ok(()) => {}
        Err(StoreError::Unsupported(advice)) => return Err(ApiError::new(StatusCode::CONFLICT, "conflict", advice)),
        Err(e) => return Err(e.into()),
    }
    let unavailable = |e: std::io::Error| {
        tracing::error!(path = %guard.0.display(), error = %e, "cannot read a backup's snapshot");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server cannot read its backup file; try again",
        )
    };
    let file = tokio::fs::File::open(&guard.0).await.map_err(unavailable)?;
    let bytes = file.metadata().await.map_err(unavailable)?.len();
    let body = futures_util::stream::unfold(Some((file, guard)), |state| async move {
        let (mut file, guard) = state?;
        let mut buf = vec![0_u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some((file, guard))))
            }
            // The client sees a cut-off body (its length falls short) and the file goes.
            Err(e) => Some((Err(e), None)),
        }
    });
    let stamp = jiff::Timestamp::from_millisecond(st.engine.now())
        .map(|t| t.strftime("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|_| id.clone());
    let disposition = format!("attachment; filename=\"agent-os-{stamp}.db\"");
    let version = newest_known(store.backend()).to_string();
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.sqlite3"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&version) {
        headers.insert(SCHEMA_VERSION_HEADER, v);
    }
    Ok(resp)
}
