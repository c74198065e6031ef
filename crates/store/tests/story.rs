//! One storage story, told on SQLite always and on PostgreSQL when
//! `AGENT_OS_TEST_POSTGRES_URL` names a server (CI always sets it; with `CI=true` and no URL the
//! PostgreSQL test fails rather than skips).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use agent_os_core::alerting::{HoldReason, IncidentSource, IncidentStatus, NotificationSource, Severity};
use agent_os_core::check::{CheckKind, CheckState, PingKind};
use agent_os_core::cost::CostSource;
use agent_os_core::manifest::{ManagedBy, ProbeKind, ProbeStatus, ScheduleSource};
use agent_os_core::resource::{Limits, Rate, ResourceScope};
use agent_os_core::run::{LogStream, RunStatus};
use agent_os_core::token::TokenKind;
use agent_os_store::*;

mod common;
use common::PgDatabase;

async fn sqlite_store(dir: &tempfile::TempDir) -> SqlStore {
    let url = sqlite_url(&dir.path().join("agent-os.db"));
    SqlStore::open(&StoreOptions::new(url), 1_000).await.expect("open sqlite")
}

fn project(name: &str) -> NewProject {
    NewProject {
        id: agent_os_core::id::new_id(),
        name: name.into(),
        description: "Personal AI memory".into(),
        transport: ProjectTransport::Command { root: format!("/home/u/{name}") },
        manifest: format!("name: {name}\n"),
    }
}

fn schedule(task: &str) -> NewSchedule {
    NewSchedule {
        task: task.into(),
        cron: "0 22 * * *".into(),
        timezone: "America/Los_Angeles".into(),
        managed_by: ManagedBy::Launchd,
        description: String::new(),
        source: ScheduleSource::Manifest,
        check_slug: Some(task.into()),
    }
}

fn new_run(p: &ProjectRecord, task: &str, now: i64, max_attempts: i64) -> NewRun {
    NewRun {
        id: agent_os_core::id::new_id(),
        project_id: p.id.clone(),
        project: p.name.clone(),
        task: task.into(),
        input: "{\"q\":1}".into(),
        max_attempts,
        trigger: "api".into(),
        concurrency_key: None,
        scheduled_for: None,
        resources: Vec::new(),
        priority: 50,
        now,
    }
}

/// The last slot a schedule reached, as the scheduler reads it.
async fn last_slot(s: &dyn Store, key: &str) -> Option<i64> {
    s.schedule_states().await.unwrap().into_iter().find(|st| st.key == key).map(|st| st.last_slot)
}

/// Claims one slot; whether it was claimed here.
async fn fire(s: &dyn Store, key: &str, slot: i64, run: Option<&NewRun>, outcome: &str, now: i64) -> bool {
    let f = SlotFire { key: key.into(), slot, run: run.cloned(), outcome: outcome.into() };
    s.fire_slots(&[f], now).await.unwrap()[0]
}

/// Ends a run the quick way: a queued one is cancelled, a running one succeeds.
async fn end_run(s: &dyn Store, id: &str) {
    let run = s.get_run(id).await.unwrap().unwrap();
    if run.status == RunStatus::Queued {
        s.request_cancel(id, run.queued_at + 1).await.unwrap();
        return;
    }
    s.finish_attempt(&FinishAttempt {
        run_id: id.into(),
        attempt: run.attempt,
        attempt_status: RunStatus::Succeeded,
        retry_at: None,
        exit_code: Some(0),
        error: None,
        outputs: None,
        now: run.queued_at + 1,
        extra_attempt: false,
    })
    .await
    .unwrap();
}

