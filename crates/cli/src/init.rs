//! `agent-os init [DIR]`: scaffolds a project for Agent OS with its credentials kept where they
//! belong, in the project. It writes `agent-os.yaml` (when missing) with the credential-looking
//! variables of the project's `.env.example` or `.env` declared under `keys:` by name, adds the
//! missing names to `.env.example` with where to get each key, makes sure `.gitignore` ignores
//! `.env`, and appends an "API keys" section to the README.md, CLAUDE.md and .cursorrules the
//! project already has. Without `--yes` it only prints the plan; running it again changes
//! nothing. It runs locally and needs no server.
//!
//! Values never leave the lexer: an env file's text is held only while `envfile::parse` reads
//! it, and only the variable names are kept. Nothing here prints, writes or compares a value.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use agent_os_core::envfile;
use agent_os_core::manifest::{MANIFEST_FILE, Manifest};
use agent_os_core::name::check_project_name;
use clap::Args;

#[derive(Args)]
pub struct InitArgs {
    /// The project's root directory (default: the current directory).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The project's name (default: the directory's name, in lower case with `-`).
    #[arg(long)]
    pub name: Option<String>,
    /// Write the files; without it, only print what would change.
    #[arg(long)]
    pub yes: bool,
}

/// Words in a variable's name that make it look like a credential.
const CREDENTIAL_WORDS: [&str; 7] = ["KEY", "TOKEN", "SECRET", "PASSWORD", "WEBHOOK", "CREDENTIAL", "AUTH"];
/// The documents that get an "API keys" section, when the project has them.
const DOCS: [&str; 3] = ["README.md", "CLAUDE.md", ".cursorrules"];
const ENV_FILE: &str = ".env";
const ENV_EXAMPLE: &str = ".env.example";
const GITIGNORE: &str = ".gitignore";

/// What `init` does to one file.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// Create the file with this text.
    Create(String),
    /// Add this text at the end of the file.
    Append(String),
    /// Leave it alone, for this reason.
    Unchanged(String),
}

struct Step {
    file: &'static str,
    change: Change,
}

/// Why `init` stopped before planning anything.
enum Stop {
    /// The command line asked for something impossible: exit 2.
    Usage(String),
    /// The project's files are in the way: exit 1.
    Failed(String),
}

/// A credential a project declares: its variable and the service it belongs to.
struct Key {
    variable: String,
    service: String,
}

struct Plan {
    project: String,
    steps: Vec<Step>,
    /// Remarks for stderr: unreadable env lines, names that were skipped.
    notes: Vec<String>,
}

/// Runs `init`; exit 0 when the plan was printed or applied, 2 for a missing directory or a bad
/// `--name` (or one the existing manifest contradicts), 1 when the project's files could not be
/// read or written or its manifest is invalid.
pub fn run(a: &InitArgs) -> u8 {
    let given = a.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let root = match std::fs::metadata(&given) {
        Ok(m) if m.is_dir() => match std::fs::canonicalize(&given) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {}: {e}", given.display());
                return 1;
            }
        },
        Ok(_) => {
            eprintln!("error: {}: not a directory", given.display());
            return 2;
        }
        Err(_) => {
            eprintln!("error: {}: no such directory", given.display());
            return 2;
        }
    };
    let plan = match plan(&root, a.name.as_deref()) {
        Ok(p) => p,
        Err(Stop::Usage(message)) => {
            eprintln!("error: {message}");
            return 2;
        }
        Err(Stop::Failed(message)) => {
            eprintln!("error: {message}");
            return 1;
        }
    };
    for note in &plan.notes {
        eprintln!("note: {note}");
    }
    println!("Project {:?} in {}", plan.project, root.display());
    println!();
    if !a.yes {
        print_plan(&plan.steps);
        println!();
        if plan.steps.iter().all(|s| matches!(s.change, Change::Unchanged(_))) {
            println!("Nothing to do: the project is already set up.");
        } else {
            let dir = a
                .dir
                .as_ref()
                .map(|d| format!(" {}", agent_os_core::shell::quote(&d.to_string_lossy())))
                .unwrap_or_default();
            let name = a.name.as_ref().map(|n| format!(" --name {n}")).unwrap_or_default();
            println!("Nothing was written. To apply this plan: agent-os init{dir}{name} --yes");
        }
        return 0;
    }
    for step in &plan.steps {
        let path = root.join(step.file);
        let (done, result) = match &step.change {
            Change::Create(text) => ("created", write_new(&path, text)),
            Change::Append(text) => ("appended to", append(&path, text)),
            Change::Unchanged(why) => {
                println!("unchanged    {}: {why}", step.file);
                continue;
            }
        };
        if let Err(e) = result {
            eprintln!("error: {}: {e}", path.display());
            return 1;
        }
        println!("{done:<12} {}", step.file);
    }
    println!();
    if plan.steps.iter().all(|s| matches!(s.change, Change::Unchanged(_))) {
        println!("Nothing to do: the project is already set up.");
        return 0;
    }
    println!(
        "Next: copy {ENV_EXAMPLE} to {ENV_FILE} and fill in this project's own keys (named {}-SERVICE at each provider),",
        plan.project
    );
    println!(
        "then register the project on the server's machine: agent-os project add {}",
        agent_os_core::shell::quote(&root.to_string_lossy())
    );
    0
}

