//! The real `agent-os serve` as a hosting platform starts it: `PORT`, `DATABASE_URL`,
//! `AGENT_OS_PUBLIC_URL` and `AGENT_OS_ADMIN_TOKEN` from the environment, their precedence
//! against flags and config.yaml, the warning for a server reachable from elsewhere without
//! HTTPS, and `agent-os healthcheck`. Real processes, real time, waits with deadlines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_agent-os");

/// Every variable that would steer `serve` from outside the test.
const STEERING: [&str; 8] = [
    "PORT",
    "DATABASE_URL",
    "AGENT_OS_DATABASE_URL",
    "AGENT_OS_PUBLIC_URL",
    "AGENT_OS_ADMIN_TOKEN",
    "AGENT_OS_URL",
    "AGENT_OS_TOKEN",
    "AGENT_OS_HOME",
];

struct Server {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Server {
    /// `agent-os serve --home HOME ARGS` with only `env` of the steering variables set.
    fn spawn(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Server {
        std::fs::create_dir_all(home).unwrap();
        let out = home.with_extension("out");
        let err = home.with_extension("err");
        let mut c = Command::new(BIN);
        c.arg("serve").arg("--home").arg(home).args(args);
        for k in STEERING {
            c.env_remove(k);
        }
        c.envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&err).unwrap()));
        Server { child: c.spawn().unwrap(), out, err }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Waits until `base/healthz` answers 200, and returns its body.
    fn wait_healthy(&mut self, base: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some((200, _, body)) = http(base, "GET", "/healthz", &[], "") {
                return body;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("serve exited ({status}) before {base} answered:\n{}\n{}", self.output(), self.errors());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{base}/healthz never answered 200:\n{}\n{}", self.output(), self.errors());
    }

    /// SIGTERM, then waits for the exit.
    fn stop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { kill(self.child.id() as i32, 15) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("serve did not stop within 20 s");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// A port nothing listens on now (the server binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A minimal HTTP/1.1 request: status, head and body.
fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)], form: &str) -> Option<(u16, String, String)> {
    let addr = base.strip_prefix("http://")?;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !form.is_empty() {
        req.push_str(&format!("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n", form.len()));
    }
    req.push_str("\r\n");
    req.push_str(form);
    s.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Some((status, head.to_string(), body.to_string()))
}

/// Whether something listens on every IPv4 interface at `port` (Linux: `/proc/net/tcp`).
fn listens_on_every_interface(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("00000000:{port:04X}");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1] == local && f[3] == "0A"
    })
}

fn healthcheck(home: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.arg("healthcheck");
    for k in STEERING {
        c.env_remove(k);
    }
    c.env("AGENT_OS_HOME", home).envs(env.iter().copied()).output().unwrap()
}

