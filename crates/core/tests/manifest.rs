//! The manifest shape from the foundation issue, and the errors users get for bad ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::time::Duration;

use agent_os_core::manifest::{Command, Manifest, Transport};

const CORTANA: &str = r#"name: cortana                      # slug: [a-z0-9-], unique
description: Personal AI memory
env_file: .env                     # a path only; Agent OS never reads values from it
keys:                              # credentials the project uses, by name only
  OPENAI_API_KEY: { service: openai, key_name: cortana-openai }
tasks:
  daily_update:
    run: scripts/automation/run_daily_update.sh   # string: run by /bin/sh -c in the project dir
    timeout: 30m
    retries: 2                     # extra attempts after a failure, exponential backoff with jitter
  query_memories:
    run: [python3, scripts/core/query.py]         # list: argv, no shell
    timeout: 5m
status: { run: [python3, scripts/status.py], every: 5m }      # plugin get_status
cost:   { run: [python3, scripts/cost.py], every: 1h }         # plugin report_cost
schedules:                         # parsed and stored now; acted on by the scheduling issue
  - { task: daily_update, cron: "0 22 * * *", timezone: America/Los_Angeles, managed_by: launchd }
"#;

#[test]
fn accepts_the_documented_shape() {
    let m = Manifest::parse("agent-os.yaml", CORTANA).expect("valid manifest");
    assert_eq!(m.name, "cortana");
    assert_eq!(m.env_file.as_deref(), Some(".env"));
    assert_eq!(m.keys.len(), 1);
    assert_eq!(m.keys[0].variable, "OPENAI_API_KEY");
    assert_eq!(m.keys[0].key_name.as_deref(), Some("cortana-openai"));
    let daily = m.task("daily_update").unwrap();
    assert_eq!(daily.run, Some(Command::Shell("scripts/automation/run_daily_update.sh".into())));
    assert_eq!(daily.timeout, Some(Duration::from_secs(1800)));
    assert_eq!(daily.retries, 2);
    let query = m.task("query_memories").unwrap();
    assert_eq!(query.run, Some(Command::Argv(vec!["python3".into(), "scripts/core/query.py".into()])));
    assert_eq!(m.status.as_ref().unwrap().every, Duration::from_secs(300));
    assert_eq!(m.cost.as_ref().unwrap().every, Duration::from_secs(3600));
    assert_eq!(m.schedules.len(), 1);
    assert_eq!(m.schedules[0].managed_by, agent_os_core::manifest::ManagedBy::Launchd);
    assert_eq!(m.schedules[0].timezone.name(), "America/Los_Angeles");
    assert_eq!(m.transport, Transport::Command);
}

#[test]
fn accepts_a_hosted_plugin() {
    let text = "name: trading\nplugin: { url: https://trading.example.com/agent-os/ }\ntasks:\n  rebalance: { timeout: 2m }\nstatus: { every: 1m }\n";
    let m = Manifest::parse("agent-os.yaml", text).unwrap();
    assert_eq!(m.transport, Transport::Http { url: "https://trading.example.com/agent-os".into() });
    assert_eq!(m.task("rebalance").unwrap().run, None);
}

fn error_of(text: &str) -> String {
    Manifest::parse("agent-os.yaml", text).expect_err("should be refused").to_string()
}

#[test]
fn bad_duration_names_place_path_and_fix() {
    let text = "name: cortana\ntasks:\n  daily:\n    run: a.sh\n    timeout: 30\n";
    let e = error_of(text);
    assert!(e.starts_with("agent-os.yaml:5:14: tasks.daily.timeout: "), "{e}");
    assert!(e.contains("needs a unit"), "{e}");
    assert!(e.contains("hint: write e.g. 30s"), "{e}");
}

#[test]
fn unknown_field_is_refused_with_its_place() {
    let text = "name: cortana\ntasks:\n  daily:\n    run: a.sh\n    timout: 5m\n";
    let e = error_of(text);
    assert!(e.starts_with("agent-os.yaml:5:"), "{e}");
    assert!(e.contains("tasks.daily.timout: unknown field `timout`"), "{e}");
    assert!(e.contains("hint: did you mean `timeout`?"), "{e}");
}