fn print_plan(steps: &[Step]) {
    for step in steps {
        let (what, text) = match &step.change {
            Change::Create(text) => ("create", text),
            Change::Append(text) => ("append", text),
            Change::Unchanged(why) => {
                println!("unchanged  {}: {why}", step.file);
                continue;
            }
        };
        println!("{what:<10} {}", step.file);
        for line in text.lines() {
            println!("  |{}{line}", if line.is_empty() { "" } else { " " });
        }
    }
}

/// Decides what to do to each file, reading the project but writing nothing.
fn plan(root: &Path, name: Option<&str>) -> Result<Plan, Stop> {
    if let Some(n) = name {
        check_project_name(n).map_err(|e| Stop::Usage(format!("--name: {e}")))?;
    }
    let mut notes = Vec::new();
    let mut steps = Vec::new();
    let manifest_path = root.join(MANIFEST_FILE);
    let existing = read_if_exists(&manifest_path).map_err(Stop::Failed)?;

    let (project, keys) = match existing {
        Some(text) => {
            let m = Manifest::parse(&manifest_path.to_string_lossy(), &text).map_err(|e| {
                Stop::Failed(format!(
                    "{e}\n  hint: fix {MANIFEST_FILE} (or move it away) and run `agent-os init` again"
                ))
            })?;
            if let Some(n) = name
                && n != m.name
            {
                return Err(Stop::Usage(format!(
                    "--name {n:?}: {MANIFEST_FILE} already names this project {:?}; rename it there, or leave out --name",
                    m.name
                )));
            }
            if let Some(env) = m.env_file.as_deref()
                && env != ENV_FILE
            {
                notes.push(format!(
                    "{MANIFEST_FILE} keeps the env file at {env}; init sets up {ENV_EXAMPLE} and ignores {ENV_FILE} at the root only"
                ));
            }
            let keys =
                m.keys.iter().map(|k| Key { variable: k.variable.clone(), service: k.service.clone() }).collect();
            steps.push(Step { file: MANIFEST_FILE, change: Change::Unchanged("already there".into()) });
            (m.name, keys)
        }
        None => {
            let project = match name {
                Some(n) => n.to_string(),
                None => project_name_from(root)?,
            };
            let keys = found_keys(root, &mut notes).map_err(Stop::Failed)?;
            let text = manifest_text(&project, &keys);
            // What init writes must be a manifest Agent OS accepts; anything else is a bug here.
            if let Err(e) = Manifest::parse(MANIFEST_FILE, &text) {
                return Err(Stop::Failed(format!("the manifest init made is invalid (a bug in agent-os init):\n{e}")));
            }
            steps.push(Step { file: MANIFEST_FILE, change: Change::Create(text) });
            (project, keys)
        }
    };

    steps.push(Step { file: ENV_EXAMPLE, change: env_example_change(root, &project, &keys)? });
    steps.push(Step { file: GITIGNORE, change: gitignore_change(root, &mut notes)? });
    for doc in DOCS {
        let path = root.join(doc);
        let Some(text) = read_if_exists(&path).map_err(Stop::Failed)? else { continue };
        let change = if has_api_keys_section(&text) {
            Change::Unchanged("already has an \"API keys\" section".into())
        } else {
            Change::Append(format!("{}{}", separator(&text), api_keys_section(&project, &keys)))
        };
        steps.push(Step { file: doc, change });
    }
    if !DOCS.iter().any(|d| root.join(d).exists()) {
        notes.push("no README.md, CLAUDE.md or .cursorrules here to add an \"API keys\" section to".into());
    }
    Ok(Plan { project, steps, notes })
}

