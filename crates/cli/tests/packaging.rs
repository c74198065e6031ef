//! How Agent OS is shipped, checked without the services that use it: the Dockerfile (read,
//! and its runtime command and HEALTHCHECK run with its environment, a temporary directory
//! standing in for `/data`), `railway.toml`, the release workflow and `scripts/install.sh`
//! (run against releases served over HTTP on 127.0.0.1, one of them tampered with).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_agent-os");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

/// One instruction: its keyword (upper case) and the rest, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let (keyword, args) = pending.split_once(char::is_whitespace).unwrap_or((&pending, ""));
        out.push(Instruction { keyword: keyword.to_ascii_uppercase(), args: args.trim().to_string() });
        pending.clear();
    }
    assert!(pending.is_empty(), "the Dockerfile ends inside a continued line");
    out
}

/// The image's stages, each from its FROM on.
fn stages(all: Vec<Instruction>) -> Vec<Vec<Instruction>> {
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for i in all {
        if i.keyword == "FROM" {
            stages.push(Vec::new());
        }
        stages.last_mut().expect("the Dockerfile starts with FROM").push(i);
    }
    stages
}

/// The variables a stage's ENV lines set (`ENV A=1 B=2` form).
fn env_of(stage: &[Instruction]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for i in stage.iter().filter(|i| i.keyword == "ENV") {
        for pair in i.args.split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("ENV {}: write KEY=VALUE", i.args));
            env.insert(k.to_string(), v.to_string());
        }
    }
    env
}

/// An exec-form command (`["agent-os", "serve"]`).
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not an exec-form command: {e}"))
}

fn one<'a>(stage: &'a [Instruction], keyword: &str) -> &'a Instruction {
    let found: Vec<&Instruction> = stage.iter().filter(|i| i.keyword == keyword).collect();
    assert_eq!(found.len(), 1, "one {keyword} in the stage: {stage:?}");
    found[0]
}

/// The runtime stage's command and healthcheck, with the environment it sets.
struct Runtime {
    env: BTreeMap<String, String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
}

fn runtime() -> Runtime {
    let stages = stages(instructions(&read("Dockerfile")));
    let last = stages.last().unwrap();
    let health = &one(last, "HEALTHCHECK").args;
    let (_, cmd) = health.split_once("CMD ").expect("HEALTHCHECK … CMD [...]");
    Runtime { env: env_of(last), cmd: exec_form(&one(last, "CMD").args), healthcheck: exec_form(cmd) }
}

#[test]
fn the_dockerfile_builds_the_release_binary_and_runs_it_unprivileged_with_its_home_on_data() {
    let text = read("Dockerfile");
    let stages = stages(instructions(&text));
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, run) = (&stages[0], &stages[1]);

    let from = &one(build, "FROM").args;
    assert!(from.starts_with("rust:") && from.contains("-bookworm"), "a Rust image on Debian bookworm: {from}");
    assert!(from.split_whitespace().next().unwrap().split(':').nth(1).unwrap().starts_with("1."), "pinned: {from}");
    assert!(
        build.iter().any(|i| i.keyword == "RUN" && i.args.contains("cargo build --release --locked -p agent-os")),
        "{build:?}"
    );

    assert_eq!(one(run, "FROM").args, "debian:bookworm-slim");
    let installs: Vec<&Instruction> =
        run.iter().filter(|i| i.keyword == "RUN" && i.args.contains("apt-get install")).collect();
    assert_eq!(installs.len(), 1);
    let packages: Vec<&str> = installs[0]
        .args
        .split("apt-get install")
        .nth(1)
        .unwrap()
        .split("&&")
        .next()
        .unwrap()
        .split_whitespace()
        .filter(|w| !w.starts_with('-'))
        .collect();
    assert_eq!(packages, ["ca-certificates", "tzdata"], "nothing else in the runtime image");
    let copy = one(run, "COPY");
    assert!(copy.args.starts_with("--from=") && copy.args.ends_with("/usr/local/bin/agent-os"), "{copy:?}");

    let user = &one(run, "USER").args;
    let uid = user.split(':').next().unwrap();
    assert!(uid != "0" && uid != "root", "not root: {user}");
    assert!(run.iter().all(|i| i.keyword != "VOLUME"), "Railway refuses a VOLUME instruction");
    let env = env_of(run);
    assert_eq!(env.get("AGENT_OS_HOME").map(String::as_str), Some("/data"));
    let port = env.get("PORT").expect("PORT has a default");
    assert_eq!(&one(run, "EXPOSE").args, port, "EXPOSE the port it listens on");
    for k in env.keys() {
        let upper = k.to_ascii_uppercase();
        assert!(
            !["TOKEN", "SECRET", "PASSWORD", "DATABASE_URL", "KEY"].iter().any(|s| upper.contains(s)),
            "no secret is built into the image: {k}"
        );
    }
    let rt = runtime();
    assert_eq!(rt.cmd, ["agent-os", "serve"], "serve, listening where PORT says");
    assert_eq!(rt.healthcheck, ["agent-os", "healthcheck"]);

    // The build context leaves out build output and secrets.
    let ignore = read(".dockerignore");
    for line in ["target/", ".git/", "**/.env"] {
        assert!(ignore.lines().any(|l| l.trim() == line), ".dockerignore lists {line}");
    }
}