async fn story(s: &dyn Store) {
    // Projects and their schedules.
    let cortana = s.insert_project(&project("cortana"), &[schedule("daily_update")], 1_000).await.unwrap();
    assert_eq!(cortana.created_at, 1_000);
    let dup = s.insert_project(&project("cortana"), &[], 1_001).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "duplicate name must conflict: {dup:?}");
    let trading = s.insert_project(&project("trading"), &[], 1_002).await.unwrap();
    let names: Vec<String> = s.list_projects().await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["cortana", "trading"]);
    assert_eq!(s.get_project_by_id(&trading.id).await.unwrap().unwrap().name, "trading");
    let scheds = s.list_schedules(None).await.unwrap();
    assert_eq!(scheds.len(), 1);
    assert_eq!(scheds[0].project, "cortana");
    assert_eq!(scheds[0].timezone, "America/Los_Angeles");
    let updated = s
        .update_project("cortana", "name: cortana\n# v2\n", "v2", &[schedule("a"), schedule("b")], 2_000)
        .await
        .unwrap();
    assert_eq!(updated.updated_at, 2_000);
    assert_eq!(updated.description, "v2");
    let tasks: Vec<String> = s.list_schedules(Some("cortana")).await.unwrap().into_iter().map(|x| x.task).collect();
    assert_eq!(tasks, ["a", "b"]);
    assert!(matches!(s.update_project("nope", "", "", &[], 1).await, Err(StoreError::NotFound(_))));
    s.set_cost_cursor(&cortana.id, Some("42")).await.unwrap();
    assert_eq!(s.get_project("cortana").await.unwrap().unwrap().cost_cursor.as_deref(), Some("42"));

    // A run: queued, claimed once, retried, finished.
    let run = s.insert_run(&new_run(&cortana, "daily_update", 3_000, 2)).await.unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.attempt, 0);
    assert_eq!(s.next_due().await.unwrap(), Some(3_000));
    assert!(s.claim_runs("node-a", 2_999, 10, &[]).await.unwrap().is_empty(), "not due yet");
    let run_token = TokenRecord {
        id: "claim-token".into(),
        kind: TokenKind::Run,
        name: String::new(),
        project_id: None,
        run_id: None,
        hash: "hash-claim".into(),
        created_at: 3_000,
        expires_at: None,
        revoked_at: None,
    };
    let unused = TokenRecord { id: "unused".into(), hash: "hash-unused".into(), ..run_token.clone() };
    let claimed = s.claim_runs("node-a", 3_000, 10, &[run_token, unused]).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let t = s.find_token("hash-claim").await.unwrap().expect("the claim stored the run's token");
    assert_eq!((t.run_id.as_deref(), t.project_id.as_deref()), (Some(run.id.as_str()), Some(cortana.id.as_str())));
    assert!(s.find_token("hash-unused").await.unwrap().is_none(), "tokens beyond the claimed runs are not stored");
    assert_eq!(claimed[0].status, RunStatus::Running);
    assert_eq!(claimed[0].attempt, 1);
    assert!(s.claim_runs("node-b", 3_000, 10, &[]).await.unwrap().is_empty(), "claimed twice");
    s.set_attempt_process(&run.id, 1, 4242, Some(99)).await.unwrap();
    let running = s.running_attempts().await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].1.pid, Some(4242));
    assert_eq!(running[0].1.node_id, "node-a");

    let retried = s
        .finish_attempt(&FinishAttempt {
            run_id: run.id.clone(),
            attempt: 1,
            attempt_status: RunStatus::Failed,
            retry_at: Some(5_000),
            exit_code: Some(1),
            error: Some("exit status 1".into()),
            outputs: None,
            now: 3_500,
            extra_attempt: false,
        })
        .await
        .unwrap();
    assert_eq!(retried.status, RunStatus::Queued);
    assert_eq!(retried.not_before, 5_000);
    assert_eq!(
        s.find_token("hash-claim").await.unwrap().unwrap().revoked_at,
        Some(3_500),
        "the run token ends with its attempt"
    );
    let again = s
        .finish_attempt(&FinishAttempt {
            run_id: run.id.clone(),
            attempt: 1,
            attempt_status: RunStatus::Failed,
            retry_at: None,
            exit_code: Some(1),
            error: None,
            outputs: None,
            now: 3_600,
            extra_attempt: false,
        })
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "an attempt ends once");
    let claimed = s.claim_runs("node-a", 5_000, 10, &[]).await.unwrap();
    assert_eq!(claimed[0].attempt, 2);
    let done = s
        .finish_attempt(&FinishAttempt {
            run_id: run.id.clone(),
            attempt: 2,
            attempt_status: RunStatus::Succeeded,
            retry_at: None,
            exit_code: Some(0),
            error: None,
            outputs: Some("{\"count\":3}".into()),
            now: 5_100,
            extra_attempt: false,
        })
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
    assert_eq!(done.finished_at, Some(5_100));
    assert_eq!(done.started_at, Some(3_000), "started_at is the first attempt's start");
    assert_eq!(done.outputs.as_deref(), Some("{\"count\":3}"));
    let attempts = s.list_attempts(&run.id).await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.status.as_str()).collect::<Vec<_>>(), ["failed", "succeeded"]);
    assert!(s.running_attempts().await.unwrap().is_empty());

    // Cancel: a queued run ends at once; a running one is flagged and its retry is refused.
    let q = s.insert_run(&new_run(&trading, "scan", 6_000, 1)).await.unwrap();
    let c = s.request_cancel(&q.id, 6_001).await.unwrap();
    assert_eq!(c.status, RunStatus::Cancelled);
    let r = s.insert_run(&new_run(&trading, "scan", 6_100, 3)).await.unwrap();
    s.claim_runs("node-a", 6_100, 10, &[]).await.unwrap();
    let flagged = s.request_cancel(&r.id, 6_200).await.unwrap();
    assert_eq!(flagged.status, RunStatus::Running);
    assert!(flagged.cancel_requested);
    let ended = s
        .finish_attempt(&FinishAttempt {
            run_id: r.id.clone(),
            attempt: 1,
            attempt_status: RunStatus::Failed,
            retry_at: Some(7_000),
            exit_code: None,
            error: Some("terminated".into()),
            outputs: None,
            now: 6_300,
            extra_attempt: false,
        })
        .await
        .unwrap();
    assert_eq!(ended.status, RunStatus::Cancelled, "a requested cancel wins over a retry");
    assert!(matches!(s.request_cancel("nope", 1).await, Err(StoreError::NotFound(_))));

    // Listing with filters and pagination, newest first.
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.insert_run(&new_run(&trading, "page", 8_000 + i, 1)).await.unwrap().id);
    }
    let page1 = s
        .list_runs(&RunFilter {
            project: Some("trading".into()),
            task: Some("page".into()),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page1.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), [ids[4].clone(), ids[3].clone()]);
    let page2 = s
        .list_runs(&RunFilter {
            project: Some("trading".into()),
            task: Some("page".into()),
            before: Some(page1[1].id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page2.len(), 3);
    let succeeded =
        s.list_runs(&RunFilter { status: Some(RunStatus::Succeeded), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(succeeded.len(), 1);
    let counts = s.count_runs_by_status().await.unwrap();
    assert!(counts.contains(&(RunStatus::Queued, 5)), "{counts:?}");
    assert!(counts.contains(&(RunStatus::Cancelled, 2)), "{counts:?}");

    // Logs keep the tail under the cap and count what they dropped.
    let chunk = |d: &str| NewLogChunk { stream: LogStream::Stdout, at: 9_000, data: d.into() };
    s.append_log(&run.id, &[chunk("aaaa\n"), chunk("bbbb\n")], 12).await.unwrap();
    s.append_log(&run.id, &[chunk("cccc\n")], 12).await.unwrap();
    let log = s.read_log(&run.id, 0, 100).await.unwrap();
    assert_eq!(log.iter().map(|c| c.data.as_str()).collect::<String>(), "bbbb\ncccc\n");
    assert_eq!(log[0].seq, 2);
    let r = s.get_run(&run.id).await.unwrap().unwrap();
    assert_eq!((r.log_bytes, r.log_dropped), (10, 5));
    assert_eq!(s.read_log(&run.id, 2, 100).await.unwrap().len(), 1);
    s.append_log(&run.id, &[chunk(&"x".repeat(30))], 12).await.unwrap();
    let log = s.read_log(&run.id, 0, 100).await.unwrap();
    assert_eq!(log.iter().map(|c| c.data.len()).sum::<usize>(), 12, "one oversized chunk keeps its tail");

    // Tokens: stored by hash, revocable, run tokens end with their run.
    let tok = |id: &str, kind: TokenKind, run: Option<&str>| TokenRecord {
        id: id.into(),
        kind,
        name: String::new(),
        project_id: Some(trading.id.clone()),
        run_id: run.map(str::to_string),
        hash: format!("hash-{id}"),
        created_at: 1,
        expires_at: None,
        revoked_at: None,
    };
    s.insert_token(&tok("t1", TokenKind::Admin, None)).await.unwrap();
    s.insert_token(&tok("t2", TokenKind::Admin, None)).await.unwrap();
    s.insert_token(&tok("t3", TokenKind::Run, Some(&r.id))).await.unwrap();
    assert!(s.insert_token(&tok("t1", TokenKind::Admin, None)).await.is_err());
    assert_eq!(s.count_admin_tokens().await.unwrap(), 2);
    s.revoke_admin_tokens_except("t2", 10).await.unwrap();
    assert_eq!(s.count_admin_tokens().await.unwrap(), 1);
    assert_eq!(s.find_token("hash-t1").await.unwrap().unwrap().revoked_at, Some(10));
    s.revoke_run_tokens(&r.id, 11).await.unwrap();
    assert_eq!(s.find_token("hash-t3").await.unwrap().unwrap().revoked_at, Some(11));
    assert!(s.revoke_token("t2", 12).await.unwrap());
    assert!(!s.revoke_token("t2", 13).await.unwrap(), "revoking twice reports nothing done");
    assert_eq!(s.list_tokens().await.unwrap().len(), 2, "run tokens are not listed");
    // At start: a generated admin token only when none is live; a given one stored once, even
    // when several servers give it (their inserts take turns), and the others revoked.
    assert!(s.insert_first_admin_token(&tok("t4", TokenKind::Admin, None)).await.unwrap());
    assert!(!s.insert_first_admin_token(&tok("t5", TokenKind::Admin, None)).await.unwrap(), "one is live already");
    s.set_admin_token(&tok("t6", TokenKind::Admin, None), 14).await.unwrap();
    s.set_admin_token(&TokenRecord { id: "t6-again".into(), ..tok("t6", TokenKind::Admin, None) }, 15).await.unwrap();
    assert_eq!(s.count_admin_tokens().await.unwrap(), 1);
    assert_eq!(s.find_token("hash-t6").await.unwrap().unwrap().id, "t6", "the first insert is kept");
    assert_eq!(s.find_token("hash-t4").await.unwrap().unwrap().revoked_at, Some(14));
    assert!(
        matches!(s.set_admin_token(&tok("t1", TokenKind::Admin, None), 16).await, Err(StoreError::Conflict(_))),
        "a revoked token does not come back"
    );

    // Probes: the newest result per kind.
    for (i, status) in [ProbeStatus::Ok, ProbeStatus::Down].into_iter().enumerate() {
        s.insert_probe_result(&ProbeResult {
            id: agent_os_core::id::new_id(),
            project_id: cortana.id.clone(),
            kind: ProbeKind::Status,
            at: 100 + i as i64,
            since: 100 + i as i64,
            repeats: 1,
            ok: true,
            duration_ms: 3,
            status: Some(status),
            message: None,
            body: None,
            error: None,
        })
        .await
        .unwrap();
    }
    let latest = s.latest_probe_results(&cortana.id).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].status, Some(ProbeStatus::Down));

    // Costs: exact, all-or-nothing, duplicates by idempotency key count once.
    let cost = |key: &str, nanos: i64| NewCost {
        id: agent_os_core::id::new_id(),
        project_id: trading.id.clone(),
        project: "trading".into(),
        run_id: Some(r.id.clone()),
        service: "openai".into(),
        key_name: Some("trading-openai".into()),
        amount_nanos: nanos,
        currency: "USD".into(),
        tokens_in: Some(10),
        tokens_out: None,
        tokens_cached_in: None,
        model: Some("gpt-4o-mini".into()),
        at: 50,
        idempotency_key: key.into(),
        source: CostSource::Api,
        metadata: None,
        created_at: 50,
        price: None,
        unpriced: false,
    };
    assert_eq!(s.insert_costs(&[cost("k1", 12_300_000), cost("k2", 1)]).await.unwrap(), (2, 0));
    assert_eq!(s.insert_costs(&[cost("k1", 12_300_000), cost("k3", 5)]).await.unwrap(), (1, 1));
    let costs =
        s.list_costs(&CostFilter { project: Some("trading".into()), limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(costs.len(), 3);
    assert_eq!(costs.iter().map(|c| c.amount_nanos).sum::<i64>(), 12_300_006);

    // Tokens of a model without a price: stored and counted as unpriced, priced later in one
    // transaction that also moves the daily rollup.
    let unknown = |key: &str| NewCost {
        model: Some("acme-1".into()),
        amount_nanos: 0,
        tokens_out: Some(5),
        unpriced: true,
        ..cost(key, 0)
    };
    assert_eq!(s.insert_costs(&[unknown("u1"), unknown("u2")]).await.unwrap(), (2, 0));
    let totals = |s: &'static str| CostTotalsFilter { project: Some(s.into()), ..Default::default() };
    let before = s.cost_totals(&totals("trading"), CostGroup::Project).await.unwrap();
    assert_eq!((before[0].records, before[0].unpriced, before[0].amount_nanos), (5, 2, 12_300_006));
    assert_eq!(s.unpriced_models().await.unwrap(), vec!["acme-1".to_string()]);
    let waiting = s.unpriced_costs("acme-1", 10).await.unwrap();
    assert_eq!(waiting.len(), 2);
    assert_eq!((waiting[0].tokens_in, waiting[0].tokens_out), (Some(10), Some(5)));
    let priced: Vec<(String, i64)> = waiting.iter().map(|c| (c.id.clone(), 1_000)).collect();
    assert_eq!(s.price_costs(&priced, "{\"model\":\"acme-1\"}").await.unwrap(), 2);
    assert_eq!(s.price_costs(&priced, "{}").await.unwrap(), 0, "a record is priced once");
    assert!(s.unpriced_models().await.unwrap().is_empty());
    for by in [CostGroup::Project, CostGroup::Day] {
        let after = s.cost_totals(&totals("trading"), by).await.unwrap();
        assert_eq!((after[0].records, after[0].unpriced, after[0].amount_nanos), (5, 0, 12_302_006), "{by:?}");
    }
    let listed =
        s.list_costs(&CostFilter { project: Some("trading".into()), limit: 100, ..Default::default() }).await.unwrap();
    let u1 = listed.iter().find(|c| c.idempotency_key == "u1").unwrap();
    assert_eq!((u1.unpriced, u1.amount_nanos, u1.price.as_deref()), (false, 1_000, Some("{\"model\":\"acme-1\"}")));

    // Deleting a project keeps its runs and costs as history.
    assert!(s.delete_project("trading").await.unwrap());
    assert!(!s.delete_project("trading").await.unwrap());
    assert!(s.get_project("trading").await.unwrap().is_none());
    assert!(s.find_token("hash-t3").await.unwrap().is_none(), "the project's tokens go with it");
    assert!(s.get_run(&r.id).await.unwrap().is_some());
    assert_eq!(s.list_costs(&CostFilter { limit: 10, ..Default::default() }).await.unwrap().len(), 5);

    // Managed schedules: each slot is claimed once, with its run, in one transaction.
    let key = "cortana:daily_update:0 22 * * *:UTC";
    assert_eq!(last_slot(s, key).await, None);
    s.init_schedules(&[key.to_string()], 100).await.unwrap();
    s.init_schedules(&[key.to_string()], 999).await.unwrap();
    assert_eq!(last_slot(s, key).await, Some(100), "init never moves an existing schedule");
    let slot_run = NewRun { trigger: "schedule".into(), ..new_run(&cortana, "daily_update", 205, 1) };
    assert!(fire(s, key, 200, Some(&slot_run), "started", 201).await);
    let again = NewRun { id: agent_os_core::id::new_id(), ..slot_run.clone() };
    assert!(!fire(s, key, 200, Some(&again), "started", 202).await, "a slot fires once");
    assert!(s.get_run(&again.id).await.unwrap().is_none(), "and its duplicate run is not stored");
    let fired = s.get_run(&slot_run.id).await.unwrap().unwrap();
    assert_eq!((fired.status.as_str(), fired.not_before, fired.trigger.as_str()), ("queued", 205, "schedule"));
    assert_eq!(s.last_schedule_run(key).await.unwrap(), Some((slot_run.id.clone(), RunStatus::Queued)));
    assert!(fire(s, key, 150, None, "skipped", 203).await);
    assert_eq!(last_slot(s, key).await, Some(200), "the last slot never moves back");
    let states = s.schedule_states().await.unwrap();
    let state = states.iter().find(|st| st.key == key).unwrap();
    assert_eq!(state.last_run.as_ref().map(|r| (r.slot, r.run_id.as_str())), Some((200, slot_run.id.as_str())));
    assert!(!state.paused);
    // Pausing keeps the last slot; resuming moves it to "now", so paused slots never catch up.
    s.set_schedule_paused(key, true, 300).await.unwrap();
    let paused = s.schedule_states().await.unwrap().into_iter().find(|st| st.key == key).unwrap();
    assert_eq!((paused.paused, paused.paused_at, paused.last_slot), (true, Some(300), 200));
    s.set_schedule_paused(key, false, 900).await.unwrap();
    let resumed = s.schedule_states().await.unwrap().into_iter().find(|st| st.key == key).unwrap();
    assert_eq!((resumed.paused, resumed.paused_at, resumed.last_slot), (false, None, 900));
    s.init_schedules(&[key.to_string(), "cortana:new:* * * * *:UTC".to_string()], 950).await.unwrap();
    assert_eq!(last_slot(s, key).await, Some(900));
    assert_eq!(last_slot(s, "cortana:new:* * * * *:UTC").await, Some(950));
    end_run(s, &slot_run.id).await;

    // Runs sharing a concurrency key start one at a time, oldest first; others run beside them.
    let keyed = |now: i64| NewRun { concurrency_key: Some("k".into()), ..new_run(&cortana, "daily_update", now, 1) };
    let (k1, k2, free) = (keyed(1_000), keyed(1_001), new_run(&cortana, "daily_update", 1_002, 1));
    for r in [&k2, &free, &k1] {
        s.insert_run(r).await.unwrap();
    }
    let claimed: Vec<String> = s.claim_runs("n1", 2_000, 10, &[]).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(claimed, vec![k1.id.clone(), free.id.clone()], "the second keyed run waits for the first");
    assert!(s.claim_runs("n1", 2_000, 10, &[]).await.unwrap().is_empty(), "not while the first still runs");
    end_run(s, &k1.id).await;
    end_run(s, &free.id).await;
    let next: Vec<String> = s.claim_runs("n1", 2_000, 10, &[]).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(next, vec![k2.id.clone()]);
    end_run(s, &k2.id).await;

    // Discovered schedules survive manifest reloads; registering one again replaces it.
    let found = NewSchedule { source: ScheduleSource::Discovered, managed_by: ManagedBy::Cron, ..schedule("backup") };
    s.add_discovered_schedules(&cortana.id, std::slice::from_ref(&found)).await.unwrap();
    s.add_discovered_schedules(&cortana.id, &[NewSchedule { cron: "5 1 * * *".into(), ..found.clone() }])
        .await
        .unwrap();
    s.update_project("cortana", "name: cortana\n", "", &[schedule("daily_update")], 2_000).await.unwrap();
    let listed = s.list_schedules(Some("cortana")).await.unwrap();
    let tasks: Vec<(&str, &str, &str)> =
        listed.iter().map(|x| (x.task.as_str(), x.cron.as_str(), x.source.as_str())).collect();
    assert_eq!(tasks, vec![("daily_update", "0 22 * * *", "manifest"), ("backup", "5 1 * * *", "discovered")]);
    assert!(s.remove_discovered_schedule(&cortana.id, "backup").await.unwrap());
    assert!(!s.remove_discovered_schedule(&cortana.id, "daily_update").await.unwrap(), "manifest ones stay");

    // Checks keep their id (the ping URL) across re-syncs; pings and state changes raise events.
    let key_a = s.ensure_ping_key(&cortana.id, "pk-cortana").await.unwrap();
    assert_eq!(s.ensure_ping_key(&cortana.id, "pk-other").await.unwrap(), key_a, "the ping key never changes");
    let check = |slug: &str, grace: i64| NewCheck {
        slug: slug.into(),
        kind: CheckKind::Cron,
        period_ms: None,
        cron: Some("0 22 * * *".into()),
        timezone: Some("UTC".into()),
        grace_ms: grace,
        start_grace_ms: Some(grace / 2),
        min_duration_ms: None,
        max_duration_ms: Some(grace * 3),
        max_pings: Some((2, grace)),
        description: String::new(),
        tags: vec!["nightly".into()],
        depends_on: vec!["backup".into(), "trading/rebalance".into()],
    };
    s.sync_checks(&cortana.id, &[check("daily_update", 600_000), check("backup", 1)], 10).await.unwrap();
    let first = s.find_check_by_slug("pk-cortana", "daily_update").await.unwrap().unwrap();
    s.sync_checks(&cortana.id, &[check("daily_update", 900_000)], 11).await.unwrap();
    let again = s.get_check(&first.id).await.unwrap().unwrap();
    assert_eq!((again.grace_ms, again.state.as_str(), again.project.as_str()), (900_000, "new", "cortana"));
    assert_eq!(
        (again.start_grace_ms, again.min_duration_ms, again.max_duration_ms),
        (Some(450_000), None, Some(2_700_000)),
        "the timing rules follow the manifest"
    );
    assert_eq!(again.max_pings, Some((2, 900_000)));
    assert_eq!(s.list_checks(Some("cortana")).await.unwrap().len(), 1, "undeclared checks go");

    // Tags are kept in order and found across projects; a tag is matched whole (`_` is no
    // wildcard, a tag is not found inside a longer one), and a re-sync replaces them.
    assert_eq!(again.tags, ["nightly"]);
    let tagged = |slug: &str, tags: &[&str]| NewCheck {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..check(slug, 900_000)
    };
    s.sync_checks(&cortana.id, &[tagged("daily_update", &["nightly", "team_a"])], 12).await.unwrap();
    let trading = s.insert_project(&project("trading"), &[], 12).await.unwrap();
    s.sync_checks(&trading.id, &[tagged("report", &["nightly"]), tagged("teamxa", &["teamxa", "nightly-2"])], 12)
        .await
        .unwrap();
    let names = |checks: Vec<agent_os_store::CheckRecord>| -> Vec<String> {
        checks.into_iter().map(|c| format!("{}/{}", c.project, c.slug)).collect()
    };
    assert_eq!(names(s.list_tagged_checks("nightly", None).await.unwrap()), ["cortana/daily_update", "trading/report"]);
    assert_eq!(names(s.list_tagged_checks("nightly", Some("trading")).await.unwrap()), ["trading/report"]);
    assert_eq!(names(s.list_tagged_checks("team_a", None).await.unwrap()), ["cortana/daily_update"], "`_` is literal");
    assert!(s.list_tagged_checks("night", None).await.unwrap().is_empty(), "a tag matches whole");
    assert_eq!(s.get_check(&first.id).await.unwrap().unwrap().tags, ["nightly", "team_a"]);
    assert!(s.delete_project("trading").await.unwrap());
    s.sync_checks(&cortana.id, &[check("daily_update", 900_000)], 13).await.unwrap();
    assert_eq!(s.get_check(&first.id).await.unwrap().unwrap().tags, ["nightly"], "a re-sync replaces the tags");
    let event = |kind: &str, at: i64| NewEvent {
        id: agent_os_core::id::new_id(),
        kind: kind.into(),
        project: Some("cortana".into()),
        subject: Some("daily_update".into()),
        data: "{}".into(),
        at,
    };
    s.record_pings(&[PingUpdate {
        id: agent_os_core::id::new_id(),
        check_id: first.id.clone(),
        at: 20,
        kind: PingKind::Success,
        rid: None,
        duration_ms: Some(5),
        body: Some("done".into()),
        remote: None,
        last_finish_at: Some(20),
        last_failed: false,
        running_since: None,
        state: CheckState::Up,
        event: Some(event("check.up", 20)),
    }])
    .await
    .unwrap();
    let up = s.get_check(&first.id).await.unwrap().unwrap();
    assert_eq!(
        (up.state.as_str(), up.last_ping_at, up.last_duration_ms, up.state_changed_at),
        ("up", Some(20), Some(5), Some(20))
    );
    assert!(s.set_check_state(&first.id, CheckState::Late, &event("check.late", 30)).await.unwrap());
    assert!(
        !s.set_check_state(&first.id, CheckState::Late, &event("check.late", 31)).await.unwrap(),
        "no event without a change"
    );
    let events = s.list_events(Some("check."), None, None, 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["check.late", "check.up"]);
    let older = s.list_events(Some("check."), None, Some(&events[0].id), 10).await.unwrap();
    assert_eq!(older.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["check.up"], "the page after the cursor");
    assert!(s.list_events(None, None, Some("no-such-event"), 10).await.unwrap().is_empty());

    // Dependencies, holds and snoozes are kept on the check; a re-sync keeps the snooze.
    assert_eq!(up.depends_on, ["backup", "trading/rebalance"]);
    assert_eq!((up.held_by.as_deref(), up.snooze.as_ref()), (None, None));
    s.set_check_held(&first.id, Some("trading/rebalance"), Some(&event("check.held", 32))).await.unwrap();
    let snooze = agent_os_store::Snooze { until: 5_000, reason: Some("moving house".into()), by: Some("admin".into()) };
    assert!(s.set_check_snooze(&first.id, Some(&snooze)).await.unwrap());
    assert!(!s.set_check_snooze("no-such-check", Some(&snooze)).await.unwrap());
    s.sync_checks(&cortana.id, &[check("daily_update", 900_000)], 40).await.unwrap();
    let held = s.get_check(&first.id).await.unwrap().unwrap();
    assert_eq!((held.held_by.as_deref(), held.snooze.as_ref()), (Some("trading/rebalance"), Some(&snooze)));
    s.set_check_held(&first.id, None, None).await.unwrap();
    assert!(s.set_check_snooze(&first.id, None).await.unwrap());
    let woken = s.get_check(&first.id).await.unwrap().unwrap();
    assert_eq!((woken.held_by, woken.snooze), (None, None));
    s.set_project_snooze(&cortana.id, Some(&snooze), 41).await.unwrap();
    let later = agent_os_store::Snooze { until: 9_000, reason: None, by: None };
    s.set_project_snooze(&cortana.id, Some(&later), 42).await.unwrap();
    assert_eq!(s.project_snoozes().await.unwrap(), [("cortana".to_string(), later)], "one snooze per project");
    s.set_project_snooze(&cortana.id, None, 43).await.unwrap();
    assert!(s.project_snoozes().await.unwrap().is_empty());
    let held = s.list_events(Some("check.held"), None, None, 10).await.unwrap();
    assert_eq!(held.iter().map(|e| e.at).collect::<Vec<_>>(), [32], "the hold's event is stored with it");

    // A group of pings in one transaction: each check's row ends as its last ping says, with
    // the last duration any of them had, and every state change's event.
    let ping = |at: i64, duration_ms: Option<i64>, state: CheckState, ev: Option<NewEvent>| PingUpdate {
        id: agent_os_core::id::new_id(),
        check_id: first.id.clone(),
        at,
        kind: PingKind::Success,
        rid: None,
        duration_ms,
        body: None,
        remote: None,
        last_finish_at: Some(at),
        last_failed: false,
        running_since: None,
        state,
        event: ev,
    };
    s.record_pings(&[
        ping(40, Some(7), CheckState::Up, Some(event("check.up", 40))),
        ping(41, None, CheckState::Up, None),
    ])
    .await
    .unwrap();
    let after = s.get_check(&first.id).await.unwrap().unwrap();
    assert_eq!(
        (after.state.as_str(), after.last_ping_at, after.last_duration_ms, after.state_changed_at),
        ("up", Some(41), Some(7), Some(41))
    );
    assert_eq!(s.list_events(Some("check.up"), None, None, 10).await.unwrap().len(), 2);
    // A type prefix is exact: `_` and `%` are themselves, and case counts. A project filter
    // keeps that project's events.
    for (kind, project) in [("mix_a.x", "p1"), ("mixba.y", "p1"), ("MIX_A.z", "p2"), ("mix%a.w", "p2")] {
        let mut e = event(kind, 50);
        e.project = Some(project.into());
        s.insert_event(&e).await.unwrap();
    }
    let kinds = |v: Vec<EventRecord>| v.into_iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(kinds(s.list_events(Some("mix_a."), None, None, 10).await.unwrap()), ["mix_a.x"]);
    assert_eq!(kinds(s.list_events(Some("mix%"), None, None, 10).await.unwrap()), ["mix%a.w"]);
    assert_eq!(kinds(s.list_events(Some("mix"), Some("p2"), None, 10).await.unwrap()), ["mix%a.w"]);
    assert_eq!(s.list_events(None, Some("p1"), None, 10).await.unwrap().len(), 2);

    // Nodes and settings.
    let node = NodeRecord { id: "n1".into(), hostname: "h".into(), pid: 1, started_at: 1, heartbeat_at: 1 };
    s.upsert_node(&node).await.unwrap();
    s.upsert_node(&NodeRecord { heartbeat_at: 9, ..node.clone() }).await.unwrap();
    assert_eq!(s.get_node("n1").await.unwrap().unwrap().heartbeat_at, 9);
    assert_eq!(s.get_setting("install_id").await.unwrap(), None);
    assert_eq!(s.init_setting("first_start", "a").await.unwrap(), "a");
    assert_eq!(s.init_setting("first_start", "b").await.unwrap(), "a", "the first value is kept");
    s.set_setting("install_id", "abc").await.unwrap();
    s.set_setting("install_id", "def").await.unwrap();
    assert_eq!(s.get_setting("install_id").await.unwrap().as_deref(), Some("def"));
    assert!(!s.replace_setting("install_id", "abc", "ghi").await.unwrap(), "a stale expectation writes nothing");
    assert!(s.replace_setting("install_id", "def", "ghi").await.unwrap());
    assert_eq!(s.get_setting("install_id").await.unwrap().as_deref(), Some("ghi"));
    assert!(!s.replace_setting("absent", "", "x").await.unwrap(), "nothing to replace");
    assert_eq!(s.get_setting("absent").await.unwrap(), None);
    // By prefix: exactly the keys that start with it, in order; `_` and `%` are not wildcards.
    for key in ["links.used:b", "links.used:a", "links.usedx", "links_used:c", "xlinks.used:d"] {
        s.set_setting(key, key).await.unwrap();
    }
    let found = s.settings_with_prefix("links.used:").await.unwrap();
    let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["links.used:a", "links.used:b"]);
    assert_eq!(found[0].1, "links.used:a");
    assert!(s.settings_with_prefix("links_used").await.unwrap().len() == 1, "`_` matched a dot");
    let gone = ["links.used:a".to_string(), "links.used:b".to_string(), "links.used:zz".to_string()];
    assert_eq!(s.delete_settings(&gone).await.unwrap(), 2, "only the ones there count");
    assert!(s.settings_with_prefix("links.used:").await.unwrap().is_empty());
    assert_eq!(s.get_setting("links.usedx").await.unwrap().as_deref(), Some("links.usedx"), "others stay");
}

#[tokio::test]
async fn story_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    assert_eq!(store.backend(), Backend::Sqlite);
    story(&store).await;
    store.close().await;
    // Reopening migrates nothing twice and keeps the data.
    let again = sqlite_store(&dir).await;
    assert!(again.get_project("cortana").await.unwrap().is_some());
}

#[tokio::test]
async fn story_on_postgres() {
    let Some(db) = PgDatabase::create().await else { return };
    {
        let store = SqlStore::open(&StoreOptions::new(&db.url), 1_000).await.expect("open postgres");
        assert_eq!(store.backend(), Backend::Postgres);
        story(&store).await;
        store.close().await;
        let again = SqlStore::open(&StoreOptions::new(&db.url), 2_000).await.expect("reopen postgres");
        assert!(again.get_project("cortana").await.unwrap().is_some());
        again.close().await;
    }
    db.drop_it().await;
}

#[tokio::test]
async fn concurrent_claims_never_hand_out_a_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(sqlite_store(&dir).await);
    claim_race(store).await;
    if let Some(db) = PgDatabase::create().await {
        let pg = std::sync::Arc::new(SqlStore::open(&StoreOptions::new(&db.url), 1).await.unwrap());
        claim_race(pg.clone()).await;
        pg.close().await;
        db.drop_it().await;
    }
}

