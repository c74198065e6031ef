//! What raising and resolving an incident does, decided by the engine and written through the
//! store (`engine::incidents::{raise_incident, resolve_incident}`), told on SQLite always and on
//! PostgreSQL when `AGENT_OS_TEST_POSTGRES_URL` names a server (with `CI=true` and no URL it fails).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use agent_os_core::alerting::{IncidentSource, Severity};
use agent_os_engine::engine::incidents::{IncidentChange, raise_incident, resolve_incident};
use agent_os_store::testing::PgDatabase;
use agent_os_store::{IncidentRecord, SqlStore, Store, StoreOptions, sqlite_url};

fn incident(source: IncidentSource, subject: &str, severity: Severity, at: i64) -> IncidentRecord {
    IncidentRecord::opened(
        source,
        subject,
        Some("trading"),
        severity,
        &format!("{subject} broke"),
        &format!("reason at {at}"),
        at,
    )
}

/// Incidents open once per subject, escalate, resolve, come back within the window as the same
/// incident and turn flapping.
async fn incident_story(s: &dyn Store) {
    let a = incident(IncidentSource::Check, "trading/nightly", Severity::Warning, 1_000);
    let first = raise_incident(s, &a, 0, 4).await.unwrap();
    let IncidentChange::Opened(opened) = first else { panic!("{first:?}") };
    assert_eq!((opened.id.as_str(), opened.changes), (a.id.as_str(), 1));
    // A second raise of the same subject is the same incident; a higher severity escalates it.
    let again = raise_incident(s, &incident(IncidentSource::Check, "trading/nightly", Severity::Critical, 2_000), 0, 4)
        .await
        .unwrap();
    let IncidentChange::Updated { incident: updated, escalated: true } = again else { panic!("{again:?}") };
    assert_eq!((updated.id.as_str(), updated.severity.as_str()), (a.id.as_str(), "critical"));
    let same = raise_incident(s, &incident(IncidentSource::Check, "trading/nightly", Severity::Warning, 2_500), 0, 4)
        .await
        .unwrap();
    assert!(
        matches!(same, IncidentChange::Updated { escalated: false, ref incident } if incident.severity == Severity::Critical)
    );
    // Another subject is another incident.
    let other = raise_incident(s, &incident(IncidentSource::Run, "trading/flaky", Severity::Warning, 2_600), 0, 4)
        .await
        .unwrap();
    assert!(matches!(other, IncidentChange::Opened(_)));

    s.set_incident_notified(&a.id, true).await.unwrap();
    let acked = s.ack_incident(&a.id, "ana", 2_700).await.unwrap().unwrap();
    assert_eq!((acked.acked_by.as_deref(), acked.notified), (Some("ana"), true));
    s.ack_incident(&a.id, "bo", 2_800).await.unwrap();
    assert_eq!(s.get_incident(&a.id).await.unwrap().unwrap().acked_by.as_deref(), Some("ana"), "the first ack stays");

    let resolved =
        resolve_incident(s, IncidentSource::Check, "trading/nightly", "pinged", 3_000).await.unwrap().unwrap();
    assert_eq!((resolved.status.as_str(), resolved.resolved_at, resolved.changes), ("resolved", Some(3_000), 2));
    assert!(resolve_incident(s, IncidentSource::Check, "trading/nightly", "again", 3_100).await.unwrap().is_none());
    // Back within the window: the same incident, open again, its ack cleared; then flapping.
    let back =
        raise_incident(s, &incident(IncidentSource::Check, "trading/nightly", Severity::Warning, 4_000), 2_000, 4)
            .await
            .unwrap();
    let IncidentChange::Reopened(back) = back else { panic!("{back:?}") };
    assert_eq!((back.id.as_str(), back.changes, back.flapping, back.acked_at), (a.id.as_str(), 3, false, None));
    resolve_incident(s, IncidentSource::Check, "trading/nightly", "pinged", 4_500).await.unwrap();
    let IncidentChange::Reopened(flapping) =
        raise_incident(s, &incident(IncidentSource::Check, "trading/nightly", Severity::Warning, 5_000), 4_000, 4)
            .await
            .unwrap()
    else {
        panic!("not reopened")
    };
    assert_eq!((flapping.changes, flapping.flapping), (5, true));
    resolve_incident(s, IncidentSource::Check, "trading/nightly", "pinged", 5_500).await.unwrap();
    // After the window, a new incident.
    let fresh =
        raise_incident(s, &incident(IncidentSource::Check, "trading/nightly", Severity::Warning, 90_000), 60_000, 4)
            .await
            .unwrap();
    assert!(matches!(fresh, IncidentChange::Opened(ref i) if i.id != a.id));
    let open = s.list_incidents(true, Some("trading"), 10).await.unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(s.list_incidents(false, None, 10).await.unwrap().len(), 3);
    assert!(s.list_incidents(false, Some("cortana"), 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn incidents_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir.path().join("agent-os.db"));
    let sqlite = SqlStore::open(&StoreOptions::new(url), 1_000).await.expect("open sqlite");
    incident_story(&sqlite).await;
    sqlite.close().await;
    if let Some(db) = PgDatabase::create().await {
        {
            let store = SqlStore::open(&StoreOptions::new(&db.url), 1_000).await.expect("open postgres");
            incident_story(&store).await;
            store.close().await;
        }
        db.drop_it().await;
    }
}
