//! `agent-os service` as a user runs it: the real binary, with HOME pointing at a temp dir and
//! a PATH on which there is no service manager, so nothing here loads a real service on the
//! machine running the tests. The files it writes are checked by the tools that read them for
//! real: Python's `plistlib` for launchd property lists, `systemd-analyze verify` for systemd
//! units, and the installed command itself, started as launchd would start it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_agent-os");

/// A user's home in a temp dir, and an empty directory as the whole PATH.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    path: PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let home = root.join("user");
        let path = root.join("bin");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&path).unwrap();
        World { _tmp: tmp, root, home, path }
    }

    /// `agent-os ARGS` in a clean environment: HOME, PATH and `env` only.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(BIN);
        c.args(args).env_clear().env("HOME", &self.home).env("PATH", &self.path);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    fn project(&self, name: &str) -> PathBuf {
        let dir = self.root.join("projects").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("agent-os.yaml"), format!("name: {name}\n")).unwrap();
        dir
    }

    fn systemd_unit(&self, file: &str) -> PathBuf {
        self.home.join(".config/systemd/user").join(file)
    }

    fn plist(&self, label: &str) -> PathBuf {
        self.home.join("Library/LaunchAgents").join(format!("{label}.plist"))
    }

    fn env_file(&self, role: &str) -> PathBuf {
        self.home.join(".config/agent-os").join(format!("{role}.env"))
    }

    /// Every file under the user's home, with its bytes and modification time.
    fn files(&self) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, SystemTime)>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let meta = std::fs::symlink_metadata(e.path()).unwrap();
                if meta.is_dir() {
                    walk(&e.path(), out);
                } else {
                    out.insert(e.path(), (std::fs::read(e.path()).unwrap_or_default(), meta.modified().unwrap()));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.home, &mut out);
        out
    }

    /// Every path under the user's home, directories included.
    fn entries(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                out.push(p.clone());
                if p.is_dir() {
                    walk(&p, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.home, &mut out);
        out
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn both(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// A value no file or output could hold by chance.
fn canary(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}{nanos:x}{:x}canary", std::process::id())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn binary() -> String {
    std::fs::canonicalize(BIN).unwrap().to_string_lossy().into_owned()
}

/// Whether an outside tool the test needs is here. Outside CI a missing tool skips the test
/// with a note; in CI it fails it.
fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but {tool} is not installed");
        }
        eprintln!("NOTE: skipped: {tool} is not installed here");
    }
    found
}