/// The image's command, run as the image would: its ENV (a temporary directory for `/data`),
/// the PORT a platform gives, nothing else.
fn image_command(argv: &[String], env: &BTreeMap<String, String>, data: &Path, port: u16) -> Command {
    let program = if argv[0] == "agent-os" { BIN.to_string() } else { argv[0].clone() };
    let mut c = Command::new(program);
    c.args(&argv[1..]).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        c.env("PATH", path);
    }
    for (k, v) in env {
        let v = match v.strip_prefix("/data") {
            Some(rest) => format!("{}{rest}", data.display()),
            None => v.clone(),
        };
        c.env(k, v);
    }
    // The runtime user's home is /data; the platform sets the port.
    c.env("HOME", data).env("PORT", port.to_string()).current_dir(data);
    c
}

fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_image_s_command_serves_on_port_and_its_healthcheck_tells_up_from_down() {
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err_path = tmp.path().join("serve.err");
    let mut serve = image_command(&rt.cmd, &rt.env, &data, port);
    serve.stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()));
    let mut server = Killed(serve.spawn().unwrap());
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        if let Some((200, body)) = http_get(&addr, "/healthz") {
            break body;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("the image's command exited ({status}): {}", std::fs::read_to_string(&err_path).unwrap());
        }
        assert!(Instant::now() < deadline, "no answer on {addr}: {}", std::fs::read_to_string(&err_path).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(health.contains(r#""status":"ok""#) && health.contains(r#""database":"sqlite""#), "{health}");
    // Its state is in the home the image names.
    for file in ["config.yaml", "agent-os.db", "client.json"] {
        assert!(data.join(file).exists(), "{file} in /data");
    }
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(err.contains("warning: Agent OS listens on every network interface"), "no public URL set yet: {err}");

    // The HEALTHCHECK, run in the same environment, passes while the server is up…
    let check = image_command(&rt.healthcheck, &rt.env, &data, port).output().unwrap();
    assert!(check.status.success(), "{check:?}");
    // …and fails once it is gone.
    // SAFETY: a signal to our own child.
    unsafe { kill(server.0.id() as i32, 15) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let check = image_command(&rt.healthcheck, &rt.env, &data, port).output().unwrap();
    assert_eq!(check.status.code(), Some(1), "{check:?}");
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

// ---------------------------------------------------------------------------------------------
// railway.toml and the release workflow

/// The value at `path` in a TOML table, as text (strings and integers).
fn toml_at(table: &toml::de::DeTable, path: &[&str]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let value = table.iter().find(|(k, _)| k.get_ref() == first).map(|(_, v)| v.get_ref())?;
    match (value, rest.is_empty()) {
        (toml::de::DeValue::Table(t), false) => toml_at(t, rest),
        (toml::de::DeValue::String(s), true) => Some(s.to_string()),
        (toml::de::DeValue::Integer(i), true) => Some(i.as_str().to_string()),
        _ => None,
    }
}

#[test]
fn railway_builds_the_dockerfile_checks_healthz_and_restarts_on_failure() {
    let text = read("railway.toml");
    let root = toml::de::DeTable::parse(&text).unwrap();
    let root = root.get_ref();
    assert_eq!(toml_at(root, &["build", "builder"]).as_deref(), Some("DOCKERFILE"));
    let dockerfile = toml_at(root, &["build", "dockerfilePath"]).unwrap();
    assert!(repo().join(&dockerfile).is_file(), "{dockerfile} exists");
    assert_eq!(toml_at(root, &["deploy", "healthcheckPath"]).as_deref(), Some("/healthz"));
    let timeout: u32 = toml_at(root, &["deploy", "healthcheckTimeout"]).unwrap().parse().unwrap();
    assert!(timeout >= 30, "time for a first start's migrations: {timeout}");
    assert_eq!(toml_at(root, &["deploy", "restartPolicyType"]).as_deref(), Some("ON_FAILURE"));
    let retries: u32 = toml_at(root, &["deploy", "restartPolicyMaxRetries"]).unwrap().parse().unwrap();
    assert!(retries > 0);
    // The image's own command runs: no startCommand overrides it.
    assert_eq!(toml_at(root, &["deploy", "startCommand"]), None);
    // The path Railway checks is the one the server answers without a token.
    let health = http_path_of_healthz();
    assert_eq!(health, "/healthz");
}

/// The health operation's path, from the OpenAPI document the binary prints.
fn http_path_of_healthz() -> String {
    let out = Command::new(BIN).arg("openapi").output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    paths.keys().find(|p| p.contains("health") && !p.contains("projects")).unwrap().clone()
}

#[test]
fn the_release_workflow_builds_four_targets_on_a_version_tag_and_publishes_checksums() {
    let text = read(".github/workflows/release.yml");
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    // `on` stays a string for a YAML 1.2 reader; GitHub reads it so too.
    let tags = &doc["on"]["push"]["tags"];
    assert_eq!(tags, &serde_json::json!(["v*"]), "{doc}");
    let build = &doc["jobs"]["build"];
    let targets: Vec<&str> = build["strategy"]["matrix"]["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["target"].as_str().unwrap())
        .collect();
    let mut sorted = targets.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["aarch64-apple-darwin", "aarch64-unknown-linux-gnu", "x86_64-apple-darwin", "x86_64-unknown-linux-gnu"]
    );
    let runs = |job: &Value| -> String {
        job["steps"].as_array().unwrap().iter().filter_map(|s| s["run"].as_str()).collect::<Vec<_>>().join("\n")
    };
    let build_runs = runs(build);
    assert!(build_runs.contains("cargo build --release --locked -p agent-os --target \"$TARGET\""), "{build_runs}");
    assert!(build_runs.contains("name=\"agent-os-$VERSION-$TARGET\""), "{build_runs}");
    assert!(build_runs.contains("tar -C dist -czf \"dist/$name.tar.gz\" \"$name\""), "{build_runs}");
    let publish = &doc["jobs"]["publish"];
    assert_eq!(publish["needs"], "build");
    assert_eq!(publish["permissions"]["contents"], "write");
    let publish_runs = runs(publish);
    assert!(publish_runs.contains("sha256sum agent-os-*.tar.gz > SHA256SUMS"), "{publish_runs}");
    assert!(publish_runs.contains("gh release create") && publish_runs.contains("dist/SHA256SUMS"), "{publish_runs}");
    assert!(publish_runs.contains("scripts/install.sh"), "the installer is a release asset too");
}

// ---------------------------------------------------------------------------------------------
// scripts/install.sh

/// The release target this machine's binary is, as the release names it.
fn this_target() -> String {
    let os = match std::env::consts::OS {
        "linux" => "unknown-linux-gnu",
        "macos" => "apple-darwin",
        other => panic!("no release target for {other}"),
    };
    format!("{}-{os}", std::env::consts::ARCH)
}

const OTHER_TARGETS: [&str; 4] =
    ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu", "aarch64-apple-darwin", "x86_64-apple-darwin"];

/// A release of the real binary for this machine in `root`, laid out as GitHub serves one
/// (`download/vVERSION/FILE` and `latest/download/FILE`), with SHA256SUMS listing the other
/// targets too. Returns the tarball's name.
fn release(root: &Path) -> String {
    let name = format!("agent-os-{VERSION}-{}", this_target());
    let stage = root.join("stage");
    std::fs::create_dir_all(stage.join(&name)).unwrap();
    std::fs::copy(BIN, stage.join(&name).join("agent-os")).unwrap();
    std::fs::copy(repo().join("README.md"), stage.join(&name).join("README.md")).unwrap();
    let tarball = format!("{name}.tar.gz");
    let packed = stage.join(&tarball);
    let st = Command::new("tar").arg("-C").arg(&stage).arg("-czf").arg(&packed).arg(&name).status().unwrap();
    assert!(st.success());
    let bytes = std::fs::read(&packed).unwrap();
    let mut sums = String::new();
    for target in OTHER_TARGETS {
        if target != this_target() {
            let other = format!("agent-os-{VERSION}-{target}.tar.gz");
            sums.push_str(&format!("{:x}  {other}\n", Sha256::digest(other.as_bytes())));
        }
    }
    sums.push_str(&format!("{:x}  {tarball}\n", Sha256::digest(&bytes)));
    for dir in [root.join(format!("download/v{VERSION}")), root.join("latest/download")] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&tarball), &bytes).unwrap();
        std::fs::write(dir.join("SHA256SUMS"), &sums).unwrap();
    }
    tarball
}

/// Serves `root` over HTTP on 127.0.0.1 (GET only, 404 for what is missing) and records the
/// paths asked for.
fn serve_dir(root: PathBuf) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            log.lock().unwrap().push(path.clone());
            let file = root.join(path.trim_start_matches('/'));
            let ok = !path.contains("..") && file.is_file();
            let body = if ok { std::fs::read(&file).unwrap() } else { b"not found".to_vec() };
            let status = if ok { "200 OK" } else { "404 Not Found" };
            let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(&body);
        }
    });
    (base, asked)
}

