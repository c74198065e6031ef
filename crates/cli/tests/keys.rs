//! `agent-os keys` as a user runs it: the real binary on project trees built as real git
//! repositories, one per way credentials leak between projects, plus the migration off a shared
//! `.env` that DESIGN.md's user starts from. Every test plants a canary key and checks it never
//! shows up in anything Agent OS prints or writes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_agent-os");

/// A scratch world: a user's home (so git sees no global config), Agent OS's home, and a
/// canary key that must never be printed or written by Agent OS.
struct World {
    dir: tempfile::TempDir,
    canary: String,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("user")).unwrap();
        World { dir, canary: format!("sk-proj-{}", random_chars(40)) }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Agent OS's home.
    fn home(&self) -> PathBuf {
        self.path("agent-os-home")
    }

    fn user_home(&self) -> PathBuf {
        self.path("user")
    }

    /// Writes `files` (path, text) under `rel`.
    fn write(&self, rel: &str, files: &[(&str, &str)]) -> PathBuf {
        let root = self.path(rel);
        for (name, text) in files {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
        }
        root
    }

    /// A git repository at `rel` holding `files`, with `add` committed (`["-A"]` for all).
    fn repo(&self, rel: &str, files: &[(&str, &str)], add: &[&str]) -> PathBuf {
        let root = self.write(rel, files);
        self.git(&root, &["init", "-q", "-b", "main"]);
        let args: Vec<&str> = match add {
            ["-A"] => vec!["add", "-A"],
            files => ["add", "--"].iter().chain(files).copied().collect(),
        };
        self.git(&root, &args);
        self.git(&root, &["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init"]);
        root
    }

    fn git(&self, dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("HOME", self.user_home())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("GIT_CONFIG_GLOBAL")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    }

    /// Runs `agent-os --home HOME keys ARGS…` as the world's user, and checks the canary is in
    /// neither output.
    fn keys(&self, args: &[&str]) -> Output {
        let out = Command::new(BIN)
            .arg("--home")
            .arg(self.home())
            .arg("keys")
            .args(args)
            .env("HOME", self.user_home())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("GIT_CONFIG_GLOBAL")
            .env_remove("AGENT_OS_HOME")
            .env_remove("AGENT_OS_URL")
            .env_remove("AGENT_OS_TOKEN")
            .output()
            .unwrap();
        self.no_canary("stdout", &out.stdout);
        self.no_canary("stderr", &out.stderr);
        out
    }

    /// `keys audit --json PATHS…`: the exit code and the findings.
    fn audit(&self, paths: &[&Path], extra: &[&str]) -> (i32, Vec<Value>) {
        let mut args: Vec<String> = vec!["audit".into(), "--json".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(paths.iter().map(|p| p.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.keys(&args);
        let findings: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", text(&out.stdout), text(&out.stderr)));
        (out.status.code().unwrap(), findings.as_array().unwrap().clone())
    }

    fn no_canary(&self, what: &str, bytes: &[u8]) {
        assert!(!text(bytes).contains(&self.canary), "the canary key leaked into {what}:\n{}", text(bytes));
        // Nor a long piece of it.
        let middle = &self.canary[8..32];
        assert!(!text(bytes).contains(middle), "part of the canary key leaked into {what}");
    }

    /// No file in Agent OS's home, nor any of `files`, holds the canary.
    fn no_canary_in_files(&self, files: &[PathBuf]) {
        let mut all: Vec<PathBuf> = files.to_vec();
        if let Ok(rd) = std::fs::read_dir(self.home()) {
            // Its `.env` is the user's own file (a fixture here), not one Agent OS writes.
            all.extend(rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| !p.ends_with(".env")));
        }
        for f in all {
            if let Ok(bytes) = std::fs::read(&f) {
                self.no_canary(&f.display().to_string(), &bytes);
            }
        }
    }
}

fn random_chars(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut bytes).unwrap();
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The findings of check `check`.
fn of<'a>(findings: &'a [Value], check: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["check"] == check).collect()
}

fn manifest(name: &str, extra: &str) -> String {
    format!("name: {name}\nenv_file: .env\n{extra}")
}

const OPENAI: &str = "keys:\n  OPENAI_API_KEY: { service: openai, key_name: NAME-openai }\n";

fn openai(name: &str) -> String {
    manifest(name, &OPENAI.replace("NAME", name))
}

