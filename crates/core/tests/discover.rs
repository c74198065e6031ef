//! Schedule discovery against realistic files of every source it reads, under
//! `tests/fixtures/discover/`: each finding's line, command, cron, zone or reason, exactly. Then
//! property tests: garbage and mangled fixtures never panic, and every cron produced parses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use agent_os_core::cron::Cron;
use agent_os_core::discover::{
    CRONTAB_L, Finding, Outcome, discover_crontab, discover_file, discover_github, discover_launchd, kind_of,
};
use proptest::prelude::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/discover");

/// Every fixture, by its path under the fixture directory (the path picks the reader).
const FILES: [&str; 23] = [
    "crontab.txt",
    "crontab-zones",
    "etc/crontab",
    "cron.d/certbot",
    "cron.d/image-workflow",
    "launchd/com.example.cortana.daily.plist",
    "launchd/com.example.cortana.weekdays.plist",
    "launchd/com.example.backup.plist",
    "launchd/com.example.sync.plist",
    "launchd/com.example.timeout.plist",
    "launchd/Info.plist",
    "systemd/image-backup.timer",
    "systemd/reports.timer",
    "systemd/poll.timer",
    "systemd/edge-cases.timer",
    "systemd/jitter.timer",
    "railway/trading/railway.json",
    "railway/reports/railway.toml",
    "railway/web/railway.json",
    ".github/workflows/nightly.yml",
    ".github/workflows/digest.yaml",
    ".github/workflows/stale.yml",
    ".github/workflows/ci.yml",
];

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{path}")).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

fn found(path: &str) -> Vec<Finding> {
    discover_file(path, &read(path))
}

/// (line, command, cron, zone) for a schedule; (line, command, "!", reason) for a refusal.
type Row<'a> = (u64, &'a str, &'a str, &'a str);

fn rows(findings: &[Finding]) -> Vec<(u64, String, String, String)> {
    findings
        .iter()
        .map(|f| match &f.outcome {
            Outcome::Schedule { cron, timezone } => (f.line, f.command.clone(), cron.clone(), timezone.clone()),
            Outcome::Untranslatable { reason } => (f.line, f.command.clone(), "!".to_string(), reason.clone()),
        })
        .collect()
}