/// The property list as Python's plistlib reads it.
fn plistlib(path: &Path) -> Value {
    let out = Command::new("python3")
        .args(["-c", "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "plistlib could not read {}: {}", path.display(), text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `systemd-analyze --user verify UNIT`, which loads the unit as the user manager would (and
/// checks that ExecStart's program exists).
fn verify(world: &World, unit: &Path) {
    let runtime = world.root.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .arg(unit)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("HOME", &world.home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify {}: {}\n{}",
        unit.display(),
        both(&out),
        std::fs::read_to_string(unit).unwrap()
    );
    assert!(!text(&out.stderr).contains(&unit.file_name().unwrap().to_string_lossy().into_owned()), "{}", both(&out));
}

#[test]
fn launchd_plists_for_the_server_and_a_worker_parse_with_plistlib_and_hold_no_secret() {
    if !have("python3") {
        return;
    }
    let world = World::new();
    let admin = canary("aosa_");
    let out = world.run(&["service", "install", "--platform", "launchd"], &[("AGENT_OS_ADMIN_TOKEN", &admin)]);
    // launchctl is not on the PATH: the files are left, with the command that loads them.
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let plist_path = world.plist("dev.agent-os.serve");
    let home = world.home.join(".agent-os");
    let env_file = world.env_file("serve");
    let plist = plistlib(&plist_path);
    assert_eq!(plist["Label"], "dev.agent-os.serve");
    let args = vec![
        binary(),
        "--env-file".into(),
        env_file.to_string_lossy().into_owned(),
        "serve".into(),
        "--home".into(),
        home.to_string_lossy().into_owned(),
    ];
    assert_eq!(plist["ProgramArguments"], serde_json::json!(args));
    assert_eq!(plist["RunAtLoad"], true);
    assert_eq!(plist["KeepAlive"], serde_json::json!({"SuccessfulExit": false}));
    assert_eq!(plist["WorkingDirectory"], home.to_string_lossy().as_ref());
    let log = home.join("logs/serve.log").to_string_lossy().into_owned();
    assert_eq!(plist["StandardOutPath"], log.as_str());
    assert_eq!(plist["StandardErrorPath"], log.as_str());
    assert!(home.join("logs").is_dir(), "the log's directory exists before launchd opens the log");
    let uid = unsafe { getuid() };
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("  launchctl bootstrap gui/{uid} {}", plist_path.display())),
        "the command to run by hand: {stdout}"
    );
    assert!(text(&out.stderr).contains("`launchctl` is not on this machine's PATH"), "{}", both(&out));

    let token = canary("aosw_");
    let project = world.project("cortana");
    let out = world.run(
        &[
            "service",
            "install",
            "--platform",
            "launchd",
            "--worker",
            "--server",
            "https://agent-os.example.com",
            "--project",
            project.to_str().unwrap(),
            "--name",
            "mac mini",
            "--capacity",
            "3",
        ],
        &[("AGENT_OS_WORKER_TOKEN", &token)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let worker = plistlib(&world.plist("dev.agent-os.worker"));
    assert_eq!(worker["Label"], "dev.agent-os.worker");
    let worker_home = world.home.join(".agent-os-worker");
    assert_eq!(
        worker["ProgramArguments"],
        serde_json::json!([
            binary(),
            "--env-file",
            world.env_file("worker"),
            "worker",
            "--home",
            worker_home,
            "--server",
            "https://agent-os.example.com",
            "--project",
            project,
            "--name",
            "mac mini",
            "--capacity",
            "3"
        ])
    );
    assert_eq!(worker["StandardOutPath"], worker_home.join("logs/worker.log").to_string_lossy().as_ref());
    assert_eq!(worker["KeepAlive"], serde_json::json!({"SuccessfulExit": false}));

    // The secrets are in the env files alone, which only the user can read.
    for (secret, printed) in
        [(&admin, &world.run(&["service", "status", "--platform", "launchd"], &[])), (&token, &out)]
    {
        assert!(!both(printed).contains(secret.as_str()), "{}", both(printed));
    }
    for (path, (bytes, _)) in world.files() {
        let holds = |s: &str| text(&bytes).contains(s);
        if path.extension().is_some_and(|e| e == "env") {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        } else {
            assert!(!holds(&admin) && !holds(&token), "a secret in {}", path.display());
        }
    }
    assert!(std::fs::read_to_string(&env_file).unwrap().contains(&format!("AGENT_OS_ADMIN_TOKEN={admin}\n")));
    assert!(
        std::fs::read_to_string(world.env_file("worker"))
            .unwrap()
            .contains(&format!("AGENT_OS_WORKER_TOKEN={token}\n"))
    );
}

unsafe extern "C" {
    fn getuid() -> u32;
    fn kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn systemd_units_for_the_server_and_a_worker_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        return;
    }
    let world = World::new();
    // A home whose path needs systemd's quoting and escaping: a blank, a specifier, a dollar.
    let home = world.root.join("my home%i $HOME");
    let admin = canary("aosa_");
    let out = world.run(
        &["service", "install", "--platform", "systemd", "--home", home.to_str().unwrap()],
        &[("AGENT_OS_ADMIN_TOKEN", &admin)],
    );
    assert_eq!(out.status.code(), Some(1), "systemctl is not on the PATH: {}", both(&out));
    let stdout = text(&out.stdout);
    for want in [
        "  systemctl --user daemon-reload\n",
        "  systemctl --user enable --now agent-os.service\n",
        "loginctl enable-linger",
    ] {
        assert!(stdout.contains(want), "{want:?} in {stdout}");
    }
    let unit_path = world.systemd_unit("agent-os.service");
    verify(&world, &unit_path);
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let env_file = world.env_file("serve");
    let escaped = "my home%%i $HOME";
    for line in [
        format!(
            "ExecStart=\"{}\" \"--env-file\" \"{}\" \"serve\" \"--home\" \"{}/my home%%i $$HOME\"",
            binary(),
            env_file.display(),
            world.root.display()
        ),
        format!("WorkingDirectory={}/{escaped}", world.root.display()),
        "Restart=on-failure".into(),
        "RestartSec=5".into(),
        format!("StandardOutput=append:{}/{escaped}/logs/serve.log", world.root.display()),
        format!("StandardError=append:{}/{escaped}/logs/serve.log", world.root.display()),
        "WantedBy=default.target".into(),
    ] {
        assert!(unit.lines().any(|l| l == line), "{line:?} in\n{unit}");
    }
    assert!(home.join("logs").is_dir());
    assert!(!unit.contains(&admin) && !both(&out).contains(&admin));
    assert!(!unit.contains("EnvironmentFile"), "the binary reads its env file itself: {unit}");

    let token = canary("aosw_");
    let a = world.project("cortana");
    let b = world.project("image-workflow");
    let out = world.run(
        &[
            "service",
            "install",
            "--platform",
            "systemd",
            "--worker",
            "--server",
            "http://10.0.0.2:7700",
            "--allow-http",
            "--project",
            a.to_str().unwrap(),
            "--project",
            b.to_str().unwrap(),
        ],
        &[("AGENT_OS_WORKER_TOKEN", &token)],
    );
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let worker_path = world.systemd_unit("agent-os-worker.service");
    verify(&world, &worker_path);
    let worker = std::fs::read_to_string(&worker_path).unwrap();
    let exec = format!(
        "ExecStart=\"{}\" \"--env-file\" \"{}\" \"worker\" \"--home\" \"{}\" \"--server\" \"http://10.0.0.2:7700\" \
         \"--project\" \"{}\" \"--project\" \"{}\" \"--allow-http\"",
        binary(),
        world.env_file("worker").display(),
        world.home.join(".agent-os-worker").display(),
        a.display(),
        b.display()
    );
    assert!(worker.lines().any(|l| l == exec), "{exec:?} in\n{worker}");
    assert!(!worker.contains(&token) && !both(&out).contains(&token));
    assert_eq!(mode(&world.env_file("worker")), 0o600);
}

#[test]
fn the_env_file_is_private_from_its_creation_even_under_an_open_umask() {
    let world = World::new();
    let admin = canary("aosa_");
    // The shell only sets the umask, then becomes agent-os.
    let out = Command::new("/bin/sh")
        .args(["-c", "umask 000; exec \"$0\" service install --platform systemd", BIN])
        .env_clear()
        .env("HOME", &world.home)
        .env("PATH", &world.path)
        .env("AGENT_OS_ADMIN_TOKEN", &admin)
        .env("AGENT_OS_PUBLIC_URL", "https://agent-os.example.com")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let env_file = world.env_file("serve");
    assert_eq!(mode(&env_file), 0o600);
    assert_eq!(mode(env_file.parent().unwrap()), 0o700);
    assert_eq!(mode(&world.home.join(".agent-os")), 0o700, "the home holds the log, which can hold a first token");
    let text = std::fs::read_to_string(&env_file).unwrap();
    assert!(text.contains(&format!("AGENT_OS_ADMIN_TOKEN={admin}\n")), "{text}");
    assert!(text.contains("AGENT_OS_PUBLIC_URL=https://agent-os.example.com\n"), "{text}");
    assert!(text.contains(&format!("PATH={}\n", world.path.display())), "the user's PATH, for tasks: {text}");

    // A file someone widened is narrowed again by the next install, and says so.
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let again = world.run(
        &["service", "install", "--platform", "systemd"],
        &[("AGENT_OS_ADMIN_TOKEN", &admin), ("AGENT_OS_PUBLIC_URL", "https://agent-os.example.com")],
    );
    assert!(text_of(&again).contains("tighten"), "{}", both(&again));
    assert_eq!(mode(&env_file), 0o600);
}

fn text_of(o: &Output) -> String {
    text(&o.stdout)
}

#[test]
fn a_second_install_changes_nothing_and_a_changed_plan_rewrites_and_restarts() {
    let world = World::new();
    let admin = canary("aosa_");
    let env = [("AGENT_OS_ADMIN_TOKEN", admin.as_str())];
    let first = world.run(&["service", "install", "--platform", "systemd"], &env);
    assert_eq!(first.status.code(), Some(1), "{}", both(&first));
    let before = world.files();
    assert_eq!(before.len(), 2, "the unit and the env file: {:?}", before.keys());

    let second = world.run(&["service", "install", "--platform", "systemd"], &env);
    assert_eq!(world.files(), before, "a second install writes nothing");
    let stdout = text(&second.stdout);
    assert!(stdout.contains(&format!("unchanged  {}", world.systemd_unit("agent-os.service").display())), "{stdout}");
    assert!(stdout.contains(&format!("unchanged  {}", world.env_file("serve").display())), "{stdout}");
    assert!(!stdout.contains("create") && !stdout.contains("rewrite"), "{stdout}");
    // systemd could not be asked whether it is enabled, so the commands are offered again.
    assert!(stdout.contains("  systemctl --user enable --now agent-os.service"), "{stdout}");

    // The user adds a variable of their own; a new value from the environment rewrites the
    // file, keeps theirs, and asks systemd to restart the service.
    let env_file = world.env_file("serve");
    let mut f = std::fs::OpenOptions::new().append(true).open(&env_file).unwrap();
    writeln!(f, "# mine\nAGENT_OS_LOG=debug").unwrap();
    drop(f);
    let third = world.run(
        &["service", "install", "--platform", "systemd"],
        &[("AGENT_OS_ADMIN_TOKEN", admin.as_str()), ("PORT", "8080")],
    );
    assert_eq!(third.status.code(), Some(1), "{}", both(&third));
    let stdout = text(&third.stdout);
    assert!(stdout.contains(&format!("rewrite    {} (new values for PORT)", env_file.display())), "{stdout}");
    assert!(stdout.contains(&format!("unchanged  {}", world.systemd_unit("agent-os.service").display())), "{stdout}");
    assert!(stdout.contains("  systemctl --user restart agent-os.service"), "{stdout}");
    let written = std::fs::read_to_string(&env_file).unwrap();
    for line in [format!("AGENT_OS_ADMIN_TOKEN={admin}"), "PORT=8080".into(), "AGENT_OS_LOG=debug".into()] {
        assert!(written.lines().any(|l| l == line), "{line:?} in {written}");
    }
    assert!(!both(&third).contains(&admin));

    // Without the token in the environment, the file keeps the one it has.
    let fourth = world.run(&["service", "install", "--platform", "systemd"], &[("PORT", "8080")]);
    assert!(text(&fourth.stdout).contains(&format!("unchanged  {}", env_file.display())), "{}", both(&fourth));
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), written);

    // A different home is a different unit: rewritten, and restarted.
    let other = world.root.join("other-home");
    let fifth = world
        .run(&["service", "install", "--platform", "systemd", "--home", other.to_str().unwrap()], &[("PORT", "8080")]);
    let stdout = text(&fifth.stdout);
    assert!(stdout.contains(&format!("rewrite    {}", world.systemd_unit("agent-os.service").display())), "{stdout}");
    assert!(stdout.contains("  systemctl --user daemon-reload\n  systemctl --user enable agent-os.service\n  systemctl --user restart agent-os.service"), "{stdout}");
}

