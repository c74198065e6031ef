//! `agent-os init` as a user runs it: the real binary on project directories in temp dirs, with
//! no server anywhere. A fake secret in `.env` must reach no output and no written file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use agent_os_core::Manifest;

const BIN: &str = env!("CARGO_BIN_EXE_agent-os");

fn init(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("init")
        .arg(dir)
        .args(args)
        .env_remove("AGENT_OS_URL")
        .env_remove("AGENT_OS_TOKEN")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Every file in the directory (not recursive) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect()
}

/// A value no file or output could hold by chance.
fn fake_secret(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{tag}{nanos:x}{:x}Zq", std::process::id())
}

/// The written manifest, as core parses it and as `project add` loads it (paths checked too).
fn manifest(dir: &Path) -> Manifest {
    let text = read(dir, "agent-os.yaml");
    let m = Manifest::parse("agent-os.yaml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let (_, _, loaded) = agent_os_engine::project::load_dir(dir).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(loaded, m);
    m
}

#[test]
fn a_fresh_directory_gets_a_manifest_an_env_example_and_a_gitignore() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("My Side_Project");
    std::fs::create_dir(&dir).unwrap();

    let out = init(&dir, &["--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for line in ["created      agent-os.yaml", "created      .env.example", "created      .gitignore"] {
        assert!(stdout.contains(line), "{line:?} in\n{stdout}");
    }
    assert!(text(&out.stderr).contains("no README.md, CLAUDE.md or .cursorrules"), "{}", text(&out.stderr));

    let m = manifest(&dir);
    assert_eq!(m.name, "my-side-project");
    assert_eq!(m.env_file.as_deref(), Some(".env"));
    assert!(m.keys.is_empty() && m.tasks.is_empty());
    let yaml = read(&dir, "agent-os.yaml");
    assert!(yaml.contains("#   OPENAI_API_KEY: { service: openai, key_name: my-side-project-openai }"), "{yaml}");
    assert!(yaml.contains("# tasks:"), "a commented example task: {yaml}");
    assert_eq!(read(&dir, ".gitignore"), "# This project's own keys: never commit them\n.env\n");
    assert!(read(&dir, ".env.example").contains("named my-side-project-SERVICE"));
    assert_eq!(snapshot(&dir).len(), 3, "no .env, no docs: {:?}", snapshot(&dir).keys());
}

#[test]
fn an_existing_project_gets_its_keys_declared_by_name_and_never_by_value() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trading");
    std::fs::create_dir(&dir).unwrap();
    let openai = fake_secret("sk-proj-");
    let discord = fake_secret("hook");
    let password = fake_secret("pw");
    let env = format!(
        "# trading's settings\nOPENAI_API_KEY={openai}\nexport DISCORD_WEBHOOK_URL=\"https://discord.com/api/webhooks/1/{discord}\"\n\
         DB_PASSWORD='{password}'\nPROJECT_NAME=trading\nMODEL=gpt-4o-mini\nlower_api_key=x\nnot a line\n"
    );
    std::fs::write(dir.join(".env"), &env).unwrap();
    std::fs::write(dir.join("README.md"), "# Trading\n\nScans markets.").unwrap();
    std::fs::write(dir.join("CLAUDE.md"), "# Notes for Claude\n\n## Setup\nRun make.\n").unwrap();
    std::fs::write(dir.join(".gitignore"), "var/\n__pycache__/\n").unwrap();
    let before = snapshot(&dir);

    // The dry run prints the plan with the exact text, and writes nothing.
    let out = init(&dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(snapshot(&dir), before, "a dry run writes nothing");
    for want in [
        "create     agent-os.yaml",
        "  |   OPENAI_API_KEY: { service: openai, key_name: trading-openai }",
        "create     .env.example",
        "  | # OpenAI: create a key at https://platform.openai.com/api-keys, and name it trading-openai",
        "append     .gitignore",
        "  | .env",
        "append     README.md",
        "append     CLAUDE.md",
        "  | ## API keys",
        "Nothing was written. To apply this plan: agent-os init",
    ] {
        assert!(stdout.contains(want), "{want:?} in\n{stdout}");
    }
    assert!(stderr.contains(".env:8: not a KEY=value line (skipped)"), "{stderr}");
    assert!(stderr.contains("lower_api_key looks like a credential"), "{stderr}");
    assert!(stderr.contains(".env was not ignored by git until now"), "{stderr}");

    let out2 = init(&dir, &["--yes"]);
    assert_eq!(out2.status.code(), Some(0), "{}", text(&out2.stderr));

    for (what, secret) in [("openai", &openai), ("discord", &discord), ("password", &password)] {
        for (stream, s) in [("dry-run stdout", &stdout), ("dry-run stderr", &stderr)] {
            assert!(!s.contains(secret.as_str()), "the {what} secret is in the {stream}");
        }
        assert!(!text(&out2.stdout).contains(secret.as_str()) && !text(&out2.stderr).contains(secret.as_str()));
        for (file, bytes) in snapshot(&dir) {
            if file != ".env" {
                assert!(!text(&bytes).contains(secret.as_str()), "the {what} secret is in {file}");
            }
        }
    }
    assert_eq!(read(&dir, ".env"), env, ".env is never touched");

    let m = manifest(&dir);
    assert_eq!(m.name, "trading");
    let keys: Vec<(&str, &str, Option<&str>)> =
        m.keys.iter().map(|k| (k.variable.as_str(), k.service.as_str(), k.key_name.as_deref())).collect();
    assert_eq!(
        keys,
        vec![
            ("DB_PASSWORD", "db", Some("trading-db")),
            ("DISCORD_WEBHOOK_URL", "discord", Some("trading-discord")),
            ("OPENAI_API_KEY", "openai", Some("trading-openai")),
        ]
    );

    let example = read(&dir, ".env.example");
    assert!(example.contains("\nOPENAI_API_KEY=sk-...\n"), "{example}");
    assert!(example.contains("\nDISCORD_WEBHOOK_URL=https://discord.com/api/webhooks/...\n"), "{example}");
    assert!(example.contains("# db: a key of this project's own, named trading-db at the provider\nDB_PASSWORD=\n"));
    assert!(!example.contains("PROJECT_NAME") && !example.contains("MODEL"), "only credentials: {example}");
    let envfile = agent_os_core::envfile::parse(&example);
    assert!(envfile.problems.is_empty(), "{:?}", envfile.problems);

    assert_eq!(read(&dir, ".gitignore"), "var/\n__pycache__/\n\n# This project's own keys: never commit them\n.env\n");
    let readme = read(&dir, "README.md");
    assert!(readme.starts_with("# Trading\n\nScans markets.\n\n## API keys\n"), "{readme}");
    assert!(
        readme.contains("`trading-SERVICE`") && readme.contains("`keys:`") && readme.contains("Never commit `.env`")
    );
    let claude = read(&dir, "CLAUDE.md");
    assert!(claude.starts_with("# Notes for Claude\n\n## Setup\nRun make.\n\n## API keys\n"), "{claude}");
    assert!(!dir.join(".cursorrules").exists(), "only documents the project has");

    // Again: nothing to do, nothing written.
    let after = snapshot(&dir);
    let again = init(&dir, &["--yes"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(snapshot(&dir), after, "a second run changes nothing");
    let stdout = text(&again.stdout);
    assert!(!stdout.contains("created") && !stdout.contains("appended"), "{stdout}");
    assert!(stdout.contains("Nothing to do"), "{stdout}");
    assert_eq!(stdout.matches("unchanged").count(), 5, "{stdout}");
    let dry = init(&dir, &[]);
    assert!(text(&dry.stdout).contains("Nothing to do"), "{}", text(&dry.stdout));
    assert_eq!(snapshot(&dir), after);
}

#[test]
fn an_existing_env_example_keeps_its_lines_and_gets_the_missing_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let example = "# settings\nOPENAI_API_KEY=sk-...replace-me\nCORTANA_MODEL=gpt-4o-mini";
    std::fs::write(dir.join(".env.example"), example).unwrap();
    std::fs::write(dir.join(".env"), format!("OPENAI_API_KEY={}\nANTHROPIC_API_KEY=x\n", fake_secret("sk-"))).unwrap();
    std::fs::write(dir.join(".gitignore"), ".env*\n!.env.example\n").unwrap();
    std::fs::write(dir.join(".cursorrules"), "Be brief.\n\n# API Key Management\nUse .env.\n").unwrap();

    let dry = init(dir, &["--name", "cortana"]);
    assert!(text(&dry.stdout).contains(" --name cortana --yes"), "the hint keeps --name: {}", text(&dry.stdout));
    let out = init(dir, &["--name", "cortana", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("unchanged    .gitignore: already ignores .env"), "{stdout}");
    assert!(stdout.contains("unchanged    .cursorrules: already has an \"API keys\" section"), "{stdout}");
    assert!(stdout.contains("appended to  .env.example"), "{stdout}");

    assert_eq!(manifest(dir).name, "cortana");
    let got = read(dir, ".env.example");
    assert_eq!(
        got,
        format!(
            "{example}\n\n# Keys declared in agent-os.yaml (added by agent-os init)\n\
             # Anthropic: create a key at https://console.anthropic.com/settings/keys, and name it cortana-anthropic\n\
             ANTHROPIC_API_KEY=sk-ant-...\n"
        )
    );
    let before = snapshot(dir);
    assert_eq!(init(dir, &["--yes"]).status.code(), Some(0));
    assert_eq!(snapshot(dir), before);
}

#[test]
fn a_manifest_already_there_is_kept_and_its_keys_are_used() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let yaml = "name: image-workflow\nkeys:\n  REPLICATE_API_TOKEN: { service: replicate, key_name: image-workflow-replicate }\n";
    std::fs::write(dir.join("agent-os.yaml"), yaml).unwrap();
    let out = init(dir, &["--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(read(dir, "agent-os.yaml"), yaml);
    assert!(read(dir, ".env.example").contains(
        "# replicate: a key of this project's own, named image-workflow-replicate at the provider\nREPLICATE_API_TOKEN=\n"
    ));

    let other = init(dir, &["--name", "images"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(text(&other.stderr).contains("already names this project \"image-workflow\""), "{}", text(&other.stderr));
}

#[test]
fn usage_errors_exit_2_and_a_broken_manifest_exits_1_writing_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    let missing = init(&dir.join("nope"), &["--yes"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("no such directory"), "{}", text(&missing.stderr));

    std::fs::write(dir.join("file"), "").unwrap();
    assert_eq!(init(&dir.join("file"), &[]).status.code(), Some(2));

    let bad = init(dir, &["--name", "Bad_Name", "--yes"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("--name: project name \"Bad_Name\""), "{}", text(&bad.stderr));

    let unnamed = tmp.path().join("ééé");
    std::fs::create_dir(&unnamed).unwrap();
    let out = init(&unnamed, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("pass --name NAME"), "{}", text(&out.stderr));
    assert!(snapshot(&unnamed).is_empty());

    std::fs::write(dir.join("agent-os.yaml"), "name: x\ntasks:\n  t: { run: a.sh, timout: 5m }\n").unwrap();
    let before = snapshot(dir);
    let broken = init(dir, &["--yes"]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(text(&broken.stderr).contains("timout"), "{}", text(&broken.stderr));
    assert_eq!(snapshot(dir), before);
}