/// The directory's name as a project slug: lower case, digits and `-`.
fn project_name_from(root: &Path) -> Result<String, Stop> {
    let dir = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let slug = slug(&dir);
    check_project_name(&slug).map(|_| slug).map_err(|_| {
        Stop::Usage(format!("cannot make a project name from the directory name {dir:?}; pass --name NAME"))
    })
}

fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(63);
    out.trim_end_matches('-').to_string()
}

/// The credential-looking variables of `.env.example`, then `.env`, by name, in order.
fn found_keys(root: &Path, notes: &mut Vec<String>) -> Result<Vec<Key>, String> {
    let mut keys: Vec<Key> = Vec::new();
    for file in [ENV_EXAMPLE, ENV_FILE] {
        for variable in env_names(root, file, notes)? {
            if !looks_like_credential(&variable) || keys.iter().any(|k| k.variable == variable) {
                continue;
            }
            if !is_manifest_variable(&variable) {
                notes.push(format!(
                    "{file}: {variable} looks like a credential but is not an upper-case variable name; declare it under keys: by hand"
                ));
                continue;
            }
            keys.push(Key { service: service_of(&variable), variable });
        }
    }
    Ok(keys)
}

/// The variable names an env file sets. Its values are dropped with the parse.
fn env_names(root: &Path, file: &str, notes: &mut Vec<String>) -> Result<Vec<String>, String> {
    let Some(text) = read_if_exists(&root.join(file))? else { return Ok(Vec::new()) };
    let parsed = envfile::parse(&text);
    for p in &parsed.problems {
        notes.push(format!("{file}:{}: {} (skipped)", p.line, p.message));
    }
    Ok(parsed.entries.into_iter().map(|e| e.key).collect())
}

fn looks_like_credential(variable: &str) -> bool {
    let upper = variable.to_ascii_uppercase();
    CREDENTIAL_WORDS.iter().any(|w| upper.contains(w))
}

/// What the manifest accepts under `keys:`: `[A-Z_][A-Z0-9_]*`.
fn is_manifest_variable(variable: &str) -> bool {
    variable.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && variable.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The provider a variable's key belongs to, guessed from its first word: `OPENAI_API_KEY` is
/// `openai`, `GH_TOKEN` is `github`.
fn service_of(variable: &str) -> String {
    let first = variable
        .split('_')
        .find(|w| w.starts_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or("api")
        .to_ascii_lowercase();
    match first.as_str() {
        "gh" => "github".into(),
        "claude" => "anthropic".into(),
        _ => first,
    }
}

/// Where to get a key of a known service, as the comment above it in `.env.example`.
fn where_to_get(service: &str) -> Option<&'static str> {
    Some(match service {
        "openai" => "OpenAI: create a key at https://platform.openai.com/api-keys",
        "anthropic" => "Anthropic: create a key at https://console.anthropic.com/settings/keys",
        "gemini" => "Gemini: create a key at https://aistudio.google.com/apikey",
        "github" => "GitHub: create a fine-grained token at https://github.com/settings/personal-access-tokens",
        "discord" => "Discord: create a webhook in the channel's Edit Channel > Integrations > Webhooks",
        "slack" => "Slack: create an incoming webhook (or a token) for your app at https://api.slack.com/apps",
        _ => return None,
    })
}

/// A value for `.env.example` that shows the shape of the real one without being one.
fn placeholder(key: &Key) -> &'static str {
    let webhook = key.variable.contains("WEBHOOK");
    match key.service.as_str() {
        "openai" if key.variable.ends_with("API_KEY") => "sk-...",
        "anthropic" if key.variable.ends_with("API_KEY") => "sk-ant-...",
        "discord" if webhook => "https://discord.com/api/webhooks/...",
        "slack" if webhook => "https://hooks.slack.com/services/...",
        _ => "",
    }
}