#[test]
fn an_env_file_git_does_not_ignore_is_an_error() {
    let w = World::new();
    let env = format!("OPENAI_API_KEY={}\n", w.canary);
    let p = w.repo("p", &[("agent-os.yaml", &openai("p")), (".env", &env)], &["agent-os.yaml"]);
    let (code, findings) = w.audit(&[&p], &[]);
    assert_eq!(code, 1, "{findings:#?}");
    let f = of(&findings, "env-not-ignored");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert_eq!(f[0]["severity"], "error");
    assert_eq!(f[0]["project"], "p");
    assert_eq!(f[0]["file"], ".env");
    assert!(f[0]["fix"].as_str().unwrap().contains("/.env"), "{}", f[0]["fix"]);
    assert!(of(&findings, "env-tracked").is_empty());

    // Human output: grouped by project, file, message and fix, and a summary.
    let out = w.keys(&["audit", &p.display().to_string()]);
    let shown = text(&out.stdout);
    assert!(shown.contains(&format!("p ({})", p.canonicalize().unwrap().display())), "{shown}");
    assert!(shown.contains("error    .env  [env-not-ignored]"), "{shown}");
    assert!(shown.contains("fix: add the line `/.env`"), "{shown}");
    assert!(shown.contains("1 project audited: 1 error, 0 warnings"), "{shown}");
    w.no_canary_in_files(&[]);
}

#[test]
fn a_hosted_manifest_that_declares_keys_is_not_told_its_env_file_is_missing() {
    let w = World::new();
    let keys = "keys:\n  OPENAI_API_KEY: { service: openai, key_name: NAME-openai }\n";
    let hosted = format!("name: h\nplugin: {{ url: https://h.example.com/agent-os }}\n{}", keys.replace("NAME", "h"));
    let h = w.write("h", &[("agent-os.yaml", &hosted)]);
    let local = w.write("l", &[("agent-os.yaml", &format!("name: l\n{}", keys.replace("NAME", "l")))]);
    let (_, findings) = w.audit(&[&h, &local], &[]);
    let missing: Vec<&str> = of(&findings, "env-missing").iter().map(|f| f["project"].as_str().unwrap()).collect();
    assert_eq!(missing, ["l"], "only the local project keeps its keys in an env file: {findings:#?}");
}

#[test]
fn a_tracked_env_file_is_an_error_that_says_to_rotate() {
    let w = World::new();
    let env = format!("OPENAI_API_KEY={}\n", w.canary);
    let p = w.repo("p", &[("agent-os.yaml", &openai("p")), (".env", &env)], &["-A"]);
    let (code, findings) = w.audit(&[&p], &[]);
    assert_eq!(code, 1);
    let f = of(&findings, "env-tracked");
    assert_eq!(f.len(), 1, "{findings:#?}");
    let fix = f[0]["fix"].as_str().unwrap();
    assert!(fix.contains("git rm --cached -- .env") && fix.contains("rotate"), "{fix}");
    // Still tracked once .gitignore lists it: git ignores only untracked files.
    std::fs::write(p.join(".gitignore"), ".env\n").unwrap();
    let (_, findings) = w.audit(&[&p], &[]);
    assert_eq!(of(&findings, "env-tracked").len(), 1);
    assert!(of(&findings, "env-not-ignored").is_empty(), "the rules ignore it: {findings:#?}");
    w.no_canary_in_files(&[]);
}

#[test]
fn a_negation_in_gitignore_is_seen_through() {
    let w = World::new();
    let p = w.repo(
        "p",
        &[("agent-os.yaml", &openai("p")), (".gitignore", ".env\n*.log\n!.env\n"), (".env", "OPENAI_API_KEY=x\n")],
        &["agent-os.yaml", ".gitignore"],
    );
    let (_, findings) = w.audit(&[&p], &[]);
    assert_eq!(of(&findings, "env-not-ignored").len(), 1, "`!.env` un-ignores it: {findings:#?}");
}

#[test]
fn a_nested_gitignore_that_ignores_the_env_file_is_enough() {
    let w = World::new();
    // A monorepo: the project is apps/p, its env file config/.env, ignored by config/.gitignore
    // alone (no .gitignore at the top or in the project mentions it).
    let mono = w.repo(
        "mono",
        &[
            ("README.md", "monorepo\n"),
            ("apps/p/agent-os.yaml", &manifest("p", "").replace(".env", "config/.env")),
            ("apps/p/config/.gitignore", ".env\n"),
            ("apps/p/config/.env", "SETTING=1\n"),
        ],
        &["README.md", "apps/p/agent-os.yaml", "apps/p/config/.gitignore"],
    );
    let p = mono.join("apps/p");
    let (code, findings) = w.audit(&[&p], &[]);
    assert!(of(&findings, "env-not-ignored").is_empty(), "{findings:#?}");
    assert!(of(&findings, "env-tracked").is_empty(), "{findings:#?}");
    assert_eq!(code, 0, "{findings:#?}");

    // Without the nested file, it is not ignored.
    std::fs::remove_file(p.join("config/.gitignore")).unwrap();
    let (_, findings) = w.audit(&[&p], &[]);
    assert_eq!(of(&findings, "env-not-ignored")[0]["file"], "config/.env");
}