/// `install.sh` under a POSIX shell (dash when there is one), with only `env` of its settings.
fn install(env: &[(&str, &str)], home: &Path, tmpdir: &Path) -> std::process::Output {
    let shell = if Path::new("/usr/bin/dash").exists() { "/usr/bin/dash" } else { "sh" };
    let mut c = Command::new(shell);
    c.arg(repo().join("scripts/install.sh"));
    for k in ["AGENT_OS_VERSION", "AGENT_OS_INSTALL_DIR", "AGENT_OS_INSTALL_BASE_URL"] {
        c.env_remove(k);
    }
    c.env("HOME", home).env("TMPDIR", tmpdir).envs(env.iter().copied());
    c.output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn install_sh_installs_this_machine_s_release_and_it_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("releases");
    let tarball = release(&root);
    let (base, asked) = serve_dir(root);
    let home = tmp.path().join("home");
    let scratch = tmp.path().join("tmp");
    std::fs::create_dir_all(&scratch).unwrap();

    // A named version, into a directory that is not on PATH: the script says how to add it.
    let dir = tmp.path().join("bin");
    let dir_text = dir.display().to_string();
    let o = install(
        &[
            ("AGENT_OS_INSTALL_BASE_URL", &format!("{base}/")),
            ("AGENT_OS_VERSION", &format!("v{VERSION}")),
            ("AGENT_OS_INSTALL_DIR", &dir_text),
        ],
        &home,
        &scratch,
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("checksum verified"), "{out}");
    assert!(out.contains(&format!("installed agent-os {VERSION} to {dir_text}/agent-os")), "{out}");
    assert!(out.contains("is not on your PATH") && out.contains(&format!("export PATH=\"{dir_text}:$PATH\"")), "{out}");
    let v = Command::new(dir.join("agent-os")).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), format!("agent-os {VERSION}"));
    assert!(asked.lock().unwrap().contains(&format!("/download/v{VERSION}/{tarball}")), "{:?}", asked.lock().unwrap());

    // The latest release, into the default ~/.local/bin, which is on PATH: no advice needed.
    let default_dir = home.join(".local/bin");
    let path = format!("{}:{}", default_dir.display(), std::env::var("PATH").unwrap_or_default());
    let o = install(&[("AGENT_OS_INSTALL_BASE_URL", &base), ("PATH", &path)], &home, &scratch);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("is not on your PATH"), "{}", text(&o));
    let v = Command::new(default_dir.join("agent-os")).arg("--version").output().unwrap();
    assert!(v.status.success());
    assert!(asked.lock().unwrap().contains(&format!("/latest/download/{tarball}")), "{:?}", asked.lock().unwrap());
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0, "the script cleans up after itself");
}