/// A YAML plain scalar for a slug, quoted where YAML would read it as a number, a boolean or null.
fn yaml_scalar(s: &str) -> String {
    const SPECIAL: [&str; 11] = ["null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf"];
    if s.starts_with(|c: char| c.is_ascii_lowercase()) && !SPECIAL.contains(&s) {
        s.to_string()
    } else {
        format!("\"{s}\"")
    }
}

fn manifest_text(project: &str, keys: &[Key]) -> String {
    let mut t = String::new();
    t.push_str("# agent-os.yaml: how Agent OS knows this project (see Agent OS's docs/manifest.md).\n");
    t.push_str("# Written by `agent-os init`; edit it freely.\n");
    t.push_str(&format!("name: {}\n", yaml_scalar(project)));
    t.push_str(&format!("description: TODO - one line on what {project} does\n"));
    t.push_str("env_file: .env                   # a path only; Agent OS never reads values from it\n");
    t.push_str("# The credentials this project uses, by name only: never put a value here. Each is a key\n");
    t.push_str(&format!("# of this project's own, named {project}-SERVICE at its provider (docs/api-keys.md).\n"));
    if keys.is_empty() {
        t.push_str("# keys:\n");
        t.push_str(&format!("#   OPENAI_API_KEY: {{ service: openai, key_name: {project}-openai }}\n"));
    } else {
        t.push_str("keys:\n");
        for k in keys {
            let key_name = format!("{project}-{}", k.service);
            t.push_str(&format!(
                "  {}: {{ service: {}, key_name: {} }}\n",
                k.variable,
                yaml_scalar(&k.service),
                yaml_scalar(&key_name)
            ));
        }
    }
    t.push_str(
        "\n# Tasks Agent OS may run. A task runs in this directory with a scrubbed environment (no\n\
         # keys from Agent OS or any other project) and loads .env itself. For example:\n\
         # tasks:\n\
         #   daily_update:\n\
         #     run: scripts/daily_update.sh   # a string runs under /bin/sh -c; a list is an argv\n\
         #     timeout: 30m\n\
         #     retries: 2\n\
         # schedules:                         # kept elsewhere (launchd): Agent OS shows and watches it\n\
         #   - { task: daily_update, cron: \"0 22 * * *\", timezone: America/Los_Angeles, managed_by: launchd }\n",
    );
    t
}

/// `.env.example` lines for keys: where to get each one, then its variable with a placeholder.
fn env_example_lines(project: &str, keys: &[&Key]) -> String {
    let mut t = String::new();
    for k in keys {
        let name = format!("{project}-{}", k.service);
        match where_to_get(&k.service) {
            Some(hint) => t.push_str(&format!("# {hint}, and name it {name}\n")),
            None => {
                t.push_str(&format!("# {}: a key of this project's own, named {name} at the provider\n", k.service))
            }
        }
        t.push_str(&format!("{}={}\n", k.variable, placeholder(k)));
    }
    t
}