#[test]
fn print_shows_the_files_with_secrets_hidden_and_writes_nothing() {
    let world = World::new();
    let admin = canary("aosa_");
    let db = format!("postgres://agent_os:{}@db.example.internal/agent_os", canary("pw"));
    for platform in ["systemd", "launchd"] {
        let out = world.run(
            &["service", "install", "--platform", platform, "--print"],
            &[("AGENT_OS_ADMIN_TOKEN", &admin), ("DATABASE_URL", &db), ("PORT", "7711")],
        );
        assert_eq!(out.status.code(), Some(0), "{}", both(&out));
        let stdout = text(&out.stdout);
        assert!(world.entries().is_empty(), "--print wrote {:?}", world.entries());
        assert!(!both(&out).contains(&admin) && !both(&out).contains(&db), "{stdout}");
        for want in [
            "AGENT_OS_ADMIN_TOKEN=<hidden>\n",
            "DATABASE_URL=<hidden>\n",
            "PORT=7711\n",
            "Nothing was written.",
            &format!("# {}", world.env_file("serve").display()),
        ] {
            assert!(stdout.contains(want), "{want:?} in {stdout}");
        }
        let unit = match platform {
            "systemd" => world.systemd_unit("agent-os.service"),
            _ => world.plist("dev.agent-os.serve"),
        };
        assert!(stdout.contains(&format!("# {}\n", unit.display())), "{stdout}");
        let marker = match platform {
            "systemd" => "ExecStart=",
            _ => "<key>ProgramArguments</key>",
        };
        assert!(stdout.contains(marker), "{stdout}");
    }
}