#[test]
fn schedule_naming_an_unknown_task_suggests_the_right_one() {
    let text = "name: cortana\ntasks:\n  daily_update: { run: a.sh }\nschedules:\n  - task: daily_updte\n    cron: \"0 22 * * *\"\n";
    let e = error_of(text);
    assert!(e.starts_with("agent-os.yaml:5:"), "{e}");
    assert!(e.contains("schedules[0].task: unknown task \"daily_updte\""), "{e}");
    assert!(e.contains("did you mean \"daily_update\"?"), "{e}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "name: Cortana\nenv_file: ../shared/.env\ntasks:\n  t: {}\nschedules:\n  - { task: t, cron: \"0 22 * *\", timezone: \"+02:00\", managed_by: anacron }\n";
    let e = Manifest::parse("m.yaml", text).unwrap_err();
    let text = e.to_string();
    assert_eq!(e.0.len(), 6, "{text}");
    for needle in ["name:", "env_file:", "task has no `run`", "has 4 fields", "fixed offset", "unknown scheduler"] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn run_in_an_http_plugin_is_refused() {
    let e = error_of("name: t\nplugin: { url: https://x.example.com }\ntasks:\n  a: { run: x.sh }\n");
    assert!(e.contains("tasks.a.run"), "{e}");
    assert!(e.contains("HTTP plugin"), "{e}");
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for text in
        ["", ":", "- a\n- b", "name: [1, 2]", "name: x\ntasks: 5", "\u{0}", "name: x\ntasks:\n  a:\n    run: []\n"]
    {
        assert!(Manifest::parse("m.yaml", text).is_err(), "{text:?}");
    }
}

#[test]
fn a_run_of_the_wrong_type_says_what_it_may_be() {
    let e = error_of("name: cortana\ntasks:\n  daily:\n    run: 5\n");
    assert!(e.starts_with("agent-os.yaml:4:10: tasks.daily.run: `run` must be a command line"), "{e}");
}

#[test]
fn argv_words_may_be_numbers_or_booleans() {
    let m = Manifest::parse("m.yaml", "name: t\ntasks:\n  a: { run: [true] }\n  b: { run: [sleep, 5] }\n").unwrap();
    assert_eq!(m.task("a").unwrap().run, Some(Command::Argv(vec!["true".into()])));
    assert_eq!(m.task("b").unwrap().run, Some(Command::Argv(vec!["sleep".into(), "5".into()])));
}

#[test]
fn schedules_are_checked_with_the_real_cron_parser_and_zone_database() {
    let e = error_of(
        "name: t\ntasks:\n  a: { run: x }\nschedules:\n  - { task: a, cron: \"0 25 * * *\", timezone: Mars/Olympus }\n",
    );
    assert!(e.contains("schedules[0].cron: hour field: bad token \"25\": 25 is out of range 0-23"), "{e}");
    assert!(e.contains("schedules[0].timezone: unknown time zone \"Mars/Olympus\""), "{e}");
}

#[test]
fn check_timing_rules_are_read_and_checked() {
    let text = "name: t\nchecks:\n  - { slug: backup, every: 1h, start_grace: 5m, min_duration: 30s, max_duration: 20m }\n  - { slug: plain, every: 1h }\n";
    let m = Manifest::parse("agent-os.yaml", text).unwrap();
    assert_eq!(m.checks[0].start_grace, Some(Duration::from_secs(300)));
    assert_eq!(m.checks[0].min_duration, Some(Duration::from_secs(30)));
    assert_eq!(m.checks[0].max_duration, Some(Duration::from_secs(1200)));
    assert_eq!((m.checks[1].start_grace, m.checks[1].min_duration, m.checks[1].max_duration), (None, None, None));

    let e = error_of("name: t\nchecks:\n  - { slug: backup, every: 1h, min_duration: 1h, max_duration: 10m }\n");
    assert!(e.contains("checks[0].min_duration: min_duration must be shorter than max_duration"), "{e}");
    assert!(e.contains("hint: lower min_duration"), "{e}");
    let e = error_of("name: t\nchecks:\n  - { slug: backup, every: 1h, start_grace: 5 }\n");
    assert!(e.contains("checks[0].start_grace"), "{e}");
    let m = Manifest::parse(
        "m.yaml",
        "name: t\nchecks:\n  - { slug: b, every: 1h, max_pings: { count: 2, within: 10m } }\n",
    )
    .unwrap();
    let max = m.checks[0].max_pings.unwrap();
    assert_eq!((max.count, max.within), (2, Duration::from_secs(600)));
    let e = error_of("name: t\nchecks:\n  - { slug: b, every: 1h, max_pings: { count: 0, within: 10m } }\n");
    assert!(e.contains("checks[0].max_pings.count: count must be 1 or more"), "{e}");
    let e = error_of("name: t\nchecks:\n  - { slug: b, every: 1h, max_pings: { count: 1 } }\n");
    assert!(e.contains("checks[0].max_pings.within: the window is missing"), "{e}");
    let e = error_of("name: t\nchecks:\n  - { slug: backup, every: 1h, max_duration: 0s }\n");
    assert!(e.contains("checks[0].max_duration: duration must be more than zero"), "{e}");
}

#[test]
fn check_tags_are_validated_and_kept_in_order() {
    let text = "name: t\ntasks:\n  backup: { run: ./b.sh }\nschedules:\n  - { task: backup, cron: \"0 3 * * *\", managed_by: cron, tags: [nightly] }\nchecks:\n  - { slug: report, every: 1h, tags: [trading, nightly, trading] }\n  - { slug: plain, every: 1h }\n";
    let m = Manifest::parse("agent-os.yaml", text).unwrap();
    let tags = |slug: &str| m.checks.iter().find(|c| c.slug == slug).unwrap().tags.clone();
    assert_eq!(tags("backup"), ["nightly"], "the check of a schedule kept elsewhere carries its tags");
    assert_eq!(tags("report"), ["trading", "nightly"], "a repeated tag is kept once, in the order written");
    assert!(tags("plain").is_empty());

    let e = error_of("name: t\nchecks:\n  - { slug: b, every: 1h, tags: [Nightly] }\n");
    assert!(e.contains("checks[0].tags[0]: tag \"Nightly\" contains 'N'"), "{e}");
    assert!(e.contains("hint: e.g. tags: [nightly, trading]"), "{e}");
    let e = error_of("name: t\nchecks:\n  - { slug: b, every: 1h, tags: [ok, \"a b\"] }\n");
    assert!(e.contains("checks[0].tags[1]"), "{e}");
    let long = "x".repeat(33);
    let e = error_of(&format!("name: t\nchecks:\n  - {{ slug: b, every: 1h, tags: [{long}] }}\n"));
    assert!(e.contains("at most 32"), "{e}");
    let many: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
    let e = error_of(&format!("name: t\nchecks:\n  - {{ slug: b, every: 1h, tags: [{}] }}\n", many.join(", ")));
    assert!(e.contains("checks[0].tags: a check may carry at most 10 tags, got 11"), "{e}");
    let e = error_of(
        "name: t\ntasks:\n  b: { run: ./b.sh }\nschedules:\n  - { task: b, cron: \"0 3 * * *\", tags: [nightly] }\n",
    );
    assert!(e.contains("schedules[0].tags: tags label the check of a schedule a project keeps elsewhere"), "{e}");
}

#[test]
fn check_depends_on_names_checks_here_or_in_other_projects() {
    let text = "name: t\ntasks:\n  sync: { run: s.sh }\nschedules:\n  - { task: sync, cron: \"0 * * * *\", managed_by: cron }\nchecks:\n  - { slug: db, every: 1h }\n  - { slug: report, every: 1h, depends_on: [db, sync, t/db2, vendor/feed] }\n  - { slug: db2, every: 1h }\n";
    let m = Manifest::parse("agent-os.yaml", text).unwrap();
    let report = m.checks.iter().find(|c| c.slug == "report").unwrap();
    // A schedule's check is a check like the others; the project's own name is dropped.
    assert_eq!(report.depends_on, ["db", "sync", "db2", "vendor/feed"]);
    assert!(m.checks.iter().find(|c| c.slug == "db").unwrap().depends_on.is_empty());

    let e =
        error_of("name: t\nchecks:\n  - { slug: db, every: 1h }\n  - { slug: report, every: 1h, depends_on: [dbb] }\n");
    assert!(e.starts_with("agent-os.yaml:4:"), "{e}");
    assert!(e.contains("checks[1].depends_on[0]: unknown check \"dbb\""), "{e}");
    assert!(e.contains("did you mean \"db\"?"), "{e}");
    let e = error_of("name: t\nchecks:\n  - { slug: db, every: 1h, depends_on: [db] }\n");
    assert!(e.contains("checks[0].depends_on[0]: a check cannot depend on itself"), "{e}");
    let e = error_of("name: t\nchecks:\n  - { slug: db, every: 1h, depends_on: [t/db] }\n");
    assert!(e.contains("a check cannot depend on itself"), "{e}");
    let e = error_of("name: t\nchecks:\n  - { slug: db, every: 1h, depends_on: [Other/x] }\n");
    assert!(e.contains("checks[0].depends_on[0]: "), "{e}");
    let e = error_of("name: t\nchecks:\n  - { slug: a, every: 1h }\n  - { slug: db, every: 1h, depends_on: [a, a] }\n");
    assert!(e.contains("checks[1].depends_on[1]: \"a\" is named twice"), "{e}");
}
