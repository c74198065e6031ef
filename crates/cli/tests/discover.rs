//! `agent-os schedules discover` as a user runs it: the real binary on a directory holding the
//! example projects' schedule files and a few more, with no server anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_agent-os");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/tests/fixtures/discover");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/projects");

fn copy(from: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("{from}: {e}"));
}

/// A project tree: schedules where users keep them, and copies where discover must not look.
fn tree(root: &Path) {
    copy(&format!("{EXAMPLES}/image-workflow/crontab.txt"), &root.join("image-workflow/crontab.txt"));
    copy(
        &format!("{EXAMPLES}/cortana/scripts/automation/com.example.cortana.daily.plist"),
        &root.join("cortana/scripts/automation/com.example.cortana.daily.plist"),
    );
    copy(&format!("{FIXTURES}/railway/trading/railway.json"), &root.join("trading/railway.json"));
    copy(&format!("{FIXTURES}/.github/workflows/nightly.yml"), &root.join("trading/.github/workflows/nightly.yml"));
    copy(&format!("{FIXTURES}/systemd/poll.timer"), &root.join("ops/poll.timer"));
    for skipped in ["node_modules/pkg/crontab", "target/debug/crontab", ".cache/crontab", "var/crontab", ".git/crontab"]
    {
        copy(&format!("{FIXTURES}/crontab.txt"), &root.join(skipped));
    }
}

fn discover(args: &[&str], path: &str) -> Output {
    Command::new(BIN)
        .args(["schedules", "discover"])
        .args(args)
        .env("TZ", "America/Los_Angeles")
        .env("PATH", path)
        .env_remove("AGENT_OS_URL")
        .env_remove("AGENT_OS_TOKEN")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn discovers_every_source_in_a_tree_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    tree(root);
    let r = root.display();
    let out = discover(&["--json", &root.to_string_lossy()], "/usr/bin:/bin");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    let la = "America/Los_Angeles";
    assert_eq!(
        found,
        json!([
            {"source": format!("{r}/cortana/scripts/automation/com.example.cortana.daily.plist"), "line": 20,
             "managed_by": "launchd", "command": "/bin/sh /Users/you/projects/cortana/scripts/automation/run_daily_update.sh",
             "kind": "schedule", "cron": "0 22 * * *", "timezone": la},
            {"source": format!("{r}/image-workflow/crontab.txt"), "line": 6, "managed_by": "cron",
             "command": "cd \"$HOME/projects/image-workflow\" && ./scripts/backup.sh >> \"$HOME/Library/Logs/image-workflow-backup.log\" 2>&1",
             "kind": "schedule", "cron": "30 3 * * *", "timezone": la},
            {"source": format!("{r}/ops/poll.timer"), "line": 5, "managed_by": "systemd", "command": "poll.service",
             "kind": "untranslatable", "reason": "OnBootSec=5min runs after boot, not on a wall-clock schedule"},
            {"source": format!("{r}/ops/poll.timer"), "line": 6, "managed_by": "systemd", "command": "poll.service",
             "kind": "untranslatable", "reason": "OnUnitActiveSec=1h runs after the unit last started, not on a wall-clock schedule"},
            {"source": format!("{r}/ops/poll.timer"), "line": 7, "managed_by": "systemd", "command": "poll.service",
             "kind": "schedule", "cron": "*/15 * * * *", "timezone": la},
            {"source": format!("{r}/ops/poll.timer"), "line": 8, "managed_by": "systemd", "command": "poll.service",
             "kind": "schedule", "cron": "* * * * *", "timezone": la},
            {"source": format!("{r}/ops/poll.timer"), "line": 9, "managed_by": "systemd", "command": "poll.service",
             "kind": "schedule", "cron": "0 * * * *", "timezone": la},
            {"source": format!("{r}/trading/.github/workflows/nightly.yml"), "line": 6, "managed_by": "github",
             "command": "GitHub workflow Nightly data refresh", "kind": "schedule", "cron": "15 2 * * *", "timezone": "UTC"},
            {"source": format!("{r}/trading/.github/workflows/nightly.yml"), "line": 7, "managed_by": "github",
             "command": "GitHub workflow Nightly data refresh", "kind": "schedule", "cron": "30 14 * * SUN", "timezone": "UTC"},
            {"source": format!("{r}/trading/railway.json"), "line": 8, "managed_by": "railway",
             "command": "python -m tasks.scan_market", "kind": "schedule", "cron": "0 */6 * * *", "timezone": "UTC"},
        ])
    );
}