#[test]
fn uninstall_removes_the_unit_keeps_the_env_file_and_purge_removes_it() {
    let world = World::new();
    let admin = canary("aosa_");
    for platform in ["systemd", "launchd"] {
        let out = world.run(&["service", "install", "--platform", platform], &[("AGENT_OS_ADMIN_TOKEN", &admin)]);
        assert_eq!(out.status.code(), Some(1), "{}", both(&out));
        let unit = match platform {
            "systemd" => world.systemd_unit("agent-os.service"),
            _ => world.plist("dev.agent-os.serve"),
        };
        assert!(unit.is_file());
        let log = world.home.join(".agent-os/logs/serve.log");
        std::fs::write(&log, "a line the service logged\n").unwrap();

        let out = world.run(&["service", "uninstall", "--platform", platform], &[]);
        let stdout = text(&out.stdout);
        assert!(!unit.exists(), "{}", both(&out));
        assert!(world.env_file("serve").is_file() && log.is_file(), "kept without --purge");
        assert!(stdout.contains(&format!("removed    {}", unit.display())), "{stdout}");
        assert!(stdout.contains(&format!("kept       {}", world.env_file("serve").display())), "{stdout}");
        match platform {
            // systemd could not be asked to stop it: exit 1, with what to run.
            "systemd" => {
                assert_eq!(out.status.code(), Some(1), "{}", both(&out));
                assert!(stdout.contains("systemctl --user stop agent-os.service"), "{stdout}");
            }
            // A bootout that fails is a service that was not loaded.
            _ => assert_eq!(out.status.code(), Some(1), "launchctl is missing altogether: {}", both(&out)),
        }

        // Again: nothing is installed, nothing to do.
        let out = world.run(&["service", "uninstall", "--platform", platform], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", both(&out));
        assert!(text(&out.stdout).contains("is not installed"), "{}", both(&out));

        // Installed again, then purged: the env file and the log go too.
        world.run(&["service", "install", "--platform", platform], &[("AGENT_OS_ADMIN_TOKEN", &admin)]);
        std::fs::write(&log, "more\n").unwrap();
        let out = world.run(&["service", "uninstall", "--platform", platform, "--purge"], &[]);
        assert!(!unit.exists() && !world.env_file("serve").exists() && !log.exists(), "{}", both(&out));
    }
}

#[test]
fn a_stale_enable_link_goes_with_the_unit_systemd_could_not_be_told_of() {
    let world = World::new();
    world.run(&["service", "install", "--platform", "systemd"], &[]);
    let unit = world.systemd_unit("agent-os.service");
    let wants = unit.parent().unwrap().join("default.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(&unit, wants.join("agent-os.service")).unwrap();
    let out = world.run(&["service", "uninstall", "--platform", "systemd"], &[]);
    assert!(!unit.exists(), "{}", both(&out));
    assert!(std::fs::symlink_metadata(wants.join("agent-os.service")).is_err(), "{}", both(&out));
}

#[test]
fn a_worker_without_a_worker_token_is_refused_with_how_to_make_one() {
    let world = World::new();
    let project = world.project("cortana");
    let args = [
        "service",
        "install",
        "--platform",
        "systemd",
        "--worker",
        "--server",
        "https://agent-os.example.com",
        "--project",
        project.to_str().unwrap(),
    ];
    let out = world.run(&args, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("AGENT_OS_WORKER_TOKEN is not set"), "{stderr}");
    assert!(stderr.contains("agent-os token create --worker --project P"), "{stderr}");
    assert!(world.entries().is_empty(), "nothing written: {:?}", world.entries());

    // An admin token is not a worker token.
    let admin = canary("aosa_");
    let out = world.run(&args, &[("AGENT_OS_WORKER_TOKEN", &admin)]);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(text(&out.stderr).contains("not a worker token (those start with aosw_)"), "{}", both(&out));
    assert!(!both(&out).contains(&admin));
    assert!(world.entries().is_empty());
}

#[test]
fn bad_worker_arguments_exit_2_naming_the_fix() {
    let world = World::new();
    let token = canary("aosw_");
    let env = [("AGENT_OS_WORKER_TOKEN", token.as_str())];
    let project = world.project("cortana");
    let bare = world.root.join("projects/bare");
    std::fs::create_dir_all(&bare).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--worker", "--project", project.to_str().unwrap()], "--worker needs --server URL"),
        (vec!["--worker", "--server", "https://a.example.com"], "--worker needs at least one --project DIR"),
        (vec!["--worker", "--server", "ftp://a.example.com", "--project", project.to_str().unwrap()], "--server:"),
        (vec!["--worker", "--server", "https://a.example.com", "--project", bare.to_str().unwrap()], "agent-os init"),
        (vec!["--server", "https://a.example.com"], "--worker"),
        (
            vec![
                "--worker",
                "--server",
                "https://a.example.com",
                "--project",
                project.to_str().unwrap(),
                "--capacity",
                "0",
            ],
            "--capacity",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["service", "install", "--platform", "systemd"];
        args.extend(extra.iter().copied());
        let out = world.run(&args, &env);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", both(&out));
        assert!(text(&out.stderr).contains(want), "{args:?}: {want:?} in {}", both(&out));
    }
    assert!(world.entries().iter().all(|p| !p.starts_with(world.home.join(".config"))), "{:?}", world.entries());
}

#[test]
fn status_says_whether_the_service_is_installed_and_where_its_files_are() {
    let world = World::new();
    for (platform, manager) in [("systemd", "systemd:"), ("launchd", "launchd:")] {
        let out = world.run(&["service", "status", "--platform", platform], &[]);
        assert_eq!(out.status.code(), Some(3), "{}", both(&out));
        assert!(text(&out.stdout).contains("not installed"), "{}", both(&out));

        world.run(&["service", "install", "--platform", platform], &[]);
        let out = world.run(&["service", "status", "--platform", platform], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", both(&out));
        let stdout = text(&out.stdout);
        for want in [
            ": installed".to_string(),
            format!("  env file:  {} (mode 0600)", world.env_file("serve").display()),
            format!("  log:       {}", world.home.join(".agent-os/logs/serve.log").display()),
            format!("  {manager}"),
            "cannot tell".into(),
        ] {
            assert!(stdout.contains(&want), "{want:?} in {stdout}");
        }
        assert!(stdout.contains(&binary()), "the command it runs: {stdout}");
    }
    let out = world.run(&["service", "status", "--worker", "--platform", "systemd"], &[]);
    assert_eq!(out.status.code(), Some(3), "the worker's service is another one: {}", both(&out));
    assert!(text(&out.stdout).contains("agent-os-worker.service"), "{}", both(&out));
}

/// A minimal HTTP/1.1 GET with a bearer token: the status.
fn get(url: &str, path: &str, token: &str) -> u16 {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_installed_command_starts_a_server_that_takes_its_token_from_the_env_file_alone() {
    if !have("python3") {
        return;
    }
    let world = World::new();
    let admin = canary("aosa_");
    let home = world.home.join(".agent-os");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("config.yaml"), "bind: 127.0.0.1:0\n").unwrap();
    world.run(&["service", "install", "--platform", "launchd"], &[("AGENT_OS_ADMIN_TOKEN", &admin)]);
    let plist = plistlib(&world.plist("dev.agent-os.serve"));

    // Started as launchd starts it: its arguments, its working directory, both streams appended
    // to its log, and an environment without the token.
    let args: Vec<String> =
        plist["ProgramArguments"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    let log_path = PathBuf::from(plist["StandardOutPath"].as_str().unwrap());
    let log = || std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
    let mut child = Command::new(&args[0])
        .args(&args[1..])
        .current_dir(plist["WorkingDirectory"].as_str().unwrap())
        .env_clear()
        .env("HOME", &world.home)
        .env("PATH", "/usr/bin:/bin")
        .stdout(log())
        .stderr(log())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(" listening on ")) {
            break line.rsplit(' ').next().unwrap().to_string();
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the service exited ({status}): {text}");
        }
        assert!(Instant::now() < deadline, "the service did not come up: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };

    assert_eq!(get(&url, "/api/v1/projects", &admin), 200, "the env file's admin token is the admin token");
    assert_eq!(get(&url, "/api/v1/projects", "aosa_not-the-token-at-all-0000000"), 401);
    #[cfg(target_os = "linux")]
    for what in ["environ", "cmdline"] {
        let bytes = std::fs::read(format!("/proc/{}/{what}", child.id())).unwrap();
        assert!(!text(&bytes).contains(&admin), "the token is in /proc/PID/{what}");
    }
    let logged = std::fs::read_to_string(&log_path).unwrap();
    assert!(!logged.contains(&admin), "the log: {logged}");
    assert!(!logged.contains("shown once"), "no token was generated: {logged}");

    // SAFETY: SIGTERM to our own child.
    unsafe { kill(child.id() as i32, 15) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the service did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "a clean stop exits 0, which KeepAlive's SuccessfulExit=false leaves stopped");
}

#[test]
fn env_file_sets_variables_before_the_options_read_the_environment() {
    let world = World::new();
    let file = world.root.join("client.env");
    std::fs::write(&file, "# where the CLI goes\nAGENT_OS_URL=http://127.0.0.1:9\nAGENT_OS_TOKEN='aosa_x'\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = world.run(&["--env-file", file.to_str().unwrap(), "project", "list"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(text(&out.stderr).contains("127.0.0.1:9"), "the file's AGENT_OS_URL was used: {}", both(&out));
    assert!(!text(&out.stderr).contains("warning"), "{}", both(&out));

    // A file others can read still works, with a warning.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = world.run(&["--env-file", file.to_str().unwrap(), "project", "list"], &[]);
    assert!(text(&out.stderr).contains("chmod 600"), "{}", both(&out));

    // A line it cannot read stops everything, naming the file and the line.
    std::fs::write(&file, "A=1\nnot a line\n").unwrap();
    let out = world.run(&["--env-file", file.to_str().unwrap(), "cron", "next", "@daily"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(text(&out.stderr).contains(&format!("{}:2:", file.display())), "{}", both(&out));

    let missing = world.root.join("missing.env");
    let out = world.run(&["--env-file", missing.to_str().unwrap(), "cron", "next", "@daily"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(text(&out.stderr).contains("missing.env"), "{}", both(&out));
}