async fn claim_race(store: std::sync::Arc<SqlStore>) {
    let p = store.insert_project(&project("race"), &[], 1).await.unwrap();
    for i in 0..200 {
        store.insert_run(&new_run(&p, "t", i, 1)).await.unwrap();
    }
    let mut handles = Vec::new();
    for n in 0..4 {
        let s = store.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = s.claim_runs(&format!("node-{n}"), 1_000, 7, &[]).await.unwrap();
                if batch.is_empty() {
                    break got;
                }
                got.extend(batch.into_iter().map(|r| r.id));
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, 200);
    assert_eq!(all.len(), 200, "a run was claimed twice");
}

fn limits(concurrency: Option<u32>, rate: Option<(u32, u64, u32)>) -> std::collections::HashMap<String, Limits> {
    let rate = rate.map(|(count, secs, burst)| Rate { count, per: std::time::Duration::from_secs(secs), burst });
    std::collections::HashMap::from([("openai".to_string(), Limits { concurrency, rate })])
}

fn lease(id: &str, priority: i64, since: i64) -> LeaseRequest {
    LeaseRequest {
        id: id.into(),
        resource: "openai".into(),
        project: None,
        label: format!("job {id}"),
        priority,
        ttl_ms: 1_000,
        since,
    }
}

#[tokio::test]
async fn resources_are_shared_by_runs_and_leases_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_store(&dir).await;
    resource_story(&sqlite).await;
    if let Some(db) = PgDatabase::create().await {
        let pg = SqlStore::open(&StoreOptions::new(&db.url), 1).await.unwrap();
        resource_story(&pg).await;
        pg.close().await;
        db.drop_it().await;
    }
}