fn env_example_change(root: &Path, project: &str, keys: &[Key]) -> Result<Change, Stop> {
    let path = root.join(ENV_EXAMPLE);
    match read_if_exists(&path).map_err(Stop::Failed)? {
        None => {
            let mut t = format!(
                "# {project}'s own settings. Copy this file to .env and fill in the values; never commit .env.\n\
                 # Every key here is this project's own, named {project}-SERVICE at its provider: never a shared one.\n"
            );
            if !keys.is_empty() {
                t.push('\n');
                t.push_str(&env_example_lines(project, &keys.iter().collect::<Vec<_>>()));
            }
            Ok(Change::Create(t))
        }
        Some(text) => {
            let present = envfile::parse(&text).entries;
            let missing: Vec<&Key> = keys.iter().filter(|k| !present.iter().any(|e| e.key == k.variable)).collect();
            if missing.is_empty() {
                return Ok(Change::Unchanged(if keys.is_empty() {
                    "no keys declared".into()
                } else {
                    "lists every key of agent-os.yaml".into()
                }));
            }
            Ok(Change::Append(format!(
                "{}# Keys declared in agent-os.yaml (added by agent-os init)\n{}",
                separator(&text),
                env_example_lines(project, &missing)
            )))
        }
    }
}

fn gitignore_change(root: &Path, notes: &mut Vec<String>) -> Result<Change, Stop> {
    let add = "# This project's own keys: never commit them\n.env\n";
    let env_exists = root.join(ENV_FILE).exists();
    let change = match read_if_exists(&root.join(GITIGNORE)).map_err(Stop::Failed)? {
        None => Change::Create(add.into()),
        Some(text) if ignores_env(&text) => return Ok(Change::Unchanged("already ignores .env".into())),
        Some(text) => Change::Append(format!("{}{add}", separator(&text))),
    };
    if env_exists {
        notes.push(
            ".env was not ignored by git until now: if it was ever committed, its keys are in the history; rotate them (docs/api-keys.md)"
                .into(),
        );
    }
    Ok(change)
}

/// Whether a `.gitignore` ignores the file `.env` at the root: the last pattern that matches it
/// decides, as in git (a `!` pattern un-ignores).
fn ignores_env(text: &str) -> bool {
    let mut ignored = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (negated, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, line),
        };
        // A pattern ending in `/` matches directories only.
        if pattern.ends_with('/') {
            continue;
        }
        let pattern = pattern.strip_prefix("**/").or_else(|| pattern.strip_prefix('/')).unwrap_or(pattern);
        if !pattern.contains('/') && glob(pattern.as_bytes(), b".env") {
            ignored = !negated;
        }
    }
    ignored
}

/// Shell-style matching of `*`, `?` and literal bytes (enough for `.gitignore` lines).
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| glob(rest, &name[i..])),
        Some((b'?', rest)) => !name.is_empty() && glob(rest, &name[1..]),
        Some((b'\\', rest)) if !rest.is_empty() => name.first() == Some(&rest[0]) && glob(&rest[1..], &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && glob(rest, &name[1..]),
    }
}

/// Whether a document already has a heading about API keys.
fn has_api_keys_section(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start();
        line.starts_with('#') && line.trim_start_matches('#').trim().to_ascii_lowercase().starts_with("api key")
    })
}

fn api_keys_section(project: &str, keys: &[Key]) -> String {
    let example = keys.first().map(|k| k.service.as_str()).unwrap_or("openai");
    format!(
        "## API keys\n\
         \n\
         This project keeps its own API keys in its own `.env`, never in a shared file (not another\n\
         project's `.env`, not Agent OS's). Each key is made for this project alone and named\n\
         `{project}-SERVICE` at its provider (e.g. `{project}-{example}`), so its usage and cost show up\n\
         under this project and it can be revoked without touching any other. Every key is listed by\n\
         name, never by value, in `agent-os.yaml` under `keys:`.\n\
         \n\
         - Copy `.env.example` to `.env` and fill in the values; the project's scripts load `.env`\n\
         \x20 themselves.\n\
         - Never commit `.env` (it is in `.gitignore`), and never print, log or paste a key's value.\n\
         - A new key: create `{project}-SERVICE` at the provider, put it in `.env`, and add its variable\n\
         \x20 to `.env.example` (without the value) and to `keys:` in `agent-os.yaml`.\n"
    )
}