/// The admin token `serve` left for the local CLI.
fn admin_token(home: &Path) -> String {
    let text = std::fs::read_to_string(home.join("client.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["token"].as_str().unwrap().to_string()
}

#[test]
fn port_from_the_platform_is_listened_on_every_interface_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let port = free_port();
    let port_text = port.to_string();
    let mut s = Server::spawn(&home, &[("PORT", &port_text)], &[]);
    let base = format!("http://127.0.0.1:{port}");
    let health = s.wait_healthy(&base);
    assert!(health.contains(r#""status":"ok""#), "{health}");
    let out = s.output();
    assert!(out.contains(&format!("listen address: 0.0.0.0:{port} (from PORT)")), "{out}");
    assert!(out.contains(&format!("public URL: {base} (the listen address)")), "{out}");
    #[cfg(target_os = "linux")]
    assert!(listens_on_every_interface(port), "0.0.0.0:{port} is listening");

    // The warning, on stderr and in the log, says what is exposed and what to set.
    let err = s.errors();
    let warning = format!(
        "Agent OS listens on every network interface (0.0.0.0:{port}), beyond this machine, and its public URL {base} is not https://"
    );
    assert!(err.contains(&format!("warning: {warning}")), "{err}");
    assert!(err.lines().any(|l| l.contains("WARN") && l.contains(&warning)), "the log has it too: {err}");
    assert!(err.contains("AGENT_OS_PUBLIC_URL") && err.contains("docs/deploy.md"), "{err}");

    // The healthcheck finds the server through the home, as a container's HEALTHCHECK does.
    let h = healthcheck(&home, &[]);
    assert!(h.status.success(), "{h:?}");
    assert!(String::from_utf8_lossy(&h.stdout).starts_with("ok: Agent OS"), "{h:?}");
    s.stop();
    let h = healthcheck(&home, &[]);
    assert_eq!(h.status.code(), Some(1), "a stopped server is unhealthy: {h:?}");
    assert!(String::from_utf8_lossy(&h.stderr).contains(&format!("unhealthy: GET {base}/healthz")), "{h:?}");
}

#[test]
fn an_https_public_url_from_the_environment_quiets_the_warning_and_secures_the_cookie() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let port = free_port();
    let port_text = port.to_string();
    let env = [("PORT", port_text.as_str()), ("AGENT_OS_PUBLIC_URL", "https://aos.example.test/")];
    let mut s = Server::spawn(&home, &env, &[]);
    let base = format!("http://127.0.0.1:{port}");
    s.wait_healthy(&base);
    let out = s.output();
    assert!(out.contains("public URL: https://aos.example.test (from AGENT_OS_PUBLIC_URL)"), "{out}");
    assert!(!s.errors().contains("warning: Agent OS listens"), "{}", s.errors());
    // The server knows it is reached over HTTPS: the session cookie is Secure.
    let form = format!("secret={}&next=%2F", admin_token(&home));
    let (status, head, _) = http(&base, "POST", "/login", &[], &form).unwrap();
    assert_eq!(status, 303, "{head}");
    let cookie = head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[test]
fn the_flag_then_the_config_file_then_port_decide_where_serve_listens() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let (file_port, platform_port) = (free_port(), free_port());
    std::fs::write(
        home.join("config.yaml"),
        format!("bind: 127.0.0.1:{file_port}\npublic_url: https://file.example.test\n"),
    )
    .unwrap();
    let platform = platform_port.to_string();

    // config.yaml names an address: PORT loses, and serve says so.
    let mut s = Server::spawn(&home, &[("PORT", &platform)], &[]);
    s.wait_healthy(&format!("http://127.0.0.1:{file_port}"));
    let out = s.output();
    assert!(out.contains(&format!("listen address: 127.0.0.1:{file_port} (from config.yaml)")), "{out}");
    assert!(out.contains("public URL: https://file.example.test (from config.yaml)"), "{out}");
    let err = s.errors();
    assert!(
        err.contains(&format!("note: PORT={platform_port} is set, but the listen address 127.0.0.1:{file_port}")),
        "{err}"
    );
    assert!(!err.contains("warning: Agent OS listens"), "loopback only: {err}");
    assert!(
        http(&format!("http://127.0.0.1:{platform_port}"), "GET", "/healthz", &[], "").is_none(),
        "nothing on PORT"
    );
    s.stop();

    // The flag wins over the file, and AGENT_OS_PUBLIC_URL over public_url in the file.
    let flag_port = free_port();
    let bind = format!("127.0.0.1:{flag_port}");
    let env = [("PORT", platform.as_str()), ("AGENT_OS_PUBLIC_URL", "https://env.example.test")];
    let mut s = Server::spawn(&home, &env, &["--bind", &bind]);
    s.wait_healthy(&format!("http://{bind}"));
    let out = s.output();
    assert!(out.contains(&format!("listen address: {bind} (from --bind)")), "{out}");
    assert!(out.contains("public URL: https://env.example.test (from AGENT_OS_PUBLIC_URL)"), "{out}");
    s.stop();

    // And --public-url over AGENT_OS_PUBLIC_URL.
    let mut s = Server::spawn(&home, &env, &["--bind", "127.0.0.1:0", "--public-url", "https://flag.example.test"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.output().contains("public URL:") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(s.output().contains("public URL: https://flag.example.test (from --public-url)"), "{}", s.output());
    s.stop();
}

#[test]
fn a_bad_port_or_public_url_from_the_environment_stops_the_start_with_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |home: &Path, env: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.arg("serve").arg("--home").arg(home);
        for k in STEERING {
            c.env_remove(k);
        }
        c.envs(env.iter().copied()).output().unwrap()
    };
    let home = tmp.path().join("port");
    let o = run(&home, &[("PORT", "web")]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(r#"error: PORT "web" is not a port number (1 to 65535)"#) && err.contains("--bind"), "{err}");
    assert!(!home.join("agent-os.db").exists(), "nothing is created before the address is known");

    let home = tmp.path().join("public");
    let o = run(&home, &[("AGENT_OS_PUBLIC_URL", "aos.example.test"), ("PORT", &free_port().to_string())]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(r#"error: AGENT_OS_PUBLIC_URL "aos.example.test" is not an http(s) URL"#), "{err}");
}

#[test]
fn what_names_the_database_for_agent_os_wins_over_the_platform_s_database_url() {
    let tmp = tempfile::tempdir().unwrap();
    // Were this used, the start would fail: nothing listens on port 9.
    let platform = ("DATABASE_URL", "postgres://someone:pw@127.0.0.1:9/their_app");

    // AGENT_OS_DATABASE_URL wins.
    let home = tmp.path().join("env");
    let own = format!("sqlite://{}?mode=rwc", home.join("own.db").display());
    let port = free_port().to_string();
    let mut s = Server::spawn(&home, &[platform, ("AGENT_OS_DATABASE_URL", &own), ("PORT", &port)], &[]);
    let health = s.wait_healthy(&format!("http://127.0.0.1:{port}"));
    assert!(health.contains(r#""database":"sqlite""#), "{health}");
    assert!(home.join("own.db").exists() && !home.join("agent-os.db").exists());
    assert!(s.output().contains("(from AGENT_OS_DATABASE_URL)"), "{}", s.output());
    let err = s.errors();
    assert!(err.contains("note: DATABASE_URL is set, but the database named from AGENT_OS_DATABASE_URL wins"), "{err}");
    assert!(!err.contains("pw@"), "no password in the note: {err}");
    s.stop();

    // database_url in config.yaml wins.
    let home = tmp.path().join("file");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("config.yaml"),
        format!("database_url: \"sqlite://{}?mode=rwc\"\n", home.join("file.db").display()),
    )
    .unwrap();
    let mut s = Server::spawn(&home, &[platform, ("PORT", &port)], &[]);
    s.wait_healthy(&format!("http://127.0.0.1:{port}"));
    assert!(home.join("file.db").exists(), "the file's database");
    assert!(s.output().contains("(from config.yaml)"), "{}", s.output());
    s.stop();

    // A DATABASE_URL that is not PostgreSQL is someone else's: the default SQLite file.
    let home = tmp.path().join("mysql");
    let mut s = Server::spawn(&home, &[("DATABASE_URL", "mysql://root:pw@127.0.0.1/shop"), ("PORT", &port)], &[]);
    s.wait_healthy(&format!("http://127.0.0.1:{port}"));
    assert!(home.join("agent-os.db").exists());
    let err = s.errors();
    assert!(err.contains(r#"note: DATABASE_URL is set but is not a PostgreSQL URL (it starts with "mysql""#), "{err}");
    s.stop();
}

#[test]
fn database_url_and_admin_token_from_the_platform_run_agent_os_on_postgresql() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(db) = rt.block_on(agent_os_store::testing::PgDatabase::create()) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let port = free_port().to_string();
    let admin = format!("aosa_{}", "0a1b".repeat(12));
    let env = [
        ("PORT", port.as_str()),
        ("DATABASE_URL", db.url.as_str()),
        ("AGENT_OS_ADMIN_TOKEN", admin.as_str()),
        ("AGENT_OS_PUBLIC_URL", "https://aos.example.test"),
    ];
    let mut s = Server::spawn(&home, &env, &[]);
    let base = format!("http://127.0.0.1:{port}");
    let health = s.wait_healthy(&base);
    assert!(health.contains(r#""database":"postgres""#), "{health}");
    assert!(!home.join("agent-os.db").exists(), "no SQLite file when the platform names PostgreSQL");
    let out = s.output();
    assert!(out.contains("(from DATABASE_URL)") && out.contains("database: postgres://"), "{out}");
    assert!(!out.contains("admin token (shown once"), "the given token is the admin token: {out}");
    // The given token is the admin token; another is refused.
    let bearer = format!("Bearer {admin}");
    let (status, _, body) = http(&base, "GET", "/api/v1/projects", &[("Authorization", &bearer)], "").unwrap();
    assert_eq!((status, body.as_str()), (200, "[]"));
    let wrong = format!("Bearer aosa_{}", "ffff".repeat(12));
    assert_eq!(http(&base, "GET", "/api/v1/projects", &[("Authorization", &wrong)], "").unwrap().0, 401);
    // What this server stored is in PostgreSQL: a second server on the same database, with its
    // own home and no token given, accepts the same token.
    s.stop();
    let home2 = tmp.path().join("home2");
    let env2 = [("PORT", port.as_str()), ("DATABASE_URL", db.url.as_str())];
    let mut s2 = Server::spawn(&home2, &env2, &[]);
    s2.wait_healthy(&base);
    assert_eq!(http(&base, "GET", "/api/v1/projects", &[("Authorization", &bearer)], "").unwrap().0, 200);
    s2.stop();
    rt.block_on(db.drop_it());
}