async fn resource_story(s: &dyn Store) {
    let l = limits(Some(1), None);
    let p = s.insert_project(&project("trading"), &[], 1).await.unwrap();
    let needs = |now: i64, priority: i64| NewRun {
        resources: vec!["openai".into()],
        priority,
        ..new_run(&p, "rebalance", now, 1)
    };
    let (low, high) = (needs(100, 10), needs(200, 90));
    s.insert_run(&low).await.unwrap();
    s.insert_run(&high).await.unwrap();
    assert!(s.claim_runs("n1", 1_000, 10, &[]).await.unwrap().is_empty(), "resource runs are not claimed blindly");
    let got = s.claim_resource_runs("n1", 1_000, 10, &[], &l).await.unwrap();
    assert_eq!(got.runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [high.id.as_str()], "priority first");
    let snap = s.resource_snapshot(1_000).await.unwrap();
    assert_eq!(snap.holds.len(), 1);
    assert_eq!(snap.holds[0].label, "trading.rebalance");
    assert_eq!(snap.waiters.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), [low.id.as_str()]);

    // A lease waits behind the queued run; the run goes when the first ends.
    assert_eq!(
        s.acquire_lease(&lease("L1", 10, 1_100), &l, 1_100).await.unwrap(),
        LeaseAttempt::Waiting { blocked_by: Blocked::Concurrency, retry_at: None }
    );
    end_run(s, &high.id).await;
    let got = s.claim_resource_runs("n1", 1_200, 10, &[], &l).await.unwrap();
    assert_eq!(got.runs.len(), 1, "at equal priority, the older run goes before the lease that came after it");
    end_run(s, &low.id).await;
    let LeaseAttempt::Granted(hold) = s.acquire_lease(&lease("L1", 10, 1_100), &l, 1_300).await.unwrap() else {
        panic!("the lease's turn");
    };
    assert_eq!((hold.expires_at, hold.ttl_ms), (Some(2_300), Some(1_000)));
    assert!(s.resource_snapshot(1_300).await.unwrap().waiters.is_empty(), "a granted request leaves the line");
    let renewed = s.renew_lease("L1", "openai", &ResourceScope::Admin, None, 2_000).await.unwrap().unwrap();
    assert_eq!(renewed.expires_at, Some(3_000));
    assert!(matches!(
        s.acquire_lease(&lease("L2", 50, 2_000), &l, 2_000).await.unwrap(),
        LeaseAttempt::Waiting { blocked_by: Blocked::Concurrency, .. }
    ));
    // Expired leases are reclaimed; renewing one is refused.
    assert!(matches!(s.acquire_lease(&lease("L2", 50, 2_000), &l, 3_000).await.unwrap(), LeaseAttempt::Granted(_)));
    assert!(s.renew_lease("L1", "openai", &ResourceScope::Admin, None, 3_001).await.unwrap().is_none());
    assert!(!s.release_lease("L1", "openai", &ResourceScope::Admin, 3_001).await.unwrap());
    // A lease is its taker's: another project can neither renew nor release it, nor can it be
    // reached under another resource's name.
    let beta = ResourceScope::Project("beta".into());
    assert!(s.renew_lease("L2", "openai", &beta, None, 3_001).await.unwrap().is_none());
    assert!(!s.release_lease("L2", "openai", &beta, 3_001).await.unwrap());
    assert!(s.renew_lease("L2", "gpu", &ResourceScope::Admin, None, 3_001).await.unwrap().is_none());
    assert!(!s.release_lease("L2", "gpu", &ResourceScope::Admin, 3_001).await.unwrap());
    assert!(s.release_lease("L2", "openai", &ResourceScope::Admin, 3_001).await.unwrap());
    let mut alphas = lease("A1", 50, 3_002);
    alphas.project = Some("alpha".into());
    assert!(matches!(s.acquire_lease(&alphas, &l, 3_002).await.unwrap(), LeaseAttempt::Granted(_)));
    let alpha = ResourceScope::Project("alpha".into());
    assert!(s.renew_lease("A1", "openai", &beta, None, 3_003).await.unwrap().is_none());
    assert!(!s.release_lease("A1", "openai", &beta, 3_003).await.unwrap());
    assert_eq!(s.renew_lease("A1", "openai", &alpha, None, 3_003).await.unwrap().unwrap().expires_at, Some(4_003));
    assert!(s.release_lease("A1", "openai", &alpha, 3_004).await.unwrap());

    // A rate bucket's level is stored: the burst, then one per second.
    let rated = limits(None, Some((1, 1, 2)));
    for (i, (at, granted)) in [(10_000, true), (10_000, true), (10_000, false), (11_000, true)].into_iter().enumerate()
    {
        let r = s.acquire_lease(&lease(&format!("R{i}"), 50, at), &rated, at).await.unwrap();
        assert_eq!(matches!(r, LeaseAttempt::Granted(_)), granted, "grant {i} at {at}: {r:?}");
        if let LeaseAttempt::Waiting { blocked_by, retry_at } = r {
            assert_eq!((blocked_by, retry_at), (Blocked::Rate, Some(11_000)));
            s.drop_lease_waiter(&format!("R{i}")).await.unwrap();
        }
    }
    // A caller whose clock reading is older than the bucket's (it read the clock, then waited
    // for the lock) must not move the bucket back in time and get the refill twice.
    let fresh = std::collections::HashMap::from([(
        "search".to_string(),
        Limits { concurrency: None, rate: Some(Rate { count: 1, per: std::time::Duration::from_secs(1), burst: 2 }) },
    )]);
    let ask = |id: &str| LeaseRequest { resource: "search".into(), ..lease(id, 50, 0) };
    assert!(matches!(s.acquire_lease(&ask("S1"), &fresh, 20_000).await.unwrap(), LeaseAttempt::Granted(_)));
    assert!(matches!(s.acquire_lease(&ask("S2"), &fresh, 19_500).await.unwrap(), LeaseAttempt::Granted(_)));
    let third = s.acquire_lease(&ask("S3"), &fresh, 20_600).await.unwrap();
    assert!(
        matches!(third, LeaseAttempt::Waiting { blocked_by: Blocked::Rate, .. }),
        "0.6 tokens at 20.6 s: {third:?}"
    );
}

