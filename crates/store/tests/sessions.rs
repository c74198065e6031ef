//! Dashboard sessions: found until they expire, and ended with the credential they came from
//! (a revoked admin token, a rotation, a changed password). Told on SQLite always and on
//! PostgreSQL when `AGENT_OS_TEST_POSTGRES_URL` names a server (with `CI=true` and no URL it fails).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use agent_os_core::token::{LoginVia, TokenKind};
use agent_os_store::*;

mod common;
use common::PgDatabase;

const NOW: i64 = 1_764_000_000_000;

fn token(id: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        kind: TokenKind::Admin,
        name: id.into(),
        project_id: None,
        run_id: None,
        hash: format!("hash-{id}"),
        created_at: NOW,
        expires_at: None,
        revoked_at: None,
    }
}

fn session(id: &str, via: LoginVia, token_id: Option<&str>, expires_at: i64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        csrf: format!("csrf-{id}"),
        via,
        token_id: token_id.map(str::to_string),
        created_at: NOW,
        expires_at,
    }
}

async fn story(store: &SqlStore) {
    for t in ["a", "b", "keep"] {
        store.insert_token(&token(t)).await.unwrap();
    }
    let later = NOW + 3_600_000;
    store.insert_session(&session("s-a", LoginVia::Token, Some("a"), later)).await.unwrap();
    store.insert_session(&session("s-b", LoginVia::Token, Some("b"), later)).await.unwrap();
    store.insert_session(&session("s-keep", LoginVia::Token, Some("keep"), later)).await.unwrap();
    store.insert_session(&session("s-pw", LoginVia::Password, None, later)).await.unwrap();
    store.insert_session(&session("s-old", LoginVia::Token, Some("keep"), NOW - 1)).await.unwrap();

    let found = store.find_session("s-a", NOW).await.unwrap().expect("a live session is found");
    assert_eq!(found.csrf, "csrf-s-a");
    assert_eq!(found.token_id.as_deref(), Some("a"));
    assert!(store.find_session("s-old", NOW).await.unwrap().is_none(), "an expired session is not found");
    assert!(store.find_session("s-a", later).await.unwrap().is_none(), "nor one at its expiry");
    assert!(store.find_session("nope", NOW).await.unwrap().is_none());

    // Revoking a token ends the sessions it logged in, and only those.
    assert!(store.revoke_token("a", NOW).await.unwrap());
    assert!(store.find_session("s-a", NOW).await.unwrap().is_none());
    assert!(store.find_session("s-b", NOW).await.unwrap().is_some());

    // A changed password ends the password sessions only.
    assert_eq!(store.delete_sessions(Some(LoginVia::Password)).await.unwrap(), 1);
    assert!(store.find_session("s-pw", NOW).await.unwrap().is_none());
    assert!(store.find_session("s-b", NOW).await.unwrap().is_some());

    // A rotation keeps only the sessions of the token kept.
    store.revoke_admin_tokens_except("keep", NOW).await.unwrap();
    assert!(store.find_session("s-b", NOW).await.unwrap().is_none());
    assert!(store.find_session("s-keep", NOW).await.unwrap().is_some());

    // Logging out ends one session; a new login sweeps the expired ones.
    assert!(store.delete_session("s-keep").await.unwrap());
    assert!(!store.delete_session("s-keep").await.unwrap());
    store.insert_session(&session("s-new", LoginVia::Password, None, later)).await.unwrap();
    assert_eq!(store.delete_sessions(None).await.unwrap(), 1, "only the new one was left");
}

#[tokio::test]
async fn sessions_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir.path().join("agent-os.db"));
    let store = SqlStore::open(&StoreOptions::new(&url), 1_000).await.expect("open sqlite");
    story(&store).await;
    store.close().await;
}

#[tokio::test]
async fn sessions_on_postgres() {
    let Some(db) = PgDatabase::create().await else { return };
    let store = SqlStore::open(&StoreOptions::new(&db.url), 1_000).await.expect("open postgres");
    story(&store).await;
    store.close().await;
    db.drop_it().await;
}