fn expect(path: &str, managed_by: &str, expected: &[Row<'_>]) {
    let findings = found(path);
    for f in &findings {
        assert_eq!(f.source, path);
        assert_eq!(f.managed_by.as_str(), managed_by, "{path}:{}", f.line);
    }
    let want: Vec<(u64, String, String, String)> =
        expected.iter().map(|(l, c, x, z)| (*l, c.to_string(), x.to_string(), z.to_string())).collect();
    assert_eq!(rows(&findings), want, "{path}");
}

#[test]
fn user_crontab_entries_aliases_reboot_percent_and_bad_fields() {
    expect(
        "crontab.txt",
        "cron",
        &[
            (
                7,
                r#"cd "$HOME/projects/image-workflow" && ./scripts/backup.sh >> "$HOME/Library/Logs/image-workflow-backup.log" 2>&1"#,
                "30 3 * * *",
                "local",
            ),
            (
                10,
                r#"mv "$HOME/Library/Logs/process.log" "$HOME/Library/Logs/process-$(date +%Y%m).log""#,
                "0 0 1 * *",
                "local",
            ),
            (11, "$HOME/projects/image-workflow/scripts/status.sh --quiet", "0 0 * * *", "local"),
            (
                12,
                "$HOME/projects/image-workflow/scripts/process_batch.sh --resume",
                "!",
                "runs at boot, not on a schedule",
            ),
            (13, "$HOME/projects/image-workflow/scripts/process_batch.sh --inbox", "*/20 9-18 * * mon-fri", "local"),
            (14, r#"mail -s "batches done" me@example.com"#, "15 22 * * 1-5", "local"),
            (
                15,
                "$HOME/projects/image-workflow/scripts/backup.sh --verify",
                "!",
                r#"cron expression "61 4 * * *": minute field: bad token "61": 61 is out of range 0-59"#,
            ),
            (
                16,
                "$HOME/projects/image-workflow/scripts/report.sh",
                "!",
                r#"cron expression "0 12 L * *" uses L or #, which cron does not read as Agent OS does"#,
            ),
        ],
    );
}

#[test]
fn cron_tz_sets_the_zone_below_it_and_a_bare_tz_is_refused() {
    expect(
        "crontab-zones",
        "cron",
        &[
            (4, "/srv/studio/bin/sync --site berlin", "0 7 * * 1-5", "Europe/Berlin"),
            (6, "/srv/studio/bin/sync --site nyc", "0 7 * * 1-5", "America/New_York"),
            (
                8,
                "/srv/studio/bin/sync --site mars",
                "!",
                r#"unknown time zone "Mars/Olympus_Mons"; use an IANA name such as America/Los_Angeles, Europe/Berlin or UTC"#,
            ),
            (10, "/srv/studio/bin/cleanup", "45 23 * * *", "local"),
            (
                12,
                "/srv/studio/bin/sync --site tokyo",
                "!",
                "TZ=Asia/Tokyo is set above it: cronie and Debian's cron fire it on the machine's clock and only pass TZ to the command, while systemd-cron fires it in Asia/Tokyo; write CRON_TZ=Asia/Tokyo (or remove TZ) to say which",
            ),
        ],
    );
}

#[test]
fn system_crontabs_have_a_user_field() {
    expect(
        "etc/crontab",
        "cron",
        &[
            (19, "cd / && run-parts --report /etc/cron.hourly", "17 * * * *", "local"),
            (20, "test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }", "25 6 * * *", "local"),
            (
                21,
                "test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }",
                "47 6 * * 7",
                "local",
            ),
            (
                22,
                "test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.monthly; }",
                "52 6 1 * *",
                "local",
            ),
        ],
    );
    expect(
        "cron.d/certbot",
        "cron",
        &[(
            17,
            r"test -x /usr/bin/certbot -a \! -d /run/systemd/system && perl -e 'sleep int(rand(43200))' && certbot -q renew --no-random-sleep-on-renew",
            "0 */12 * * *",
            "local",
        )],
    );
    expect(
        "cron.d/image-workflow",
        "cron",
        &[
            (3, "/srv/image-workflow/scripts/backup.sh", "30 3 * * *", "local"),
            (4, "/srv/image-workflow/scripts/status.sh", "0 * * * *", "local"),
            (5, "", "!", "not a cron entry: expected 5 time fields, a user and a command"),
        ],
    );
}

#[test]
fn the_system_flag_and_crontab_l_pick_the_format() {
    let text = "MAILTO=me@example.com\n0 5 * * * root /usr/local/bin/rotate\n";
    let user = discover_crontab(CRONTAB_L, text, false);
    let system = discover_crontab(CRONTAB_L, text, true);
    assert_eq!(rows(&user), vec![(2, "root /usr/local/bin/rotate".into(), "0 5 * * *".into(), "local".into())]);
    assert_eq!(rows(&system), vec![(2, "/usr/local/bin/rotate".into(), "0 5 * * *".into(), "local".into())]);
    assert_eq!(discover_file(CRONTAB_L, text), user);
    // Windows line ends and a missing final newline change nothing.
    assert_eq!(discover_file(CRONTAB_L, "MAILTO=x\r\n0 5 * * * root /usr/local/bin/rotate"), user);
}

#[test]
fn launchd_calendar_intervals() {
    expect(
        "launchd/com.example.cortana.daily.plist",
        "launchd",
        &[(20, "/bin/sh /Users/you/projects/cortana/scripts/automation/run_daily_update.sh", "0 22 * * *", "local")],
    );
    // Five dicts that differ only in Weekday merge into one expression.
    expect(
        "launchd/com.example.cortana.weekdays.plist",
        "launchd",
        &[(16, "/usr/bin/python3 scripts/core/summarize.py --since 'yesterday 09:00'", "0 9 * * 1-5", "local")],
    );
    // Dicts that do not merge: one finding each, all on the key's line; Weekday 7 is Sunday;
    // Program with an entity, quoted for the shell.
    let cmd = "'/Users/you/bin/backup & verify.sh'";
    expect(
        "launchd/com.example.backup.plist",
        "launchd",
        &[
            (9, cmd, "15 2 * * *", "local"),
            (9, cmd, "30 12 * * 0", "local"),
            (9, cmd, "* * 1 * 1", "local"),
            (
                9,
                cmd,
                "!",
                r#"unknown key "Second" in StartCalendarInterval (launchd reads Minute, Hour, Day, Weekday and Month)"#,
            ),
            (36, cmd, "!", "runs every 3600 s (1h) counted from when launchd loaded it; not a wall-clock schedule"),
        ],
    );
}

#[test]
fn launchd_intervals_and_unreadable_lists_are_refused() {
    expect(
        "launchd/com.example.sync.plist",
        "launchd",
        &[(
            14,
            "/opt/homebrew/bin/rclone sync /Users/you/Pictures/export remote:export",
            "!",
            "runs every 900 s (15m) counted from when launchd loaded it; not a wall-clock schedule",
        )],
    );
    // A <real> where launchd wants an integer: the list reads, the calendar does not.
    expect(
        "launchd/com.example.timeout.plist",
        "launchd",
        &[(11, "/Users/you/bin/check", "!", "StartCalendarInterval Minute is not an integer")],
    );
    // Not a launchd job: no schedule keys; nothing to report.
    expect("launchd/Info.plist", "launchd", &[]);
    let binary = "bplist00\u{d1}\u{1}\u{2}_\u{10}\u{15}StartCalendarInterval";
    expect_rows(
        &discover_launchd("x.plist", binary),
        &[(1, "", "!", "a binary property list; convert it with `plutil -convert xml1 FILE` to read its schedule")],
    );
}

#[test]
fn launchd_reader_is_strict_and_says_where() {
    let doc =
        |body: &str| format!("<?xml version=\"1.0\"?>\n<plist version=\"1.0\">\n<dict>\n{body}\n</dict>\n</plist>\n");
    // (body, line, message): errors of the property list at their place, values of the wrong
    // kind at their key's line.
    let cases = [
        (
            "<key>StartInterval</key>\n<integer>ten</integer>",
            5,
            "cannot read this property list: invalid integer string",
        ),
        ("<key>StartInterval</key>\n<date>2026-01-01T00:00:00Z</date>", 4, "StartInterval is not a positive integer"),
        ("<key>StartInterval</key>\n<string>&bogus;</string>", 4, "StartInterval is not a positive integer"),
        ("<key>StartInterval</key>\n<integer>60</integer>\n<frob/>", 6, "unknown XML element"),
        ("<key>StartInterval</key>\n<integer>60</integer>\n</array>", 6, "invalid XML syntax"),
        ("<key>StartInterval</key>\n<integer>60</integer>\n<string>stray</string>", 1, "unexpected event type"),
    ];
    for (body, line, message) in cases {
        let found = discover_launchd("bad.plist", &doc(body));
        assert_eq!(found.len(), 1, "{body}");
        assert_eq!(found[0].line, line, "{body}");
        match &found[0].outcome {
            Outcome::Untranslatable { reason } => assert!(reason.contains(message), "{body}: {reason}"),
            other => panic!("{body}: {other:?}"),
        }
    }
    let nested = format!("<plist><dict><key>StartInterval</key>{}</dict></plist>", "<array>".repeat(100));
    assert!(
        matches!(&discover_launchd("deep.plist", &nested)[0].outcome, Outcome::Untranslatable { reason } if reason.contains("deeper"))
    );
    // A Day and a Weekday fire on either, as in crontab(5); a value out of range is refused.
    let both = doc(
        "<key>StartCalendarInterval</key>\n<dict><key>Day</key><integer>1</integer><key>Weekday</key><integer>5</integer><key>Hour</key><integer>24</integer></dict>",
    );
    expect_rows(
        &discover_launchd("x.plist", &both),
        &[(4, "", "!", "StartCalendarInterval Hour 24 is out of range 0-23")],
    );
    let empty = doc("<key>Label</key><string>com.example.tick</string>\n<key>StartCalendarInterval</key>\n<dict/>");
    expect_rows(&discover_launchd("x.plist", &empty), &[(5, "com.example.tick", "* * * * *", "local")]);
}

fn expect_rows(findings: &[Finding], expected: &[Row<'_>]) {
    let want: Vec<(u64, String, String, String)> =
        expected.iter().map(|(l, c, x, z)| (*l, c.to_string(), x.to_string(), z.to_string())).collect();
    assert_eq!(rows(findings), want);
}

#[test]
fn systemd_calendar_timers() {
    expect("systemd/image-backup.timer", "systemd", &[(5, "image-backup.service", "0 0 * * *", "local")]);
    let unit = "office-report.service";
    expect(
        "systemd/reports.timer",
        "systemd",
        &[
            (6, unit, "0 9 * * 1-5", "Europe/Berlin"),
            (7, unit, "0 10 * * 6,0", "local"),
            (8, unit, "0 0 1 * *", "local"),
            // systemd's week starts on Monday.
            (9, unit, "0 0 * * 1", "local"),
            (10, unit, "0 0 1 * *", "local"),
            (11, unit, "0 0 1 1 *", "local"),
            (12, unit, "30 6 * * *", "UTC"),
        ],
    );
    expect(
        "systemd/poll.timer",
        "systemd",
        &[
            (5, "poll.service", "!", "OnBootSec=5min runs after boot, not on a wall-clock schedule"),
            (
                6,
                "poll.service",
                "!",
                "OnUnitActiveSec=1h runs after the unit last started, not on a wall-clock schedule",
            ),
            (7, "poll.service", "*/15 * * * *", "local"),
            (8, "poll.service", "* * * * *", "local"),
            (9, "poll.service", "0 * * * *", "local"),
        ],
    );
}

#[test]
fn systemd_forms_cron_cannot_express_are_refused() {
    let e = "edge.service";
    expect(
        "systemd/edge-cases.timer",
        "systemd",
        &[
            (8, e, "!", "OnCalendar=*-*-* 04:00:30: fires at second 30; cron fires only at the start of a minute"),
            (
                9,
                e,
                "!",
                "OnCalendar=Mon *-*-1..7 08:00: restricts both the weekday and the day of the month; systemd requires both, cron either",
            ),
            (10, e, "!", "OnCalendar=2026-12-24 18:00: only in the year(s) 2026; cron has no year field"),
            (11, e, "!", "OnCalendar=*-02~03: counts days from the end of the month (~), which cron cannot express"),
            (12, e, "!", r#"OnCalendar=Fri..Mon 12:00: the weekday range "Fri..Mon" wraps around the week"#),
            (
                13,
                e,
                "!",
                r#"OnCalendar=daily Mars/Olympus_Mons: unknown time zone "Mars/Olympus_Mons"; use an IANA name such as America/Los_Angeles, Europe/Berlin or UTC"#,
            ),
            (14, e, "45 23 * * *", "local"),
        ],
    );
    expect(
        "systemd/jitter.timer",
        "systemd",
        &[(5, "jitter.service", "!", "RandomizedDelaySec=15min lets systemd start it up to 15min late")],
    );
}

#[test]
fn railway_cron_is_utc() {
    expect("railway/trading/railway.json", "railway", &[(8, "python -m tasks.scan_market", "0 */6 * * *", "UTC")]);
    expect(
        "railway/reports/railway.toml",
        "railway",
        &[(10, "python tasks/weekly_report.py --send", "0 8 * * 1", "UTC")],
    );
    expect("railway/web/railway.json", "railway", &[]);
    let broken = "{\n  \"deploy\": {\n    \"cronSchedule\": \"0 * * * *\",\n  }\n}\n";
    let f = discover_file("railway.json", broken);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].line, 4);
    assert!(
        matches!(&f[0].outcome, Outcome::Untranslatable { reason } if reason.starts_with("cannot read railway.json: "))
    );
    let toml = "deploy.cronSchedule = '@hourly'\n";
    expect_rows(&discover_file("svc/railway.toml", toml), &[(1, "", "0 * * * *", "UTC")]);
    let unquoted = "[deploy]\ncronSchedule = 5\n";
    expect_rows(&discover_file("railway.toml", unquoted), &[(2, "", "!", "cronSchedule: not a quoted string")]);
}

#[test]
fn github_schedules() {
    let nightly = "GitHub workflow Nightly data refresh";
    expect(
        ".github/workflows/nightly.yml",
        "github",
        &[(6, nightly, "15 2 * * *", "UTC"), (7, nightly, "30 14 * * SUN", "UTC")],
    );
    // Flow style, no name: the file names it; one item sets its own zone.
    let digest = "GitHub workflow digest.yaml";
    expect(
        ".github/workflows/digest.yaml",
        "github",
        &[(1, digest, "0 7 * * 1-5", "Europe/Berlin"), (1, digest, "0 7 * * 1-5", "UTC")],
    );
    let stale = "GitHub workflow Close stale issues";
    expect(
        ".github/workflows/stale.yml",
        "github",
        &[
            (
                4,
                stale,
                "!",
                r#"unknown time zone "Atlantis/Capital"; use an IANA name such as America/Los_Angeles, Europe/Berlin or UTC"#,
            ),
            (6, stale, "!", r#"cron expression "0 0 L * *" uses L or #, which GitHub does not read as Agent OS does"#),
            (7, stale, "!", r#"cron expression "0 25 * * *": hour field: bad token "25": 25 is out of range 0-23"#),
        ],
    );
    expect(".github/workflows/ci.yml", "github", &[]);
}

#[test]
fn github_on_read_as_true_is_accepted() {
    let text = "name: weekly\ntrue:\n  schedule:\n    - cron: \"0 6 * * 1\"\n";
    expect_rows(
        &discover_github("repo/.github/workflows/weekly.yml", text),
        &[(4, "GitHub workflow weekly", "0 6 * * 1", "UTC")],
    );
    let broken = "on:\n  schedule:\n    - cron: \"0 6 * * 1\"\n  - bad\n";
    let f = discover_github("w.yml", broken);
    assert_eq!(f.len(), 1);
    assert!(
        matches!(&f[0].outcome, Outcome::Untranslatable { reason } if reason.starts_with("cannot read the workflow"))
    );
}

#[test]
fn findings_serialize_with_a_kind_tag() {
    let f = found("railway/trading/railway.json");
    assert_eq!(
        serde_json::to_value(&f).unwrap(),
        serde_json::json!([{
            "source": "railway/trading/railway.json", "line": 8, "managed_by": "railway",
            "command": "python -m tasks.scan_market", "kind": "schedule", "cron": "0 */6 * * *", "timezone": "UTC"
        }])
    );
    let r = discover_file(CRONTAB_L, "@reboot /bin/true\n");
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        serde_json::json!([{
            "source": "crontab -l", "line": 1, "managed_by": "cron", "command": "/bin/true",
            "kind": "untranslatable", "reason": "runs at boot, not on a schedule"
        }])
    );
}

#[test]
fn every_fixture_cron_parses_and_every_file_has_a_reader() {
    for path in FILES {
        assert!(kind_of(path).is_some(), "{path}");
        check_findings(&read(path), &found(path));
    }
}

/// What must hold of any finding: a real line, five fields that the scheduler parses.
fn check_findings(text: &str, findings: &[Finding]) {
    let lines = text.split('\n').count() as u64;
    for f in findings {
        assert!(f.line >= 1 && f.line <= lines.max(1), "line {} of {lines}", f.line);
        if let Outcome::Schedule { cron, timezone } = &f.outcome {
            assert_eq!(cron.split(' ').count(), 5, "{cron:?}");
            assert!(Cron::parse(cron).is_ok(), "{cron:?}");
            assert!(!timezone.is_empty());
        }
    }
}

/// Pieces of every format, so generated text reaches deep into each reader.
const PIECES: [&str; 48] = [
    "\n",
    " ",
    "\t",
    "#",
    "=",
    "%",
    "\\",
    "\"",
    "'",
    "<",
    ">",
    "/",
    "*",
    "@daily",
    "@reboot",
    "CRON_TZ=",
    "TZ=",
    "Europe/Berlin",
    "0",
    "7",
    "59",
    "24",
    "-",
    ",",
    "..",
    "~",
    ":",
    "<dict>",
    "</dict>",
    "<key>",
    "</key>",
    "StartCalendarInterval",
    "<integer>",
    "</integer>",
    "<array>",
    "<!--",
    "[Timer]",
    "OnCalendar=",
    "Mon..Fri",
    "*-*-*",
    "\"cronSchedule\"",
    "{",
    "}",
    "[deploy]",
    "on:",
    "schedule:",
    "- cron: ",
    "é",
];

const KIND_PATHS: [&str; 8] = [
    "crontab",
    "etc/cron.d/job",
    "job.plist",
    "job.timer",
    "railway.json",
    "railway.toml",
    ".github/workflows/w.yml",
    "crontab -l",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(path in prop::sample::select(&KIND_PATHS[..]), text in "\\PC{0,400}") {
        check_findings(&text, &discover_file(path, &text));
    }

    #[test]
    fn token_soup_never_panics(
        path in prop::sample::select(&KIND_PATHS[..]),
        pieces in prop::collection::vec(prop::sample::select(&PIECES[..]), 0..120),
    ) {
        let text = pieces.concat();
        check_findings(&text, &discover_file(path, &text));
    }

    #[test]
    fn mangled_fixtures_never_panic(
        which in 0..FILES.len(),
        cut in 0usize..4000,
        at in 0usize..4000,
        insert in prop::collection::vec(prop::sample::select(&PIECES[..]), 0..6),
    ) {
        let path = FILES[which];
        let text = read(path);
        let cut = floor_boundary(&text, cut);
        let at = floor_boundary(&text[..cut], at);
        let mangled = format!("{}{}{}", &text[..at], insert.concat(), &text[at..cut]);
        check_findings(&mangled, &discover_file(path, &mangled));
    }
}

fn floor_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