#[test]
fn a_script_exporting_a_shared_env_file_is_found_with_its_replacement() {
    let w = World::new();
    let shared = w.write("agent_os", &[(".env", &format!("OPENAI_API_KEY={}\n", w.canary))]);
    let script = format!(
        "#!/bin/sh\n# nightly\nexport $(grep -v '^#' {}/.env | xargs)\npython3 scripts/daily.py\n",
        shared.display()
    );
    let p = w.repo(
        "cortana",
        &[
            ("agent-os.yaml", &openai("cortana")),
            (".gitignore", ".env\n"),
            (".env", "OPENAI_API_KEY=sk-proj-own\n"),
            ("scripts/automation/run_daily_update.sh", &script),
        ],
        &["agent-os.yaml", ".gitignore", "scripts/automation/run_daily_update.sh"],
    );
    let (code, findings) = w.audit(&[&p], &[]);
    assert_eq!(code, 1);
    let f = of(&findings, "foreign-env-read");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert_eq!(f[0]["file"], "scripts/automation/run_daily_update.sh");
    assert_eq!(f[0]["line"], 3);
    assert!(f[0]["message"].as_str().unwrap().contains(&format!("{}/.env", shared.display())));
    let fix = f[0]["fix"].as_str().unwrap();
    assert!(fix.contains(r#"export $(grep -v '^#' "$(dirname "$0")/../../.env" | xargs)"#), "{fix}");
    w.no_canary_in_files(&[]);
}

#[test]
fn python_loading_another_project_s_env_file_names_that_project() {
    let w = World::new();
    let other = w.repo(
        "other",
        &[
            ("agent-os.yaml", &openai("other")),
            (".gitignore", ".env\n"),
            (".env", &format!("OPENAI_API_KEY={}\n", w.canary)),
        ],
        &["-A"],
    );
    let py = format!("from dotenv import load_dotenv\n\nload_dotenv(\"{}/.env\")\n", other.display());
    let p = w.repo("p", &[("agent-os.yaml", &openai("p")), (".gitignore", ".env\n"), ("jobs/run.py", &py)], &["-A"]);
    let (_, findings) = w.audit(&[&p, &other], &[]);
    let f = of(&findings, "foreign-env-read");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert_eq!(
        (f[0]["project"].as_str(), f[0]["file"].as_str(), f[0]["line"].as_u64()),
        (Some("p"), Some("jobs/run.py"), Some(3))
    );
    assert!(f[0]["message"].as_str().unwrap().contains("project other's env file"), "{}", f[0]["message"]);
    assert!(f[0]["fix"].as_str().unwrap().contains("load_dotenv(\""), "{}", f[0]["fix"]);
    w.no_canary_in_files(&[]);
}

#[test]
fn one_key_in_two_projects_is_reported_for_both_masked() {
    let w = World::new();
    let env = format!("# mine\nOPENAI_API_KEY={}\nMODEL=gpt-4o-mini-2024\n", w.canary);
    let a = w.repo("a", &[("agent-os.yaml", &openai("a")), (".gitignore", ".env\n"), (".env", &env)], &["-A"]);
    let b_env = format!("LLM_KEY=\"{}\"\nMODEL=gpt-4o-mini-2024\n", w.canary);
    let b = w.repo(
        "b",
        &[
            ("agent-os.yaml", &manifest("b", "keys:\n  LLM_KEY: { service: openai, key_name: b-openai }\n")),
            (".gitignore", ".env\n"),
            (".env", &b_env),
        ],
        &["-A"],
    );
    let (code, findings) = w.audit(&[&a, &b], &[]);
    assert_eq!(code, 1);
    let f = of(&findings, "shared-secret");
    assert_eq!(f.len(), 2, "one per project, and the shared setting is not a secret: {findings:#?}");
    let masked = format!("{}…{}", &w.canary[..4], &w.canary[w.canary.len() - 3..]);
    assert_eq!(
        (f[0]["project"].as_str(), f[0]["file"].as_str(), f[0]["line"].as_u64()),
        (Some("a"), Some(".env"), Some(2))
    );
    let msg = f[0]["message"].as_str().unwrap();
    assert!(msg.contains("OPENAI_API_KEY") && msg.contains("b's LLM_KEY") && msg.contains(&masked), "{msg}");
    assert!(f[1]["message"].as_str().unwrap().contains("a's OPENAI_API_KEY"));
    assert!(f[0]["fix"].as_str().unwrap().contains("a-openai"));
    // The fingerprint key is made once, private, and holds no value.
    let key = std::fs::read_to_string(w.home().join("audit.key")).unwrap();
    assert_eq!(key.len(), 64);
    w.no_canary_in_files(&[]);
}

#[test]
fn a_secret_in_a_tracked_file_is_shown_masked_with_its_line() {
    let w = World::new();
    let config = format!("import os\n\nMODEL = \"gpt-4o\"\nOPENAI_API_KEY = \"{}\"\n", w.canary);
    let p = w.repo(
        "p",
        &[
            ("agent-os.yaml", &openai("p")),
            (".gitignore", ".env\n"),
            ("app/config.py", &config),
            ("Cargo.lock", "checksum = \"Zx9Qp2Lk7Vb4Nm8Rt3Wy6Hc1Jd5Fg0KsZx9Qp2Lk7Vb4\"\n"),
            (".env.example", "OPENAI_API_KEY=sk-...replace-me\n"),
        ],
        &["-A"],
    );
    let (code, findings) = w.audit(&[&p], &[]);
    assert_eq!(code, 1);
    let f = of(&findings, "secret-in-git");
    assert_eq!(f.len(), 1, "lock files and placeholders are not secrets: {findings:#?}");
    assert_eq!((f[0]["file"].as_str(), f[0]["line"].as_u64()), (Some("app/config.py"), Some(4)));
    assert!(f[0]["message"].as_str().unwrap().contains(&format!("{}…", &w.canary[..4])));
    w.no_canary_in_files(&[]);
}

#[test]
fn an_undeclared_credential_is_a_warning_with_the_keys_line_to_add() {
    let w = World::new();
    let env = format!("ANTHROPIC_API_KEY={}\nLOG_LEVEL=debug\nMAX_TOKENS=1000\n", w.canary);
    let p = w.repo(
        "p",
        &[("agent-os.yaml", &manifest("p", "")), (".gitignore", ".env\n"), (".env", &env)],
        &["agent-os.yaml", ".gitignore"],
    );
    let (code, findings) = w.audit(&[&p], &[]);
    assert_eq!(code, 0, "warnings do not fail by default: {findings:#?}");
    let f = of(&findings, "undeclared-credential");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert_eq!((f[0]["severity"].as_str(), f[0]["line"].as_u64()), (Some("warning"), Some(1)));
    let fix = f[0]["fix"].as_str().unwrap();
    assert!(fix.contains("ANTHROPIC_API_KEY: { service: anthropic, key_name: p-anthropic }"), "{fix}");
    let (code, _) = w.audit(&[&p], &["--fail-on", "warning"]);
    assert_eq!(code, 1);
    w.no_canary_in_files(&[]);
}

#[test]
fn a_key_name_off_the_convention_is_a_warning_naming_the_expected_one() {
    let w = World::new();
    let m = manifest(
        "trading",
        "keys:\n  OPENAI_API_KEY: { service: openai, key_name: shared-openai }\n  DISCORD_WEBHOOK_URL: { service: discord, key_name: trading-discord }\n",
    );
    let p = w.repo("trading", &[("agent-os.yaml", &m), (".gitignore", ".env\n"), (".env", "")], &["-A"]);
    let (_, findings) = w.audit(&[&p], &[]);
    let f = of(&findings, "key-name-convention");
    assert_eq!(f.len(), 1, "{findings:#?}");
    assert!(f[0]["message"].as_str().unwrap().contains("\"shared-openai\""));
    assert!(f[0]["fix"].as_str().unwrap().contains("key_name: trading-openai"));
}

#[test]
fn agent_os_s_own_env_file_holding_provider_keys_is_the_shared_key_anti_pattern() {
    let w = World::new();
    w.write(
        "agent-os-home",
        &[(
            ".env",
            &format!(
                "AGENT_OS_ADMIN_TOKEN=aosa_0123456789abcdef0123456789abcdef\nDISCORD_WEBHOOK_URL=https://discord.com/api/webhooks/1/abc\nOPENAI_API_KEY={}\n",
                w.canary
            ),
        )],
    );
    let script = format!("#!/bin/sh\nset -a; . {}/.env; set +a\n", w.home().display());
    let p = w.repo(
        "trading",
        &[("agent-os.yaml", &openai("trading")), (".gitignore", ".env\n"), ("run.sh", &script)],
        &["-A"],
    );
    let (code, findings) = w.audit(&[&p], &[]);
    assert_eq!(code, 1);
    let f = of(&findings, "agent-os-env-holds-keys");
    assert_eq!(f.len(), 1, "Agent OS's own token and webhook may stay: {findings:#?}");
    assert_eq!(f[0]["project"], Value::Null);
    assert_eq!(f[0]["line"], 3);
    assert!(f[0]["message"].as_str().unwrap().contains("shared-key anti-pattern"));
    assert!(f[0]["fix"].as_str().unwrap().contains("trading-openai"), "{}", f[0]["fix"]);
    let read = of(&findings, "foreign-env-read");
    assert_eq!(read.len(), 1, "{findings:#?}");
    assert!(read[0]["message"].as_str().unwrap().contains("Agent OS's own env file"), "{}", read[0]["message"]);
    // Human output has a section for it.
    let out = w.keys(&["audit", &p.display().to_string()]);
    assert!(text(&out.stdout).contains("Agent OS's own env file ("), "{}", text(&out.stdout));
    w.no_canary_in_files(&[]);
}

#[test]
fn bad_arguments_exit_2() {
    let w = World::new();
    let out = w.keys(&["audit", "--fail-on", "sometimes", "."]);
    assert_eq!(out.status.code(), Some(2));
    let empty = w.write("empty", &[("README.md", "no manifest\n")]);
    let out = w.keys(&["audit", &empty.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no agent-os.yaml"), "{}", text(&out.stderr));
    let out = w.keys(&["migrate", "--from", "/nonexistent/.env", "--project", &empty.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_keys_doc_lists_keys_by_service_and_never_values() {
    let w = World::new();
    let env = format!("OPENAI_API_KEY={}\n", w.canary);
    let a = w.repo("trading", &[("agent-os.yaml", &openai("trading")), (".env", &env)], &["agent-os.yaml"]);
    let b = w.repo(
        "cortana",
        &[("agent-os.yaml", &manifest("cortana", "keys:\n  OPENAI_API_KEY: { service: openai }\n")), (".env", &env)],
        &["agent-os.yaml"],
    );
    let c = w.repo("image-workflow", &[("agent-os.yaml", &manifest("image-workflow", ""))], &["-A"]);
    let out_file = w.path("EXTERNAL_RESOURCES.md");
    let out = w.keys(&[
        "doc",
        &a.display().to_string(),
        &b.display().to_string(),
        &c.display().to_string(),
        "--output",
        &out_file.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc = std::fs::read_to_string(&out_file).unwrap();
    assert!(doc.contains("## openai"), "{doc}");
    let trading_env = a.canonicalize().unwrap().join(".env");
    assert!(
        doc.contains(&format!("| trading | `trading-openai` | `OPENAI_API_KEY` | `{}` |", trading_env.display())),
        "{doc}"
    );
    assert!(doc.contains("| cortana | (not named; convention: `cortana-openai`) |"), "{doc}");
    assert!(doc.contains("Projects that declare no keys: image-workflow."), "{doc}");
    w.no_canary_in_files(&[out_file]);
}

/// DESIGN.md's user: cortana's launchd script loads a central `.env` from another directory.
#[test]
fn migrating_off_a_shared_env_file_end_to_end() {
    let w = World::new();
    let shared = w.write(
        "agent_os",
        &[(
            ".env",
            &format!(
                "# one file for everything\nOPENAI_API_KEY={}\nCORTANA_MODEL=gpt-4o-mini\nTRADING_SYMBOLS=BTC,ETH\n",
                w.canary
            ),
        )],
    );
    let script = format!(
        "#!/bin/sh\n# launchd runs this at 22:00\nset -eu\ncd \"$(dirname \"$0\")/../..\"\nexport $(grep -v '^#' {}/.env | xargs)\nexec python3 scripts/core/daily_update.py\n",
        shared.display()
    );
    let py =
        "import os\nkey = os.environ[\"OPENAI_API_KEY\"]\nmodel = os.environ.get(\"CORTANA_MODEL\", \"gpt-4o-mini\")\n";
    let p = w.repo(
        "projects/cortana",
        &[
            ("agent-os.yaml", &openai("cortana")),
            ("scripts/automation/run_daily_update.sh", &script),
            ("scripts/core/daily_update.py", py),
            ("crontab.txt", "0 22 * * * /bin/sh scripts/automation/run_daily_update.sh\n"),
        ],
        &["-A"],
    );
    let script_path = p.join("scripts/automation/run_daily_update.sh");
    let own = r#""$(dirname "$0")/../../.env""#;
    let shared_env = shared.join(".env").display().to_string();
    let project = p.display().to_string();

    // The audit sees the shared file being read.
    let (_, before) = w.audit(&[&p], &[]);
    assert_eq!(of(&before, "foreign-env-read").len(), 1, "{before:#?}");

    // Dry run: lists the names, shows the edit, changes nothing.
    let out = w.keys(&["migrate", "--from", &shared_env, "--project", &project]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("OPENAI_API_KEY") && shown.contains("named cortana-openai"), "{shown}");
    assert!(shown.contains("CORTANA_MODEL"), "{shown}");
    assert!(!shown.contains("TRADING_SYMBOLS"), "cortana does not use it: {shown}");
    assert!(shown.contains("scripts/automation/run_daily_update.sh:5"), "{shown}");
    assert!(shown.contains(&format!("- export $(grep -v '^#' {shared_env} | xargs)")), "{shown}");
    assert!(shown.contains(&format!("+ export $(grep -v '^#' {own} | xargs)")), "{shown}");
    assert!(shown.contains("Dry run: nothing was changed"), "{shown}");
    assert_eq!(std::fs::read_to_string(&script_path).unwrap(), script);
    for untouched in [".env.example", ".gitignore", "scripts/automation/run_daily_update.sh.bak"] {
        assert!(!p.join(untouched).exists(), "{untouched} written by a dry run");
    }

    // --apply: the line is rewritten (the original kept under Agent OS's home), .env.example
    // written, .env ignored.
    let out = w.keys(&["migrate", "--from", &shared_env, "--project", &project, "--apply"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains(&format!("cortana no longer reads {shared_env}")), "{shown}");
    let rewritten = std::fs::read_to_string(&script_path).unwrap();
    assert_eq!(rewritten, script.replace(&format!("{shared_env} "), &format!("{own} ")), "only the one path changed");
    let backups = backups_of(&w.home());
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(backups[0].ends_with("scripts/automation/run_daily_update.sh.bak"), "{backups:?}");
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), script);
    let example = std::fs::read_to_string(p.join(".env.example")).unwrap();
    assert!(example.contains("OPENAI_API_KEY=replace-me") && example.contains("cortana-openai"), "{example}");
    assert!(example.contains("CORTANA_MODEL="), "{example}");
    assert_eq!(std::fs::read_to_string(p.join(".gitignore")).unwrap(), "/.env\n");

    // A second --apply has nothing left to do and does not append to .gitignore again.
    let out = w.keys(&["migrate", "--from", &shared_env, "--project", &project, "--apply"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(p.join(".gitignore")).unwrap(), "/.env\n");
    assert_eq!(backups_of(&w.home()).len(), 1, "nothing was rewritten again");

    // The audit no longer sees the shared file being read, and .env is ignored.
    let (_, after) = w.audit(&[&p], &[]);
    assert!(of(&after, "foreign-env-read").is_empty(), "{after:#?}");
    assert!(of(&after, "env-not-ignored").is_empty(), "{after:#?}");

    let mut written = vec![script_path, p.join(".env.example"), p.join(".gitignore")];
    written.extend(backups_of(&w.home()));
    w.no_canary_in_files(&written);
}

/// Every file under `HOME/backups`.
fn backups_of(home: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![home.join("backups")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.filter_map(Result::ok) {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Runs `command` (as printed by the audit, starting with `agent-os`) through `sh -c`, with
/// this build's binary first on PATH.
fn run_printed(w: &World, command: &str) -> Output {
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("PATH", path)
        .env("HOME", w.user_home())
        .env("AGENT_OS_HOME", w.home())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("AGENT_OS_URL")
        .env_remove("AGENT_OS_TOKEN")
        .output()
        .unwrap();
    w.no_canary("stdout", &out.stdout);
    w.no_canary("stderr", &out.stderr);
    out
}

/// The seed's case: a project's `.env` holds the very value of the legacy shared
/// `agent_os/.env`, which is not Agent OS's home. `--shared` names it, and config.yaml
/// remembers it for the audits after.
#[test]
fn a_key_copied_from_the_legacy_shared_env_file_is_found_once_it_is_named_with_shared() {
    let w = World::new();
    let shared = w.write("legacy files/agent_os", &[(".env", &format!("OPENAI_API_KEY={}\n", w.canary))]);
    let env = format!("OPENAI_API_KEY={}\n", w.canary);
    let p = w.repo(
        "projects/Cortana personal AI",
        &[("agent-os.yaml", &openai("cortana")), (".gitignore", ".env\n"), (".env", &env)],
        &["agent-os.yaml", ".gitignore"],
    );
    let (_, findings) = w.audit(&[&p], &[]);
    assert!(of(&findings, "shared-secret").is_empty(), "nothing to compare with yet: {findings:#?}");

    let shared_env = shared.join(".env").display().to_string();
    let (code, findings) = w.audit(&[&p], &["--shared", &shared_env]);
    assert_eq!(code, 1);
    let f = of(&findings, "shared-secret");
    assert_eq!(f.len(), 1, "{findings:#?}");
    let message = f[0]["message"].as_str().unwrap();
    let canonical = shared.canonicalize().unwrap().join(".env");
    assert!(message.contains(&format!("in the shared env file {}", canonical.display())), "{message}");
    assert!(f[0]["fix"].as_str().unwrap().contains("and remove it from"), "{}", f[0]["fix"]);

    // Remembered: the next audit compares with it without being told.
    let config = std::fs::read_to_string(w.home().join("config.yaml")).unwrap();
    assert!(config.contains("keys:\n  shared:\n") && config.contains(&canonical.display().to_string()), "{config}");
    let (_, findings) = w.audit(&[&p], &[]);
    assert_eq!(of(&findings, "shared-secret").len(), 1, "{findings:#?}");
    // Named again, it is not added twice.
    w.audit(&[&p], &["--shared", &shared_env]);
    let again = std::fs::read_to_string(w.home().join("config.yaml")).unwrap();
    assert_eq!(again, config);

    let out = w.keys(&["audit", "--shared", "/nonexistent/agent_os/.env", &p.display().to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--shared /nonexistent/agent_os/.env: not a file"), "{}", text(&out.stderr));
    w.no_canary_in_files(&[w.home().join("config.yaml")]);
}

/// Paths with spaces, quotes and dollars in the commands the audit prints: pasted into a
/// shell, they run.
#[test]
fn the_fix_commands_the_audit_prints_run_when_pasted_into_a_shell() {
    let w = World::new();
    let shared = w.write("agent_os", &[(".env", &format!("OPENAI_API_KEY={}\n", w.canary))]);
    let script = format!("#!/bin/sh\nset -a; . {}/.env; set +a\n", shared.display());
    let p = w.repo(
        "projects/Cortana personal AI's $stuff",
        &[("agent-os.yaml", &openai("cortana")), (".gitignore", ".env\n"), ("run.sh", &script)],
        &["-A"],
    );
    let (_, findings) = w.audit(&[&p], &[]);
    let f = of(&findings, "foreign-env-read");
    assert_eq!(f.len(), 1, "{findings:#?}");
    let fix = f[0]["fix"].as_str().unwrap();
    let start = fix.find("`agent-os keys migrate").unwrap_or_else(|| panic!("{fix}")) + 1;
    let command = &fix[start..start + fix[start..].find('`').unwrap()];
    let out = run_printed(&w, command);
    assert_eq!(out.status.code(), Some(0), "{command}\n{}\n{}", text(&out.stdout), text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains(&format!("Migrating cortana ({})", p.canonicalize().unwrap().display())), "{shown}");
}

/// `--apply` on a project whose directory has spaces: the script reads its own `.env` by a
/// path relative to itself (and does, run from anywhere), the originals are kept out of the
/// work tree, and the README and CLAUDE.md lines that sent the reader to the shared file are
/// offered, then edited.
#[test]
fn migrate_writes_a_script_relative_path_keeps_backups_out_of_git_and_edits_the_docs() {
    let w = World::new();
    let shared =
        w.write("agent_os", &[(".env", &format!("OPENAI_API_KEY={}\nCORTANA_MODEL=shared-model\n", w.canary))]);
    let script = format!("#!/bin/sh\nset -a; . {}/.env; set +a\necho \"model=$CORTANA_MODEL\"\n", shared.display());
    let readme = "# Cortana\n\nKeys come from `~/agent_os/.env` (shared with the other projects).\nSee agent_os/.env.example for the names.\n";
    let claude = "- Load keys with `source agent_os/.env` before running anything.\n- Use my_agent_os/.env never.\n";
    let p = w.repo(
        "projects/Cortana personal AI",
        &[
            ("agent-os.yaml", &openai("cortana")),
            (".gitignore", ".env\n"),
            ("scripts/automation/run_daily_update.sh", &script),
            ("README.md", readme),
            ("CLAUDE.md", claude),
        ],
        &["-A"],
    );
    std::fs::write(p.join(".env"), "CORTANA_MODEL=own-model\n").unwrap();
    let shared_env = shared.join(".env").display().to_string();
    let project = p.display().to_string();

    let out = w.keys(&["migrate", "--from", &shared_env, "--project", &project]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains(r#"+ set -a; . "$(dirname "$0")/../../.env"; set +a"#), "{shown}");
    assert!(shown.contains("README.md:3"), "{shown}");
    assert!(shown.contains("+ Keys come from `.env` (shared with the other projects)."), "{shown}");
    assert!(shown.contains("CLAUDE.md:1") && !shown.contains("CLAUDE.md:2"), "{shown}");
    assert!(!shown.contains("README.md:4"), "the example file is another file: {shown}");

    let out = w.keys(&["migrate", "--from", &shared_env, "--project", &project, "--apply"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let script_path = p.join("scripts/automation/run_daily_update.sh");
    let rewritten = std::fs::read_to_string(&script_path).unwrap();
    assert!(rewritten.contains(r#"set -a; . "$(dirname "$0")/../../.env"; set +a"#), "{rewritten}");
    // It reads the project's own file, wherever it is started from.
    let run = Command::new("sh").arg(&script_path).current_dir("/").env("HOME", w.user_home()).output().unwrap();
    assert_eq!(text(&run.stdout), "model=own-model\n", "{}", text(&run.stderr));

    let readme_now = std::fs::read_to_string(p.join("README.md")).unwrap();
    assert_eq!(readme_now, readme.replace("`~/agent_os/.env`", "`.env`"), "only the mention changed");
    let claude_now = std::fs::read_to_string(p.join("CLAUDE.md")).unwrap();
    assert_eq!(claude_now, claude.replace("source agent_os/.env", "source .env"));

    // git sees the edits and the new files, and no backup.
    let status = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .current_dir(&p)
        .env("HOME", w.user_home())
        .output()
        .unwrap();
    let status = text(&status.stdout);
    assert!(!status.contains(".bak"), "{status}");
    assert!(
        status.contains(" M scripts/automation/run_daily_update.sh") && status.contains(" M README.md"),
        "{status}"
    );
    let backups = backups_of(&w.home());
    assert_eq!(backups.len(), 3, "{backups:?}");
    assert!(backups.iter().any(|b| std::fs::read_to_string(b).unwrap() == readme), "{backups:?}");
    let mut written = vec![script_path, p.join("README.md"), p.join("CLAUDE.md"), p.join(".env.example")];
    written.extend(backups);
    w.no_canary_in_files(&written);
}

// ---------------------------------------------------------------------------------------------
// Every registered project, through a real server.

fn http_post(url: &str, token: &str, path: &str, body: &str) -> u16 {
    let addr = url.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn with_no_path_every_registered_project_is_audited_and_hosted_ones_are_skipped() {
    let w = World::new();
    let p = w.repo("p", &[("agent-os.yaml", &openai("p")), (".env", "OPENAI_API_KEY=x\n")], &["agent-os.yaml"]);
    let out_file = w.path("serve.out");
    let mut server = Command::new(BIN)
        .arg("serve")
        .arg("--home")
        .arg(w.home())
        .args(["--bind", "127.0.0.1:0"])
        .env("HOME", w.user_home())
        .env_remove("AGENT_OS_ADMIN_TOKEN")
        .env_remove("AGENT_OS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("AGENT_OS_PUBLIC_URL")
        .stdout(Stdio::from(std::fs::File::create(&out_file).unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = loop {
        let printed = std::fs::read_to_string(&out_file).unwrap_or_default();
        let config: Option<Value> =
            std::fs::read_to_string(w.home().join("client.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
        if let (Some(line), Some(_)) = (printed.lines().find(|l| l.contains(" listening on ")), config) {
            break line.rsplit(' ').next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "server did not start: {printed}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let config: Value = serde_json::from_str(&std::fs::read_to_string(w.home().join("client.json")).unwrap()).unwrap();
    let token = config["token"].as_str().unwrap().to_string();
    let body = serde_json::json!({ "path": p.canonicalize().unwrap() }).to_string();
    assert_eq!(http_post(&url, &token, "/api/v1/projects", &body), 201);
    let hosted = "name: shop\nplugin: { url: https://shop.example.com/agent-os }\n";
    let body = serde_json::json!({ "manifest": hosted }).to_string();
    assert_eq!(http_post(&url, &token, "/api/v1/projects", &body), 201);

    let out = w.keys(&["audit", "--json"]);
    let _ = server.kill();
    let _ = server.wait();
    let findings: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
    let findings = findings.as_array().unwrap();
    assert_eq!(out.status.code(), Some(1), "{findings:#?}");
    assert_eq!(of(findings, "env-not-ignored")[0]["project"], "p");
    assert!(text(&out.stderr).contains("skipped shop: hosted"), "{}", text(&out.stderr));
}