#[tokio::test]
async fn a_limit_holds_when_nodes_race_for_a_resource() {
    let dir = tempfile::tempdir().unwrap();
    resource_race(std::sync::Arc::new(sqlite_store(&dir).await)).await;
    if let Some(db) = PgDatabase::create().await {
        let pg = std::sync::Arc::new(SqlStore::open(&StoreOptions::new(&db.url), 1).await.unwrap());
        resource_race(pg.clone()).await;
        pg.close().await;
        db.drop_it().await;
    }
}

async fn resource_race(store: std::sync::Arc<SqlStore>) {
    let l = limits(Some(2), None);
    let p = store.insert_project(&project("race"), &[], 1).await.unwrap();
    for i in 0..40 {
        store.insert_run(&NewRun { resources: vec!["openai".into()], ..new_run(&p, "t", i, 1) }).await.unwrap();
    }
    let mut handles = Vec::new();
    for n in 0..4 {
        let (s, l) = (store.clone(), l.clone());
        handles.push(tokio::spawn(async move {
            let mut ran = Vec::new();
            let mut idle = 0;
            while idle < 50 {
                let got = s.claim_resource_runs(&format!("node-{n}"), 1_000, 3, &[], &l).await.unwrap();
                if got.runs.is_empty() {
                    idle += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    continue;
                }
                idle = 0;
                let holders = s.resource_snapshot(1_000).await.unwrap().holds.len();
                assert!(holders <= 2, "{holders} holders of a resource limited to 2");
                for r in got.runs {
                    end_run(s.as_ref(), &r.id).await;
                    ran.push(r.id);
                }
            }
            ran
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!((total, all.len()), (40, 40), "every run ran, once");
}

/// Incidents are stored, found open or lately resolved, and written over only as they were read:
/// the engine's decisions (`engine::incidents`) lean on that.
async fn incident_rows_story(s: &dyn Store) {
    let a = incident(IncidentSource::Check, "trading/nightly", Severity::Warning, 1_000);
    assert!(s.insert_incident(&a).await.unwrap());
    let twin = incident(IncidentSource::Check, "trading/nightly", Severity::Critical, 1_100);
    assert!(!s.insert_incident(&twin).await.unwrap(), "one open incident per source and subject");
    let open = s.find_open_incident(IncidentSource::Check, "trading/nightly").await.unwrap().unwrap();
    assert_eq!(open, a);
    assert!(s.find_open_incident(IncidentSource::Check, "trading/other").await.unwrap().is_none());

    let critical = IncidentRecord { severity: Severity::Critical, updated_at: 2_000, ..open.clone() };
    assert!(s.replace_incident(&critical, &open).await.unwrap());
    let stale = IncidentRecord { reason: "stale".into(), ..open.clone() };
    assert!(!s.replace_incident(&stale, &open).await.unwrap(), "the incident changed since it was read");
    assert_eq!(s.get_incident(&a.id).await.unwrap().unwrap(), critical);
    s.ack_incident(&a.id, "ana", 2_100).await.unwrap();
    let unacked = IncidentRecord { reason: "before the ack".into(), ..critical.clone() };
    assert!(!s.replace_incident(&unacked, &critical).await.unwrap(), "an acknowledgement is a change too");

    let acked = s.get_incident(&a.id).await.unwrap().unwrap();
    let resolved =
        IncidentRecord { status: IncidentStatus::Resolved, resolved_at: Some(3_000), changes: 2, ..acked.clone() };
    assert!(s.replace_incident(&resolved, &acked).await.unwrap());
    assert!(s.find_open_incident(IncidentSource::Check, "trading/nightly").await.unwrap().is_none());
    assert_eq!(
        s.last_resolved_incident(IncidentSource::Check, "trading/nightly", 3_000).await.unwrap(),
        Some(resolved.clone())
    );
    assert!(s.last_resolved_incident(IncidentSource::Check, "trading/nightly", 3_001).await.unwrap().is_none());

    // Opening it again loses to an incident of its key opened meanwhile.
    let newer = incident(IncidentSource::Check, "trading/nightly", Severity::Warning, 4_000);
    assert!(s.insert_incident(&newer).await.unwrap());
    let again = IncidentRecord { status: IncidentStatus::Open, resolved_at: None, changes: 3, ..resolved.clone() };
    assert!(!s.replace_incident(&again, &resolved).await.unwrap());
    assert_eq!(s.find_open_incident(IncidentSource::Check, "trading/nightly").await.unwrap().unwrap().id, newer.id);
    s.set_incident_notified(&newer.id, true).await.unwrap();
    assert!(s.get_incident(&newer.id).await.unwrap().unwrap().notified);
}

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

/// Notifications are held for digests; maintenance windows end.
async fn outbox_story(s: &dyn Store) {
    // Held deliveries: claimed with the pending ones once due; throttle counting skips them.
    let n = NotificationRecord {
        id: agent_os_core::id::new_id(),
        project: Some("trading".into()),
        title: "t".into(),
        body: String::new(),
        severity: Severity::Info,
        tags: vec![],
        dedup_key: None,
        created_at: 10_000,
        source: Some(NotificationSource::Project),
        incident_id: None,
        suppressed: None,
        idempotency_key: None,
    };
    let planned = [
        PlannedDelivery { channel: "team".into(), held: None },
        PlannedDelivery { channel: "phone".into(), held: Some((20_000, HoldReason::QuietHours)) },
    ];
    let ds = s.insert_notification(&n, &planned).await.unwrap();
    // A notification sent with an idempotency key is found by it, and a second with the same
    // key of the same sender is refused by the database; another sender's is not.
    let keyed = |project: Option<&str>| NotificationRecord {
        id: agent_os_core::id::new_id(),
        project: project.map(str::to_string),
        idempotency_key: Some("send-1".into()),
        ..n.clone()
    };
    assert!(s.find_notification_by_key(Some("trading"), "send-1").await.unwrap().is_none());
    let first = keyed(Some("trading"));
    s.insert_notification(&first, &[]).await.unwrap();
    assert_eq!(s.find_notification_by_key(Some("trading"), "send-1").await.unwrap().map(|f| f.id), Some(first.id));
    assert!(s.insert_notification(&keyed(Some("trading")), &[]).await.is_err());
    s.insert_notification(&keyed(None), &[]).await.unwrap();
    assert!(s.insert_notification(&keyed(None), &[]).await.is_err(), "the admin's keys are one sender's too");
    assert_eq!((ds[1].status.as_str(), ds[1].next_at, ds[1].held), ("held", 20_000, Some(HoldReason::QuietHours)));
    assert_eq!(s.channel_sends_since("team", 9_000).await.unwrap(), (1, Some(10_000)));
    assert_eq!(s.channel_sends_since("phone", 9_000).await.unwrap().0, 0, "held ones do not count");
    let now = s.claim_deliveries(10_000, 70_000, 10).await.unwrap();
    assert_eq!(now.iter().map(|d| d.channel.as_str()).collect::<Vec<_>>(), ["team"]);
    assert_eq!(s.next_delivery_due(10_000).await.unwrap(), Some(20_000), "the held one; the claimed one is in flight");
    assert_eq!(s.next_delivery_due(75_000).await.unwrap(), Some(10_000), "a claim that ran out is due again");
    let later = s.claim_deliveries(20_000, 80_000, 10).await.unwrap();
    assert_eq!(later.iter().map(|d| (d.channel.as_str(), d.status.as_str())).collect::<Vec<_>>(), [("phone", "held")]);
    let stored = s.get_notification(&n.id).await.unwrap().unwrap();
    assert_eq!(stored.source, Some(NotificationSource::Project));

    // Maintenance windows.
    let m = MaintenanceRecord {
        id: agent_os_core::id::new_id(),
        project: Some("trading".into()),
        starts_at: 1_000,
        ends_at: 100_000,
        reason: Some("upgrade".into()),
        created_at: 1_000,
    };
    s.insert_maintenance(&m).await.unwrap();
    assert_eq!(s.list_maintenance(50_000).await.unwrap(), vec![m.clone()]);
    let ended = s.end_maintenance(&m.id, 60_000).await.unwrap().unwrap();
    assert_eq!(ended.ends_at, 60_000);
    assert!(s.list_maintenance(60_000).await.unwrap().is_empty());
    assert!(s.end_maintenance("nope", 1).await.unwrap().is_none());
}

#[tokio::test]
async fn incidents_and_the_outbox_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_store(&dir).await;
    incident_rows_story(&sqlite).await;
    outbox_story(&sqlite).await;
    if let Some(db) = PgDatabase::create().await {
        {
            let store = SqlStore::open(&StoreOptions::new(&db.url), 1_000).await.expect("open postgres");
            incident_rows_story(&store).await;
            outbox_story(&store).await;
            store.close().await;
        }
        db.drop_it().await;
    }
}

/// Binds each value of a closed set and reads it back through the database: the same text
/// goes in and comes out, as the set's own type and as plain text.
async fn round_trip<T>(pool: &sqlx::AnyPool, all: &[T])
where
    T: Copy + std::fmt::Debug + PartialEq + std::fmt::Display + sqlx::Type<sqlx::Any>,
    T: for<'q> sqlx::Encode<'q, sqlx::Any> + for<'r> sqlx::Decode<'r, sqlx::Any> + Send + 'static,
{
    use sqlx::Row;
    for &value in all {
        let row = sqlx::query("SELECT CAST($1 AS TEXT), CAST($1 AS TEXT)").bind(value).fetch_one(pool).await.unwrap();
        assert_eq!(row.try_get::<T, _>(0).unwrap(), value);
        assert_eq!(row.try_get::<String, _>(1).unwrap(), value.to_string());
    }
}

/// Every closed set a record holds is stored as its text and read back as itself; a row that
/// holds a text no value has (written by hand, or by a newer version) is an error naming it,
/// and so is an HTTP project without its signing secret.
async fn typed_columns_story(s: &dyn Store, pool: &sqlx::AnyPool) {
    use agent_os_core::{alerting, budget, check, cost, health, manifest, resource, run, token, workflow};
    round_trip(pool, run::RunStatus::ALL).await;
    round_trip(pool, run::LogStream::ALL).await;
    round_trip(pool, check::CheckState::ALL).await;
    round_trip(pool, check::CheckKind::ALL).await;
    let pings: Vec<check::PingKind> =
        [check::PingKind::Success, check::PingKind::Start, check::PingKind::Fail, check::PingKind::Log]
            .into_iter()
            .chain((0..=255).map(check::PingKind::Exit))
            .collect();
    round_trip(pool, &pings).await;
    round_trip(pool, alerting::Severity::ALL).await;
    round_trip(pool, alerting::IncidentSource::ALL).await;
    round_trip(pool, alerting::NotificationSource::ALL).await;
    round_trip(pool, alerting::IncidentStatus::ALL).await;
    round_trip(pool, alerting::DeliveryStatus::ALL).await;
    round_trip(pool, alerting::HoldReason::ALL).await;
    round_trip(pool, budget::Period::ALL).await;
    round_trip(pool, budget::OnExceed::ALL).await;
    round_trip(pool, budget::BudgetSource::ALL).await;
    round_trip(pool, cost::CostSource::ALL).await;
    round_trip(pool, health::HealthState::ALL).await;
    round_trip(pool, manifest::ManagedBy::ALL).await;
    round_trip(pool, manifest::ScheduleSource::ALL).await;
    round_trip(pool, manifest::ProbeKind::ALL).await;
    round_trip(pool, manifest::ProbeStatus::ALL).await;
    round_trip(pool, manifest::TransportKind::ALL).await;
    round_trip(pool, resource::HolderKind::ALL).await;
    round_trip(pool, token::TokenKind::ALL).await;
    round_trip(pool, token::LoginVia::ALL).await;
    round_trip(pool, workflow::WorkflowRunStatus::ALL).await;
    round_trip(pool, workflow::StepStatus::ALL).await;
    round_trip(pool, workflow::TriggerKind::ALL).await;

    // Both transports survive the trip through their columns.
    let local = s.insert_project(&project("local"), &[], 1_000).await.unwrap();
    assert_eq!(local.transport, ProjectTransport::Command { root: "/home/u/local".into() });
    let hosted = NewProject {
        transport: ProjectTransport::Http {
            url: "https://hosted.example.com/agent-os".into(),
            secret: "whsec_c2VjcmV0".into(),
            root: None,
        },
        ..project("hosted")
    };
    let stored = s.insert_project(&hosted, &[], 1_000).await.unwrap();
    assert_eq!(stored.transport, hosted.transport);
    assert_eq!(s.get_project("hosted").await.unwrap().unwrap().transport, hosted.transport);

    // A status no version of Agent OS writes is refused where the row is read, by name.
    let run = s.insert_run(&new_run(&local, "t", 2_000, 1)).await.unwrap();
    sqlx::query("UPDATE runs SET status = 'done' WHERE id = $1").bind(&run.id).execute(pool).await.unwrap();
    let e = s.get_run(&run.id).await.unwrap_err().to_string();
    assert!(e.contains(r#"unknown run status "done""#), "{e}");
    assert!(e.contains("queued, running, succeeded, failed, timed_out or cancelled"), "{e}");
    assert!(s.list_runs(&RunFilter { limit: 10, ..Default::default() }).await.is_err(), "not skipped, not a panic");

    // An HTTP project without its signing secret cannot be read as one.
    sqlx::query("UPDATE projects SET signing_secret = NULL WHERE name = 'hosted'").execute(pool).await.unwrap();
    let e = s.get_project("hosted").await.unwrap_err().to_string();
    assert!(e.contains("an HTTP project is stored without its signing secret"), "{e}");
}

#[tokio::test]
async fn typed_columns_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir.path().join("agent-os.db"));
    let store = SqlStore::open(&StoreOptions::new(url.clone()), 1_000).await.expect("open sqlite");
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    typed_columns_story(&store, &pool).await;
    pool.close().await;
    store.close().await;
    if let Some(db) = PgDatabase::create().await {
        {
            let store = SqlStore::open(&StoreOptions::new(&db.url), 1_000).await.expect("open postgres");
            let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
            typed_columns_story(&store, &pool).await;
            pool.close().await;
            store.close().await;
        }
        db.drop_it().await;
    }
}

fn worker_project(name: &str) -> NewProject {
    NewProject { transport: ProjectTransport::Worker, ..project(name) }
}

fn token(id: &str, kind: TokenKind) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        kind,
        name: String::new(),
        project_id: None,
        run_id: None,
        hash: format!("hash-{id}"),
        created_at: 1_000,
        expires_at: None,
        revoked_at: None,
    }
}

fn worker(id: &str, token_id: &str, name: &str, projects: &[&str], now: i64) -> WorkerRecord {
    WorkerRecord {
        id: id.into(),
        token_id: token_id.into(),
        name: name.into(),
        hostname: format!("{name}.local"),
        version: "0.9.0".into(),
        capacity: 4,
        projects: projects.iter().map(|p| p.to_string()).collect(),
        first_seen: now,
        last_contact: now,
    }
}

async fn worker_story(s: &dyn Store) {
    // A worker token names its projects, which need not exist yet.
    s.insert_worker_token(
        &token("wt", TokenKind::Worker),
        &["image-workflow".into(), "cortana".into(), "cortana".into()],
    )
    .await
    .unwrap();
    assert_eq!(s.token_projects("wt").await.unwrap(), ["cortana", "image-workflow"]);
    assert!(s.token_projects("nope").await.unwrap().is_empty());
    let kinds: Vec<TokenKind> = s.list_tokens().await.unwrap().into_iter().map(|t| t.kind).collect();
    assert!(kinds.contains(&TokenKind::Worker), "worker tokens are listed: {kinds:?}");

    // A worker is keyed by (token, name): saying hello again keeps its id and first sighting.
    let w = s.upsert_worker(&worker("w1", "wt", "mac-mini", &["cortana"], 1_000)).await.unwrap();
    assert_eq!(w.projects, ["cortana"]);
    let again = s
        .upsert_worker(&WorkerRecord {
            capacity: 2,
            ..worker("w1-new", "wt", "mac-mini", &["cortana", "image-workflow"], 1_500)
        })
        .await
        .unwrap();
    assert_eq!((again.id.as_str(), again.first_seen, again.last_contact), ("w1", 1_000, 1_500));
    assert_eq!((again.capacity, again.projects.len()), (2, 2));
    s.upsert_worker(&worker("w2", "wt", "laptop", &["cortana"], 1_500)).await.unwrap();
    let names: Vec<String> = s.list_workers().await.unwrap().into_iter().map(|w| w.name).collect();
    assert_eq!(names, ["laptop", "mac-mini"]);

    // Worker projects are stored without a root or URL and read back as such.
    let cortana = s.insert_project(&worker_project("cortana"), &[], 1_000).await.unwrap();
    assert_eq!(cortana.transport, ProjectTransport::Worker);
    assert_eq!(s.get_project("cortana").await.unwrap().unwrap().transport, ProjectTransport::Worker);
    let images = s.insert_project(&worker_project("image-workflow"), &[], 1_000).await.unwrap();
    let local = s.insert_project(&project("trading"), &[], 1_000).await.unwrap();

    // The server's claim and wake-up leave worker projects' runs alone; a worker claims only
    // runs of the projects it asks for.
    let mine = s.insert_run(&new_run(&cortana, "daily_update", 2_000, 2)).await.unwrap();
    let theirs = s.insert_run(&new_run(&images, "backup", 2_000, 1)).await.unwrap();
    let here = s.insert_run(&new_run(&local, "scan", 2_500, 1)).await.unwrap();
    assert_eq!(s.next_due().await.unwrap(), Some(2_500), "the dispatcher does not wake for worker runs");
    let claimed = s.claim_runs("node-a", 3_000, 10, &[]).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [here.id.as_str()]);
    let limits = limits(Some(1), None);
    let cortana_only = ["cortana".to_string()];
    let got = s
        .claim_worker_runs("w1", "node-a", &cortana_only, 3_000, 10, &[token("run-1", TokenKind::Run)], &limits)
        .await
        .unwrap();
    assert_eq!(got.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [mine.id.as_str()]);
    let t = s.find_token("hash-run-1").await.unwrap().expect("the claim stored the run token");
    assert_eq!(t.run_id.as_deref(), Some(mine.id.as_str()));
    assert!(s.claim_worker_runs("w2", "node-a", &cortana_only, 3_000, 10, &[], &limits).await.unwrap().is_empty());
    assert!(s.claim_worker_runs("w2", "node-a", &[], 3_000, 10, &[], &limits).await.unwrap().is_empty());
    assert_eq!(s.get_run(&theirs.id).await.unwrap().unwrap().status, RunStatus::Queued);

    // Recovery sees only the nodes' attempts; the workers' are listed apart, with their worker.
    let nodes: Vec<String> = s.running_attempts().await.unwrap().into_iter().map(|(r, _)| r.id).collect();
    assert_eq!(nodes, [here.id.as_str()]);
    let on_workers = s.running_worker_attempts().await.unwrap();
    assert_eq!(on_workers.len(), 1);
    assert_eq!((on_workers[0].1.worker_id.as_deref(), on_workers[0].1.seen_at), (Some("w1"), Some(3_000)));
    s.touch_worker("w1", &[(mine.id.clone(), 1), ("other".into(), 1)], 4_000).await.unwrap();
    s.touch_worker("w2", &[(mine.id.clone(), 1)], 4_100).await.unwrap();
    let a = s.get_attempt(&mine.id, 1).await.unwrap().unwrap();
    assert_eq!(a.seen_at, Some(4_000), "only its own worker marks an attempt seen");
    assert_eq!(s.get_worker("w1").await.unwrap().unwrap().last_contact, 4_000);
    s.touch_worker("w1", &[], 3_900).await.unwrap();
    assert_eq!(s.get_worker("w1").await.unwrap().unwrap().last_contact, 4_000, "contact never goes back");
    assert!(s.get_attempt(&mine.id, 2).await.unwrap().is_none());

    // A worker's log is stored once per sequence number, within the cap.
    let chunk = |seq: i64, data: &str| WorkerLogChunk { seq, stream: LogStream::Stdout, at: 4_000, data: data.into() };
    let log = s.append_worker_log(&mine.id, 1, "w1", &[chunk(1, "one\n"), chunk(2, "two\n")], 1_000_000, 4_000).await;
    assert_eq!(log.unwrap(), WorkerLog::Stored { acked_seq: 2 });
    let repeat = s
        .append_worker_log(
            &mine.id,
            1,
            "w1",
            &[chunk(1, "one\n"), chunk(2, "two\n"), chunk(3, "three\n")],
            1_000_000,
            4_100,
        )
        .await
        .unwrap();
    assert_eq!(repeat, WorkerLog::Stored { acked_seq: 3 });
    let stored: Vec<String> = s.read_log(&mine.id, 0, 100).await.unwrap().into_iter().map(|c| c.data).collect();
    assert_eq!(stored, ["one\n", "two\n", "three\n"], "a repeat stores nothing twice");
    assert_eq!(s.get_attempt(&mine.id, 1).await.unwrap().unwrap().seen_at, Some(4_100));
    let nothing = s.append_worker_log(&mine.id, 1, "w1", &[chunk(2, "two\n")], 1_000_000, 4_200).await.unwrap();
    assert_eq!(nothing, WorkerLog::Stored { acked_seq: 3 });
    let big = "x".repeat(40);
    s.append_worker_log(&mine.id, 1, "w1", &[chunk(4, &big)], 32, 4_300).await.unwrap();
    let run = s.get_run(&mine.id).await.unwrap().unwrap();
    assert!(run.log_bytes <= 32 && run.log_dropped > 0, "the cap holds: {run:?}");
    let wrong = s.append_worker_log(&mine.id, 1, "w2", &[chunk(5, "x")], 1_000_000, 4_400).await;
    assert!(matches!(wrong, Err(StoreError::NotFound(_))), "another worker's attempt: {wrong:?}");
    let missing = s.append_worker_log(&mine.id, 9, "w1", &[chunk(1, "x")], 1_000_000, 4_400).await;
    assert!(matches!(missing, Err(StoreError::NotFound(_))));

    // Once ended, the attempt takes no more log, and says where its mark stands.
    s.finish_attempt(&FinishAttempt {
        run_id: mine.id.clone(),
        attempt: 1,
        attempt_status: RunStatus::Failed,
        retry_at: Some(5_000),
        exit_code: None,
        error: Some("lost".into()),
        outputs: None,
        now: 4_500,
        extra_attempt: false,
    })
    .await
    .unwrap();
    let ended = s.append_worker_log(&mine.id, 1, "w1", &[chunk(5, "late\n")], 1_000_000, 4_600).await.unwrap();
    assert_eq!(ended, WorkerLog::Ended { acked_seq: 4 });
    assert!(s.running_worker_attempts().await.unwrap().is_empty());

    // A run that needs a resource is claimed by its worker through the resource line, and
    // never by the server's.
    let mut gpu = new_run(&images, "render", 6_000, 1);
    gpu.resources = vec!["openai".into()];
    let gpu = s.insert_run(&gpu).await.unwrap();
    assert!(s.claim_resource_runs("node-a", 6_000, 10, &[], &limits).await.unwrap().runs.is_empty());
    let images_only = ["image-workflow".to_string()];
    let got = s.claim_worker_runs("w1", "node-a", &images_only, 6_000, 10, &[], &limits).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.contains(&gpu.id.as_str()) && ids.contains(&theirs.id.as_str()), "{ids:?}");
    let snapshot = s.resource_snapshot(6_000).await.unwrap();
    assert_eq!(snapshot.holds.iter().map(|h| h.holder.as_str()).collect::<Vec<_>>(), [gpu.id.as_str()]);
}