#[test]
fn prints_a_table_and_the_untranslatable_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let out = Command::new(BIN)
        .args(["schedules", "discover"])
        .current_dir(dir.path())
        .env("TZ", "America/Los_Angeles")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("SOURCE") && lines[0].contains("MANAGED BY  CRON"), "{stdout}");
    let backup = lines.iter().find(|l| l.starts_with("image-workflow/crontab.txt:6 ")).expect(&stdout);
    let cells: Vec<&str> = backup.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(cells[..4], ["image-workflow/crontab.txt:6", "cron", "30 3 * * *", "America/Los_Angeles"], "{stdout}");
    // Sources are relative to the current directory, as the user would write them.
    assert!(!lines.iter().any(|l| l.starts_with("./")), "{stdout}");
    assert!(stdout.contains("Not translatable to cron exactly:"), "{stdout}");
    assert!(stdout.contains("ops/poll.timer:5") && stdout.contains("OnBootSec=5min runs after boot"), "{stdout}");
    assert!(stdout.contains("8 schedules, 2 not translatable, in 5 files read (5 looked at)"), "{stdout}");
}

#[test]
fn reads_the_users_crontab_when_asked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("crontab");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = -l ] || exit 64\nprintf 'CRON_TZ=Europe/Berlin\\n15 6 * * 1-5 $HOME/bin/morning.sh\\n@reboot $HOME/bin/resume.sh\\n'\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = discover(&["--json", "--crontab", &empty.to_string_lossy()], &path);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        found,
        json!([
            {"source": "crontab -l", "line": 2, "managed_by": "cron", "command": "$HOME/bin/morning.sh",
             "kind": "schedule", "cron": "15 6 * * 1-5", "timezone": "Europe/Berlin"},
            {"source": "crontab -l", "line": 3, "managed_by": "cron", "command": "$HOME/bin/resume.sh",
             "kind": "untranslatable", "reason": "runs at boot, not on a schedule"},
        ])
    );

    // No crontab command: a note, not an error.
    let out = discover(&["--crontab", &empty.to_string_lossy()], &empty.to_string_lossy());
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("note: --crontab: there is no `crontab` command"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("no schedules found in "), "{}", text(&out.stdout));
}

#[test]
fn nothing_found_is_not_an_error_but_a_missing_path_is() {
    let dir = tempfile::tempdir().unwrap();
    let out = discover(&["--json", &dir.path().to_string_lossy()], "/usr/bin:/bin");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!([]));

    let gone = dir.path().join("gone");
    let out = discover(&[&gone.to_string_lossy()], "/usr/bin:/bin");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no such file or directory"), "{}", text(&out.stderr));

    // A file discover does not read, named on the command line: said so.
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, "30 3 * * * backup\n").unwrap();
    let out = discover(&[&other.to_string_lossy()], "/usr/bin:/bin");
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("not a kind of file discover reads"), "{}", text(&out.stderr));
}

#[test]
fn schedules_without_discover_is_still_the_server_list() {
    let out = Command::new(BIN).args(["schedules", "--help"]).output().unwrap();
    let help = text(&out.stdout);
    assert!(help.contains("discover") && help.contains("--project"), "{help}");
    // The plain form still goes to the server (none is running here).
    let out = Command::new(BIN)
        .args(["schedules", "--project", "cortana", "--url", "http://127.0.0.1:9", "--token", "aosa_x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stderr).is_empty());
}