#[test]
fn install_sh_refuses_a_tampered_download_and_installs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("releases");
    let tarball = release(&root);
    // Someone changed the tarball after the checksums were written.
    let served = root.join(format!("download/v{VERSION}")).join(&tarball);
    let mut f = std::fs::OpenOptions::new().append(true).open(&served).unwrap();
    f.write_all(b"\0not what was released").unwrap();
    drop(f);
    let (base, _) = serve_dir(root.clone());
    let home = tmp.path().join("home");
    let scratch = tmp.path().join("tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    let dir = tmp.path().join("bin");
    let dir_text = dir.display().to_string();
    let o = install(
        &[("AGENT_OS_INSTALL_BASE_URL", &base), ("AGENT_OS_VERSION", VERSION), ("AGENT_OS_INSTALL_DIR", &dir_text)],
        &home,
        &scratch,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("error: checksum mismatch for {tarball}")) && err.contains("Nothing was installed"),
        "{err}"
    );
    assert!(!dir.exists(), "not even the directory is made");
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0, "the download is removed");

    // A release with no build for this machine says so.
    let sums = root.join("latest/download/SHA256SUMS");
    let kept: String = std::fs::read_to_string(&sums)
        .unwrap()
        .lines()
        .filter(|l| !l.contains(&this_target()))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&sums, kept).unwrap();
    let o = install(&[("AGENT_OS_INSTALL_BASE_URL", &base), ("AGENT_OS_INSTALL_DIR", &dir_text)], &home, &scratch);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("has no build for {}", this_target())),
        "{}",
        text(&o)
    );
    assert!(!dir.exists());
}