/// What goes before appended text: a line end if the file lacks its last one, and a blank line.
fn separator(text: &str) -> &'static str {
    match (text.is_empty(), text.ends_with('\n'), text.ends_with("\n\n")) {
        (true, _, _) | (false, true, true) => "",
        (false, true, false) => "\n",
        (false, false, _) => "\n\n",
    }
}

fn read_if_exists(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| format!("{}: not UTF-8 text", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(text.as_bytes())
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().append(true).open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_from_directories() {
        for (dir, want) in [
            ("Cortana personal AI", "cortana-personal-ai"),
            ("image_workflow", "image-workflow"),
            ("Trading Projects", "trading-projects"),
            ("--x..y--", "x-y"),
            ("2024", "2024"),
            ("ünï", "n"),
        ] {
            assert_eq!(slug(dir), want, "{dir}");
        }
        assert_eq!(slug(&"a".repeat(80)).len(), 63);
        assert_eq!(slug("ééé"), "");
    }

    #[test]
    fn credentials_and_their_services() {
        for (var, cred, service) in [
            ("OPENAI_API_KEY", true, "openai"),
            ("ANTHROPIC_API_KEY", true, "anthropic"),
            ("DISCORD_WEBHOOK_URL", true, "discord"),
            ("SLACK_WEBHOOK_URL", true, "slack"),
            ("GITHUB_TOKEN", true, "github"),
            ("GH_TOKEN", true, "github"),
            ("DB_PASSWORD", true, "db"),
            ("STRIPE_SECRET_KEY", true, "stripe"),
            ("_1_AUTH", true, "auth"),
            ("PROJECT_NAME", false, "project"),
            ("CORTANA_MODEL", false, "cortana"),
        ] {
            assert_eq!(looks_like_credential(var), cred, "{var}");
            assert_eq!(service_of(var), service, "{var}");
        }
    }

    #[test]
    fn gitignore_lines_that_ignore_env() {
        for (text, want) in [
            (".env\n", true),
            ("/.env\n", true),
            (".env*\n", true),
            ("*.env\n", true),
            ("**/.env\n", true),
            ("*\n", true),
            (".env\n!.env\n", false),
            (".env.local\n", false),
            (".env/\n", false),
            ("# .env\n", false),
            ("config/.env\n", false),
            ("", false),
        ] {
            assert_eq!(ignores_env(text), want, "{text:?}");
        }
    }

    #[test]
    fn api_keys_headings() {
        assert!(has_api_keys_section("# x\n\n## API keys\n"));
        assert!(has_api_keys_section("### API Key Management\n"));
        assert!(!has_api_keys_section("We use API keys.\n## Setup\n"));
    }

    #[test]
    fn manifests_init_writes_parse() {
        let keys = |vars: &[&str]| -> Vec<Key> {
            vars.iter().map(|v| Key { variable: v.to_string(), service: service_of(v) }).collect()
        };
        for (project, vars) in [
            ("trading", vec!["OPENAI_API_KEY", "DISCORD_WEBHOOK_URL"]),
            ("2024", vec!["TRUE_TOKEN", "NO_AUTH_KEY", "NULL_SECRET"]),
            ("null", vec![]),
            ("x", vec!["_9_KEY"]),
        ] {
            let text = manifest_text(project, &keys(&vars));
            let m = Manifest::parse(MANIFEST_FILE, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(m.name, project);
            assert_eq!(m.env_file.as_deref(), Some(".env"));
            assert_eq!(m.keys.len(), vars.len());
            for k in &m.keys {
                assert_eq!(k.key_name.as_deref(), Some(format!("{project}-{}", k.service).as_str()));
            }
        }
    }

    #[test]
    fn separators_before_appended_text() {
        assert_eq!(separator(""), "");
        assert_eq!(separator("a"), "\n\n");
        assert_eq!(separator("a\n"), "\n");
        assert_eq!(separator("a\n\n"), "");
    }
}