async fn worker_claim_race(store: std::sync::Arc<SqlStore>) {
    let p = store.insert_project(&worker_project("race-w"), &[], 1).await.unwrap();
    for i in 0..200 {
        store.insert_run(&new_run(&p, "t", i, 1)).await.unwrap();
    }
    let mut handles = Vec::new();
    for n in 0..4 {
        let s = store.clone();
        handles.push(tokio::spawn(async move {
            let (projects, me, none) = (["race-w".to_string()], format!("w{n}"), Default::default());
            let mut got = Vec::new();
            loop {
                let batch = s.claim_worker_runs(&me, "node", &projects, 1_000, 7, &[], &none).await.unwrap();
                if batch.is_empty() {
                    break got;
                }
                got.extend(batch.into_iter().map(|r| r.id));
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!((total, all.len()), (200, 200), "a run was handed to two workers");
}

#[tokio::test]
async fn workers_claim_their_projects_runs_and_store_their_logs_once() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = std::sync::Arc::new(sqlite_store(&dir).await);
    worker_story(&*sqlite).await;
    worker_claim_race(sqlite.clone()).await;
    if let Some(db) = PgDatabase::create().await {
        let pg = std::sync::Arc::new(SqlStore::open(&StoreOptions::new(&db.url), 1).await.unwrap());
        worker_story(&*pg).await;
        worker_claim_race(pg.clone()).await;
        pg.close().await;
        db.drop_it().await;
    }
}

fn run_token(n: usize, now: i64) -> TokenRecord {
    TokenRecord {
        id: agent_os_core::id::new_id(),
        kind: TokenKind::Run,
        name: "run token".into(),
        project_id: None,
        run_id: None,
        hash: format!("hash-{n}-{}", agent_os_core::id::new_id()),
        created_at: now,
        expires_at: None,
        revoked_at: None,
    }
}

/// Runs queued where a slot is free are claimed in the transaction that queues them, by the
/// claim's own rule; a pass's commit stores an attempt's end, queued runs and step rows all
/// together, or nothing when the end conflicts.
async fn claim_here_story(s: &dyn Store) {
    let now = 10_000;
    let p = s.insert_project(&project("here"), &[], now).await.unwrap();
    let mut remote = project("remote");
    remote.transport = ProjectTransport::Worker;
    let w = s.insert_project(&remote, &[], now).await.unwrap();
    let plain = new_run(&p, "t", now, 2);
    let keyed = NewRun { concurrency_key: Some("k".into()), ..new_run(&p, "t", now, 1) };
    let needs = NewRun { resources: vec!["openai".into()], ..new_run(&p, "t", now, 1) };
    let later = new_run(&p, "t", now + 60_000, 1);
    let worker = new_run(&w, "t", now, 1);
    let second = new_run(&p, "t", now, 1);
    let here = ClaimHere { node_id: "node-a".into(), now, tokens: vec![run_token(0, now), run_token(1, now)] };
    let all = [plain.clone(), keyed.clone(), needs.clone(), later.clone(), worker.clone(), second.clone()];
    let q = s.queue_runs(&all, Some(&here)).await.unwrap();
    let ids: Vec<&str> = q.claimed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, [plain.id.as_str(), second.id.as_str()], "only due, free, unkeyed runs of served projects");
    assert_eq!(q.runs.len(), 6);
    for r in &q.runs {
        let claimed = ids.contains(&r.id.as_str());
        assert_eq!(r.status, if claimed { RunStatus::Running } else { RunStatus::Queued }, "{}", r.id);
        assert_eq!((r.attempt, r.started_at), if claimed { (1, Some(now)) } else { (0, None) }, "{}", r.id);
        let attempts = s.list_attempts(&r.id).await.unwrap();
        assert_eq!(attempts.len(), usize::from(claimed), "{}", r.id);
    }
    let a = &s.list_attempts(&plain.id).await.unwrap()[0];
    assert_eq!((a.node_id.as_str(), a.status), ("node-a", RunStatus::Running));
    let token = s.find_token(&here.tokens[0].hash).await.unwrap().expect("the first claim's token");
    assert_eq!((token.run_id.as_deref(), token.project_id.as_deref()), (Some(plain.id.as_str()), Some(p.id.as_str())));
    // The dispatcher still finds the keyed run (the rest are not due, need a resource, or are
    // a worker's).
    let claimed = s.claim_runs("node-b", now, 10, &[]).await.unwrap();
    assert_eq!(claimed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [keyed.id.as_str()]);

    // A pass's commit: the end of plain's attempt, a new run, the step rows.
    let wf = WorkflowRunRecord {
        id: agent_os_core::id::new_id(),
        workflow: "w".into(),
        definition: "name: w\n".into(),
        status: agent_os_core::workflow::WorkflowRunStatus::Running,
        trigger: agent_os_core::workflow::TriggerKind::Manual,
        trigger_key: None,
        event: None,
        inputs: "{}".into(),
        outputs: None,
        error: None,
        concurrency_key: None,
        parent_run_id: None,
        parent_step: None,
        created_at: now,
        started_at: Some(now),
        finished_at: None,
        deadline_at: None,
    };
    s.insert_workflow_run(&wf).await.unwrap();
    let step = |id: &str, status: agent_os_core::workflow::StepStatus, run: &str| StepRecord {
        run_id: wf.id.clone(),
        step_id: id.into(),
        item: -1,
        status,
        attempt: 1,
        task_run_id: Some(run.into()),
        child_run_id: None,
        outputs: None,
        error: None,
        wake_at: None,
        started_at: Some(now),
        finished_at: None,
    };
    let finish = |run: &str, attempt: i64| FinishAttempt {
        run_id: run.into(),
        attempt,
        attempt_status: RunStatus::Succeeded,
        retry_at: None,
        exit_code: Some(0),
        error: None,
        outputs: Some("{\"ok\":true}".into()),
        now: now + 5,
        extra_attempt: false,
    };
    use agent_os_core::workflow::StepStatus;
    let next = new_run(&p, "t", now + 5, 1);
    let commit = StepCommit {
        finish: vec![finish(&plain.id, 1)],
        runs: vec![next.clone()],
        steps: vec![step("a", StepStatus::Succeeded, &plain.id), step("b", StepStatus::Running, &next.id)],
        claim: Some(ClaimHere { node_id: "node-a".into(), now: now + 5, tokens: vec![run_token(2, now)] }),
    };
    let done = s.commit_steps(&commit).await.unwrap();
    assert_eq!(done.finished.len(), 1);
    assert_eq!(
        (done.finished[0].status, done.finished[0].outputs.as_deref()),
        (RunStatus::Succeeded, Some("{\"ok\":true}"))
    );
    assert_eq!(done.queued.claimed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [next.id.as_str()]);
    let rows = s.workflow_steps(&wf.id).await.unwrap();
    assert_eq!(
        rows.iter().map(|r| (r.step_id.as_str(), r.status)).collect::<Vec<_>>(),
        [("a", StepStatus::Succeeded), ("b", StepStatus::Running)]
    );
    assert!(
        s.find_token(&here.tokens[0].hash).await.unwrap().unwrap().revoked_at.is_some(),
        "the ended attempt's token is revoked"
    );

    // The same end again conflicts, and nothing of that pass is stored.
    let again = new_run(&p, "t", now + 6, 1);
    let commit = StepCommit {
        finish: vec![finish(&second.id, 1), finish(&plain.id, 1)],
        runs: vec![again.clone()],
        steps: vec![step("c", StepStatus::Running, &again.id)],
        claim: None,
    };
    assert!(matches!(s.commit_steps(&commit).await, Err(StoreError::Conflict(_))));
    assert_eq!(s.get_run(&again.id).await.unwrap(), None, "the pass's run was not queued");
    assert_eq!(s.workflow_steps(&wf.id).await.unwrap().len(), 2, "the pass's step was not stored");
    assert_eq!(s.get_run(&second.id).await.unwrap().unwrap().status, RunStatus::Running, "the first end rolled back");
}

#[tokio::test]
async fn runs_are_claimed_where_they_are_queued_and_a_pass_commits_whole() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_store(&dir).await;
    claim_here_story(&sqlite).await;
    if let Some(db) = PgDatabase::create().await {
        {
            let store = SqlStore::open(&StoreOptions::new(&db.url), 1_000).await.expect("open postgres");
            claim_here_story(&store).await;
            store.close().await;
        }
        db.drop_it().await;
    }
}
