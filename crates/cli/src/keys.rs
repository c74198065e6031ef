//! `agent-os keys`: credential isolation from the command line. `keys audit` runs
//! `agent_os_engine::audit` on project directories and prints what it finds with the fix;
//! `keys doc` writes, by name only, which key of which service each project uses; `keys migrate`
//! moves a project off a shared env file (the old `export $(grep -v '^#' …/.env | xargs)` habit):
//! it shows the edits, and with `--apply` makes them. All three work on this machine's files;
//! `audit` and `doc` ask the server only for the list of registered projects, when given no path.
//! No value from any env file is ever printed or written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use agent_os_core::Manifest;
use agent_os_core::config::Config;
use agent_os_core::envfile;
use agent_os_core::manifest::MANIFEST_FILE;
use agent_os_core::redact::redact_shapes;
use agent_os_engine::audit::{self, AuditOptions, AuditTarget, EnvRead, Finding, Severity};
use agent_os_engine::project;
use agent_os_server::views::ProjectView;
use clap::{Args, Subcommand, ValueEnum};

use crate::client::Client;

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Check that each project keeps its own credentials: its env file exists, is ignored and
    /// untracked; no script reads another project's env file or Agent OS's own; no key is shared
    /// or committed; every credential is declared. No server needed when given paths.
    Audit(AuditArgs),
    /// Markdown list of the keys each project uses, per service, by name (never values).
    Doc(DocArgs),
    /// Move a project off a shared env file: list what it takes from it, write .env.example,
    /// show the edits to the lines that read it; `--apply` makes them.
    Migrate(MigrateArgs),
}

#[derive(Args)]
pub struct AuditArgs {
    /// Project directories (each holds agent-os.yaml); default: every registered project.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Also audit every registered project (asks the server for the list).
    #[arg(long)]
    pub all_projects: bool,
    /// Print the findings as a JSON array.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when a finding is at least this severe.
    #[arg(long, value_enum, default_value_t = FailOn::Error, value_name = "SEVERITY")]
    pub fail_on: FailOn,
    /// A shared env file projects read or copied keys from (e.g. ~/agent_os/.env): a value a
    /// project holds that is also in it is a shared key. Repeatable; remembered in config.yaml
    /// (`keys.shared`), so later audits compare with it too.
    #[arg(long = "shared", value_name = "FILE")]
    pub shared: Vec<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    Warning,
    Error,
}

#[derive(Args)]
pub struct DocArgs {
    /// Project directories (each holds agent-os.yaml); default: every registered project.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Write the Markdown to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct MigrateArgs {
    /// The shared env file the project reads today, e.g. ~/agent_os/.env.
    #[arg(long, value_name = "SHARED_ENV")]
    pub from: PathBuf,
    /// The project's directory.
    #[arg(long, value_name = "DIR")]
    pub project: PathBuf,
    /// Make the edits (without it nothing is changed).
    #[arg(long)]
    pub apply: bool,
}

impl KeysCmd {
    /// Whether the command needs the server (for the list of registered projects).
    pub fn needs_server(&self) -> bool {
        match self {
            KeysCmd::Audit(a) => a.paths.is_empty() || a.all_projects,
            KeysCmd::Doc(d) => d.paths.is_empty(),
            KeysCmd::Migrate(_) => false,
        }
    }
}

/// Runs a `keys` command. `home` is Agent OS's home; `client` is there when
/// [`KeysCmd::needs_server`] says so. Exit codes: 0 fine, 1 findings at `--fail-on` (or a
/// failure), 2 bad arguments.
pub async fn run(cmd: &KeysCmd, home: Option<&Path>, client: Option<&Client>) -> u8 {
    match cmd {
        KeysCmd::Audit(a) => run_audit(a, home, client).await,
        KeysCmd::Doc(d) => run_doc(d, client).await,
        KeysCmd::Migrate(m) => {
            let (m, home) = (m.clone(), home.map(Path::to_path_buf));
            tokio::task::spawn_blocking(move || migrate(&m, home.as_deref())).await.unwrap_or(1)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Which projects.

/// A project that could not be audited, and why.
struct Skipped {
    name: String,
    why: String,
}

/// The projects at `paths`, plus every registered one when `all`. Errors are printed; the
/// exit code comes back.
async fn targets(
    paths: &[PathBuf],
    all: bool,
    client: Option<&Client>,
) -> Result<(Vec<AuditTarget>, Vec<Skipped>), u8> {
    let mut out: Vec<AuditTarget> = Vec::new();
    let mut skipped = Vec::new();
    for p in paths {
        match project::load_dir(p) {
            Ok((root, _, manifest)) => out.push(AuditTarget { name: manifest.name.clone(), root, manifest }),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(2);
            }
        }
    }
    if all {
        let Some(c) = client else {
            eprintln!("error: listing the registered projects needs the server; give project directories instead");
            return Err(1);
        };
        let projects: Vec<ProjectView> = match c.get("/api/v1/projects").await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e:#}");
                return Err(1);
            }
        };
        for p in projects {
            let Some(root) = &p.root else {
                skipped.push(Skipped {
                    name: p.name.clone(),
                    why: "hosted (HTTP plugin): its files are on its host, not here".into(),
                });
                continue;
            };
            match project::load_dir(Path::new(root)) {
                Ok((root, _, manifest)) => out.push(AuditTarget { name: p.name.clone(), root, manifest }),
                Err(e) => skipped.push(Skipped { name: p.name.clone(), why: e.to_string() }),
            }
        }
    }
    let mut seen = BTreeSet::new();
    out.retain(|t| seen.insert(t.root.clone()));
    Ok((out, skipped))
}

// ---------------------------------------------------------------------------------------------
// audit

async fn run_audit(a: &AuditArgs, home: Option<&Path>, client: Option<&Client>) -> u8 {
    let all = a.paths.is_empty() || a.all_projects;
    let (targets, skipped) = match targets(&a.paths, all, client).await {
        Ok(t) => t,
        Err(code) => return code,
    };
    for s in &skipped {
        eprintln!("skipped {}: {}", s.name, s.why);
    }
    let shared = match shared_files(&a.shared, home) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = AuditOptions { home: home.map(Path::to_path_buf), shared };
    let audited = targets.clone();
    let findings = match tokio::task::spawn_blocking(move || audit::audit(&audited, &opts)).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: the audit stopped: {e}");
            return 1;
        }
    };
    if a.json {
        match serde_json::to_string_pretty(&findings) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        }
    } else {
        print_findings(&targets, home, &findings);
        println!("{}", summary(&targets, &skipped, &findings));
    }
    let fail_on = match a.fail_on {
        FailOn::Warning => Severity::Warning,
        FailOn::Error => Severity::Error,
    };
    u8::from(findings.iter().any(|f| f.severity >= fail_on))
}

/// `~/…` from the user's home; other paths as they are.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME").filter(|h| !h.is_empty())) {
        (Some(rest), Some(user_home)) => PathBuf::from(user_home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// The shared env files to compare the projects' keys with: those `keys.shared` in
/// config.yaml names (a missing one is a note) and those given with `--shared` (each must be
/// a file; new ones are remembered in config.yaml).
fn shared_files(flags: &[PathBuf], home: Option<&Path>) -> Result<Vec<PathBuf>, u8> {
    let config = home.map(|h| h.join("config.yaml"));
    let text = config.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    let configured = match (&config, &text) {
        (Some(path), Some(text)) => match Config::parse(&path.display().to_string(), text) {
            Ok(c) => c.shared_env_files,
            Err(e) => {
                eprintln!("error: {e}");
                return Err(2);
            }
        },
        _ => Vec::new(),
    };
    let mut out: Vec<PathBuf> = Vec::new();
    for f in &configured {
        match expand_home(f).canonicalize() {
            Ok(p) if p.is_file() => out.push(p),
            _ => eprintln!("note: keys.shared in config.yaml names {f}, which is not a file here; skipped"),
        }
    }
    let mut new = Vec::new();
    for f in flags {
        match f.canonicalize() {
            Ok(p) if p.is_file() => {
                if !out.contains(&p) {
                    out.push(p.clone());
                    new.push(p);
                }
            }
            _ => {
                eprintln!(
                    "error: --shared {}: not a file (name the shared env file itself, e.g. ~/agent_os/.env)",
                    f.display()
                );
                return Err(2);
            }
        }
    }
    if let (Some(config), false) = (config, new.is_empty()) {
        remember_shared(&config, text.as_deref(), &new);
    }
    Ok(out)
}

/// Adds `new` to `keys.shared` in config.yaml, appending a `keys:` section (creating the file
/// from the default when there is none). A config that has a `keys:` section already is not
/// rewritten: the note says what to add.
fn remember_shared(config: &Path, text: Option<&str>, new: &[PathBuf]) {
    let items: String =
        new.iter().map(|p| format!("    - '{}'\n", p.display().to_string().replace('\'', "''"))).collect();
    let text = text.unwrap_or(crate::home::DEFAULT_CONFIG);
    let shown: Vec<String> = new.iter().map(|p| p.display().to_string()).collect();
    if text.lines().any(|l| l.starts_with("keys:")) {
        eprintln!(
            "note: to compare with {} every time, add it under `keys: shared:` in {}",
            shown.join(" and "),
            config.display()
        );
        return;
    }
    let sep = if text.is_empty() || text.ends_with("\n\n") {
        ""
    } else if text.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    let updated = format!(
        "{text}{sep}# Shared env files `agent-os keys audit` compares each project's keys with (added by --shared).\nkeys:\n  shared:\n{items}"
    );
    if Config::parse("config.yaml", &updated).is_err() {
        eprintln!("note: could not add keys.shared to {}; add it by hand", config.display());
        return;
    }
    // The home is private to its owner, as `serve` makes it.
    if let Some(home) = config.parent()
        && let Err(e) = crate::home::ensure(home)
    {
        eprintln!("note: {e:#}; add keys.shared by hand");
        return;
    }
    let tmp = config.with_extension("yaml.tmp");
    let written = std::fs::write(&tmp, &updated).and_then(|_| std::fs::rename(&tmp, config));
    match written {
        Ok(()) => eprintln!("remembered {} in {} (keys.shared)", shown.join(" and "), config.display()),
        Err(e) => eprintln!("note: could not write {}: {e}; add keys.shared by hand", config.display()),
    }
}

fn print_findings(targets: &[AuditTarget], home: Option<&Path>, findings: &[Finding]) {
    let mut first = true;
    let mut section = |title: String, items: Vec<&Finding>| {
        if !first {
            println!();
        }
        first = false;
        if items.is_empty() {
            println!("{title}: no problems found");
            return;
        }
        println!("{title}");
        for f in items {
            let place = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{file}:{line}"),
                (Some(file), None) => file.clone(),
                _ => "-".into(),
            };
            println!("  {:<8} {place}  [{}]", f.severity.as_str(), f.check);
            println!("      {}", f.message);
            println!("      fix: {}", f.fix);
        }
    };
    for t in targets {
        let mut items: Vec<&Finding> = findings.iter().filter(|f| f.project.as_deref() == Some(&t.name)).collect();
        items.sort_by_key(|f| std::cmp::Reverse(f.severity));
        section(format!("{} ({})", t.name, t.root.display()), items);
    }
    let own: Vec<&Finding> = findings.iter().filter(|f| f.project.is_none()).collect();
    if let Some(home) = home
        && (!own.is_empty() || home.join(".env").is_file())
    {
        section(format!("Agent OS's own env file ({})", home.join(".env").display()), own);
    }
}

fn summary(targets: &[AuditTarget], skipped: &[Skipped], findings: &[Finding]) -> String {
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = findings.len() - errors;
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut line = format!(
        "\n{} audited: {}, {}",
        plural(targets.len(), "project", "projects"),
        plural(errors, "error", "errors"),
        plural(warnings, "warning", "warnings")
    );
    if !skipped.is_empty() {
        line.push_str(&format!(" ({} skipped)", skipped.len()));
    }
    line
}

// ---------------------------------------------------------------------------------------------
// doc

/// One key of one project, by name.
struct DocRow {
    project: String,
    service: String,
    key_name: Option<String>,
    variable: String,
    env_file: String,
}

async fn run_doc(d: &DocArgs, client: Option<&Client>) -> u8 {
    let mut rows = Vec::new();
    let mut keyless = Vec::new();
    let mut add = |name: &str, keys: Vec<(String, String, Option<String>)>, env_file: String| {
        if keys.is_empty() {
            keyless.push(name.to_string());
        }
        for (variable, service, key_name) in keys {
            rows.push(DocRow { project: name.into(), service, key_name, variable, env_file: env_file.clone() });
        }
    };
    if d.paths.is_empty() {
        let Some(c) = client else {
            eprintln!("error: listing the registered projects needs the server; give project directories instead");
            return 1;
        };
        let projects: Vec<ProjectView> = match c.get("/api/v1/projects").await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e:#}");
                return 1;
            }
        };
        for p in projects {
            let env_file = match (&p.root, &p.env_file) {
                (Some(root), env) => Path::new(root).join(env.as_deref().unwrap_or(".env")).display().to_string(),
                (None, Some(env)) => format!("{env} (on its host)"),
                (None, None) => "(on its host)".to_string(),
            };
            let keys = p.keys.iter().map(|k| (k.variable.clone(), k.service.clone(), k.key_name.clone())).collect();
            add(&p.name, keys, env_file);
        }
    } else {
        let (targets, _) = match targets(&d.paths, false, None).await {
            Ok(t) => t,
            Err(code) => return code,
        };
        for t in &targets {
            let env_file = t.root.join(audit::env_file_rel(&t.manifest)).display().to_string();
            let keys =
                t.manifest.keys.iter().map(|k| (k.variable.clone(), k.service.clone(), k.key_name.clone())).collect();
            add(&t.name, keys, env_file);
        }
    }
    let text = render_doc(&rows, &keyless);
    match &d.output {
        None => {
            print!("{text}");
            0
        }
        Some(file) => match std::fs::write(file, &text) {
            Ok(()) => {
                let services: BTreeSet<&str> = rows.iter().map(|r| r.service.as_str()).collect();
                println!("wrote {} ({} keys of {} services)", file.display(), rows.len(), services.len());
                0
            }
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", file.display());
                1
            }
        },
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn render_doc(rows: &[DocRow], keyless: &[String]) -> String {
    let mut by_service: BTreeMap<&str, Vec<&DocRow>> = BTreeMap::new();
    for r in rows {
        by_service.entry(&r.service).or_default().push(r);
    }
    let mut out = String::from(
        "# External resources\n\n\
         The credentials each project uses, by name only: which key of which service, in which variable, \
         kept in which env file. Each project has its own key per service, named `{project}-{service}`, so \
         costs can be told apart and one key can be revoked alone. Written by `agent-os keys doc` from the \
         projects' manifests; it holds no values.\n",
    );
    for (service, mut rows) in by_service {
        rows.sort_by(|a, b| (&a.project, &a.variable).cmp(&(&b.project, &b.variable)));
        out.push_str(&format!(
            "\n## {service}\n\n| project | key name | variable | env file |\n| --- | --- | --- | --- |\n"
        ));
        for r in rows {
            let key_name = match &r.key_name {
                Some(k) => format!("`{}`", cell(k)),
                None => format!("(not named; convention: `{}-{}`)", cell(&r.project), cell(&r.service)),
            };
            out.push_str(&format!(
                "| {} | {key_name} | `{}` | `{}` |\n",
                cell(&r.project),
                cell(&r.variable),
                cell(&r.env_file)
            ));
        }
    }
    if rows.is_empty() {
        out.push_str("\nNo project declares any key (`keys:` in agent-os.yaml).\n");
    }
    if !keyless.is_empty() {
        out.push_str(&format!("\nProjects that declare no keys: {}.\n", keyless.join(", ")));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// migrate

/// The project at `dir`: from its manifest, or, before it has one, named after its directory.
fn migrate_target(dir: &Path) -> Result<AuditTarget, String> {
    let root = dir.canonicalize().map_err(|e| format!("--project {}: {e}", dir.display()))?;
    if root.join(MANIFEST_FILE).is_file() {
        let (root, _, manifest) = project::load_dir(&root).map_err(|e| e.to_string())?;
        return Ok(AuditTarget { name: manifest.name.clone(), root, manifest });
    }
    let base = root.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let slug: String = base.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let slug = slug.trim_matches('-').chars().take(63).collect::<String>();
    let manifest = Manifest::parse(MANIFEST_FILE, &format!("name: {slug}\n")).map_err(|_| {
        format!("{}: no {MANIFEST_FILE}, and the directory's name is not a project name; create one", root.display())
    })?;
    Ok(AuditTarget { name: manifest.name.clone(), root, manifest })
}

/// The variable names of an env file, in order, each once. Values are not kept.
fn env_names(path: &Path) -> Result<Vec<String>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("--from {}: {e}", path.display()))?;
    if !meta.is_file() || meta.len() > audit::MAX_BYTES {
        return Err(format!("--from {}: not an env file of at most 1 MiB", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("--from {}: {e}", path.display()))?;
    let mut seen = BTreeSet::new();
    Ok(envfile::parse(&text).entries.into_iter().map(|e| e.key).filter(|k| seen.insert(k.clone())).collect())
}

/// Where `--apply` keeps the originals: under Agent OS's home, outside the project's work
/// tree, so git never sees them (`HOME/backups/keys-migrate/PROJECT-TIME/`).
fn backup_dir(home: Option<&Path>, project: &str) -> PathBuf {
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    backup_root(home).join(format!("{project}-{stamp}"))
}

fn backup_root(home: Option<&Path>) -> PathBuf {
    let base = home.map(Path::to_path_buf).unwrap_or_else(|| std::env::temp_dir().join("agent-os"));
    base.join("backups").join("keys-migrate")
}

/// Copies `file` (of the project at `root`) to its place under `dir`; returns the copy.
fn back_up(file: &Path, root: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let rel = file.strip_prefix(root).unwrap_or(file);
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    let backup = backup_path(&dir.join(rel));
    if let Some(parent) = backup.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(file, &backup)?;
    Ok(backup)
}

/// The documents whose lines may tell the reader where keys come from.
const DOCS: [&str; 4] = ["README.md", "CLAUDE.md", "AGENTS.md", ".cursorrules"];

/// A line of the project's docs that names the shared env file, and the same line naming the
/// project's own env file instead.
struct DocEdit {
    file: PathBuf,
    /// 1-based.
    line: usize,
    old: String,
    new: String,
}

/// Mentions of `shared` in `line`: any path that ends with its directory's name and its own
/// (`agent_os/.env`, `~/agent_os/.env`, the full path), replaced by `own`; `None` when there
/// is none.
fn replace_mentions(line: &str, shared: &Path, own: &str) -> Option<String> {
    let file = shared.file_name()?.to_str()?;
    let dir = shared.parent()?.file_name()?.to_str()?;
    let tail = format!("{dir}/{file}");
    let path_char = |c: char| !c.is_whitespace() && !"`'\"()[]<>*,;".contains(c);
    let mut out = String::new();
    let mut rest = line;
    let mut changed = false;
    while let Some(i) = rest.find(&tail) {
        let end = i + tail.len();
        let after = &rest[end..];
        let mut chars = after.chars();
        let ends_here = match chars.next() {
            None => true,
            Some('.') => !chars.next().is_some_and(|c| c.is_alphanumeric()),
            Some(c) => !(c.is_alphanumeric() || "_-/".contains(c)),
        };
        let start = rest[..i].char_indices().rev().take_while(|&(_, c)| path_char(c)).last().map_or(i, |(j, _)| j);
        let prefix = &rest[start..i];
        if ends_here && (prefix.is_empty() || prefix.ends_with('/')) {
            out.push_str(&rest[..start]);
            out.push_str(own);
            changed = true;
        } else {
            out.push_str(&rest[..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// The lines of the project's README.md, CLAUDE.md, AGENTS.md and .cursorrules that send the
/// reader to the shared env file.
fn doc_edits(root: &Path, shared: &Path, own: &str) -> Vec<DocEdit> {
    let mut out = Vec::new();
    for name in DOCS {
        let file = root.join(name);
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for (n, line) in text.lines().enumerate() {
            if let Some(new) = replace_mentions(line, shared, own) {
                out.push(DocEdit { file: file.clone(), line: n + 1, old: line.to_string(), new });
            }
        }
    }
    out
}

/// `text` with the lines of `edits` replaced, line ends kept; `None` when one is no longer
/// what it was.
fn apply_doc_edits(text: &str, edits: &[&DocEdit]) -> Option<String> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    for e in edits {
        let line = lines.get_mut(e.line.checked_sub(1)?)?;
        let body_len = line.trim_end_matches(['\n', '\r']).len();
        if line[..body_len] != e.old {
            return None;
        }
        *line = format!("{}{}", e.new, &line[body_len..]);
    }
    Some(lines.concat())
}

/// A free backup name next to `file`: `FILE.bak`, else `FILE.bak.2`, ….
fn backup_path(file: &Path) -> PathBuf {
    let base = format!("{}.bak", file.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 2;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// `text` with the lines of `reads` replaced, line ends kept; `None` when a line is no longer
/// what it was (the file changed meanwhile).
fn rewrite(text: &str, reads: &[&EnvRead]) -> Option<String> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let mut by_line: BTreeMap<u64, Vec<&EnvRead>> = BTreeMap::new();
    for r in reads {
        by_line.entry(r.line).or_default().push(r);
    }
    for (n, mut on_line) in by_line {
        let line = lines.get_mut(usize::try_from(n).ok()?.checked_sub(1)?)?;
        let body_len = line.trim_end_matches(['\n', '\r']).len();
        let original = &on_line[0].text;
        if line[..body_len] != **original || on_line.iter().any(|r| r.text != *original) {
            return None;
        }
        // Right to left, so the columns of the reads still to do stay valid.
        on_line.sort_by_key(|r| std::cmp::Reverse(r.column));
        let mut new = original.clone();
        for r in on_line {
            let end = r.column + r.path.len();
            let new_path = r.replacement.get(r.column..r.replacement.len().checked_sub(r.text.len() - end)?)?;
            new.replace_range(r.column..end, new_path);
        }
        let ending = line[body_len..].to_string();
        *line = format!("{new}{ending}");
    }
    Some(lines.concat())
}

fn migrate(m: &MigrateArgs, home: Option<&Path>) -> u8 {
    let shared = match m.from.canonicalize() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: --from {}: {e}", m.from.display());
            return 2;
        }
    };
    let target = match migrate_target(&m.project) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let env_rel = audit::env_file_rel(&target.manifest).to_string();
    let own_env = target.root.join(&env_rel);
    if own_env.canonicalize().ok().as_ref() == Some(&shared) {
        eprintln!("error: {} is {}'s own env file, not a shared one", shared.display(), target.name);
        return 2;
    }
    let names = match env_names(&shared) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let used = audit::names_used(&target, &names);
    let reads: Vec<EnvRead> =
        audit::foreign_env_reads(&target, home).into_iter().filter(|r| r.resolved == shared).collect();

    // .env.example: the names the project uses, placeholders only.
    let example = target.root.join(".env.example");
    let example_text = std::fs::read_to_string(&example).unwrap_or_default();
    let listed: BTreeSet<String> = envfile::parse(&example_text).entries.into_iter().map(|e| e.key).collect();
    let to_add: Vec<&String> = used.iter().filter(|n| !listed.contains(*n)).collect();
    let declared: BTreeSet<&str> = target.manifest.keys.iter().map(|k| k.variable.as_str()).collect();
    let ignored = audit::git_ignored(&target.root, &env_rel);
    let edited_files: BTreeSet<&Path> = reads.iter().map(|r| r.file.as_path()).collect();

    let p = &target.name;
    println!("Migrating {p} ({}) off the shared env file {}", target.root.display(), shared.display());
    println!();
    if used.is_empty() {
        println!("No variable of {} appears in {p}'s scripts, configs or manifest.", shared.display());
    } else {
        println!("Variables {p} takes from it (names only; no value is ever copied):");
        for name in &used {
            if audit::credential_name(name) {
                let service = audit::guess_service(name, "");
                println!("  {name:<28} a credential: create a new {service} key for {p} alone, named {p}-{service}");
            } else {
                println!("  {name:<28} a setting: give {p} its own value");
            }
        }
    }
    println!();
    if reads.is_empty() {
        println!("No line of {p}'s scripts and configs reads {} by a path this audit can follow.", shared.display());
    } else {
        println!("Lines that read {} (each will read {} instead):", shared.display(), own_env.display());
        for r in &reads {
            let rel = r.file.strip_prefix(&target.root).unwrap_or(&r.file).display().to_string();
            println!("  {rel}:{}", r.line);
            println!("    - {}", redact_shapes(r.text.trim_end()));
            println!("    + {}", redact_shapes(r.replacement.trim_end()));
        }
    }
    println!();
    if to_add.is_empty() {
        println!(".env.example: lists every one already");
    } else {
        let names: Vec<&str> = to_add.iter().map(|s| s.as_str()).collect();
        let verb = if example_text.is_empty() { "create it with" } else { "add" };
        println!(".env.example: {verb} {} (placeholder values)", names.join(", "));
    }
    match ignored {
        Some(false) => println!(".gitignore: add /{env_rel} (git does not ignore {env_rel} yet)"),
        Some(true) => println!(".gitignore: {env_rel} is already ignored"),
        None => println!(".gitignore: {} is not in a git work tree; nothing to ignore", target.root.display()),
    }
    let docs = doc_edits(&target.root, &shared, &env_rel);
    if !docs.is_empty() {
        println!("Docs that send the reader to {} (each will name {env_rel} instead):", shared.display());
        for d in &docs {
            let rel = d.file.strip_prefix(&target.root).unwrap_or(&d.file).display().to_string();
            println!("  {rel}:{}", d.line);
            println!("    - {}", redact_shapes(d.old.trim_end()));
            println!("    + {}", redact_shapes(d.new.trim_end()));
        }
    }
    let undeclared: Vec<&String> =
        used.iter().filter(|n| audit::credential_name(n) && !declared.contains(n.as_str())).collect();
    if !undeclared.is_empty() {
        println!("agent-os.yaml: declare them under `keys:` (migrate does not edit the manifest):");
        for name in undeclared {
            let service = audit::guess_service(name, "");
            println!("    {name}: {{ service: {service}, key_name: {p}-{service} }}");
        }
    }
    println!();

    if !m.apply {
        let mut would = Vec::new();
        if !reads.is_empty() {
            would.push(format!(
                "rewrite {} line{} in {} file{} (keeping the originals under {})",
                reads.len(),
                if reads.len() == 1 { "" } else { "s" },
                edited_files.len(),
                if edited_files.len() == 1 { "" } else { "s" },
                backup_root(home).display()
            ));
        }
        if !docs.is_empty() {
            would.push(format!("edit {} line{} of docs", docs.len(), if docs.len() == 1 { "" } else { "s" }));
        }
        if !to_add.is_empty() {
            would.push("write .env.example".into());
        }
        if ignored == Some(false) {
            would.push(format!("add /{env_rel} to .gitignore"));
        }
        if would.is_empty() {
            println!("Dry run: nothing to change.");
        } else {
            println!("Dry run: nothing was changed. With --apply it would {}.", would.join(", "));
        }
        return 0;
    }

    // --apply
    let mut code = 0;
    let backups = backup_dir(home, p);
    for file in &edited_files {
        let mine: Vec<&EnvRead> = reads.iter().filter(|r| r.file == *file).collect();
        let shown = file.strip_prefix(&target.root).unwrap_or(file).display().to_string();
        let Ok(text) = std::fs::read_to_string(file) else {
            eprintln!("error: cannot read {shown}; left as it was");
            code = 1;
            continue;
        };
        let Some(new_text) = rewrite(&text, &mine) else {
            eprintln!("error: {shown} changed while migrating; left as it was, run migrate again");
            code = 1;
            continue;
        };
        let backup = match back_up(file, &target.root, &backups) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: cannot back {shown} up under {}: {e}; left as it was", backups.display());
                code = 1;
                continue;
            }
        };
        if let Err(e) = std::fs::write(file, new_text) {
            eprintln!("error: cannot write {shown}: {e} (the original is in {})", backup.display());
            code = 1;
            continue;
        }
        println!(
            "rewrote {shown} ({} line{}; the original is in {})",
            mine.len(),
            if mine.len() == 1 { "" } else { "s" },
            backup.display()
        );
    }
    let doc_files: BTreeSet<&Path> = docs.iter().map(|d| d.file.as_path()).collect();
    for file in doc_files {
        let mine: Vec<&DocEdit> = docs.iter().filter(|d| d.file == file).collect();
        let shown = file.strip_prefix(&target.root).unwrap_or(file).display().to_string();
        let Some(new_text) = std::fs::read_to_string(file).ok().and_then(|t| apply_doc_edits(&t, &mine)) else {
            eprintln!("error: {shown} changed while migrating; left as it was, run migrate again");
            code = 1;
            continue;
        };
        let written = back_up(file, &target.root, &backups).and_then(|b| std::fs::write(file, new_text).map(|_| b));
        match written {
            Ok(b) => println!(
                "edited {shown} ({} line{}; the original is in {})",
                mine.len(),
                if mine.len() == 1 { "" } else { "s" },
                b.display()
            ),
            Err(e) => {
                eprintln!("error: cannot edit {shown}: {e}");
                code = 1;
            }
        }
    }
    if !to_add.is_empty() {
        let mut text = example_text.clone();
        if text.is_empty() {
            text.push_str(&format!(
                "# {p}'s own settings, by name only. Copy to {env_rel} and fill in; {env_rel} stays out of git.\n"
            ));
        } else if !text.ends_with('\n') {
            text.push('\n');
        }
        for name in &to_add {
            if audit::credential_name(name) {
                let service = audit::guess_service(name, "");
                text.push_str(&format!(
                    "# {name}: create a new {service} key for {p} alone, named {p}-{service}; do not reuse the shared one.\n{name}=replace-me\n"
                ));
            } else {
                text.push_str(&format!(
                    "# {name}: {p}'s own value (it used to come from a shared env file).\n{name}=\n"
                ));
            }
        }
        match std::fs::write(&example, text) {
            Ok(()) => {
                println!("wrote .env.example ({} name{} added)", to_add.len(), if to_add.len() == 1 { "" } else { "s" })
            }
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", example.display());
                code = 1;
            }
        }
    }
    if ignored == Some(false) {
        let gitignore = target.root.join(".gitignore");
        let mut text = std::fs::read_to_string(&gitignore).unwrap_or_default();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("/{env_rel}\n"));
        match std::fs::write(&gitignore, text) {
            Ok(()) => println!("added /{env_rel} to .gitignore"),
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", gitignore.display());
                code = 1;
            }
        }
    }

    // Audit again: the project must no longer read the shared file.
    println!();
    let opts = AuditOptions { home: home.map(Path::to_path_buf), shared: vec![shared.clone()] };
    let findings = audit::audit(std::slice::from_ref(&target), &opts);
    let ours: Vec<Finding> = findings.into_iter().filter(|f| f.project.as_deref() == Some(p.as_str())).collect();
    print_findings(std::slice::from_ref(&target), None, &ours);
    let still: Vec<EnvRead> =
        audit::foreign_env_reads(&target, home).into_iter().filter(|r| r.resolved == shared).collect();
    println!();
    if still.is_empty() {
        println!("{p} no longer reads {}.", shared.display());
        println!(
            "Next: create {} from .env.example with {p}'s own new keys, then, once no project reads it, remove the variables from {} and revoke the shared keys.",
            own_env.display(),
            shared.display()
        );
    } else {
        for r in &still {
            eprintln!("error: {}:{} still reads {}", r.file.display(), r.line, shared.display());
        }
        code = 1;
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(line: u64, text: &str, path: &str, column: usize, new_path: &str) -> EnvRead {
        EnvRead {
            file: PathBuf::from("/p/run.sh"),
            line,
            text: text.into(),
            path: path.into(),
            column,
            resolved: PathBuf::from("/s/.env"),
            replacement: format!("{}{new_path}{}", &text[..column], &text[column + path.len()..]),
        }
    }

    #[test]
    fn rewrites_only_the_lines_read_keeping_line_ends() {
        let text = "#!/bin/sh\r\nsource ~/s/.env\r\necho hi\n. /s/.env; . /s/.env\n";
        let a = read(2, "source ~/s/.env", "~/s/.env", 7, "/my project/.env");
        let b = read(4, ". /s/.env; . /s/.env", "/s/.env", 2, "/p/.env");
        let c = read(4, ". /s/.env; . /s/.env", "/s/.env", 13, "/p/.env");
        assert_eq!(
            rewrite(text, &[&a, &c, &b]).unwrap(),
            "#!/bin/sh\r\nsource /my project/.env\r\necho hi\n. /p/.env; . /p/.env\n"
        );
        let stale = read(3, "source ~/s/.env", "~/s/.env", 7, "/p/.env");
        assert_eq!(rewrite(text, &[&stale]), None, "a line that changed is left alone");
    }

    #[test]
    fn the_doc_lists_keys_per_service_without_values() {
        let row = |project: &str, service: &str, key: Option<&str>, var: &str| DocRow {
            project: project.into(),
            service: service.into(),
            key_name: key.map(str::to_string),
            variable: var.into(),
            env_file: format!("/p/{project}/.env"),
        };
        let doc = render_doc(
            &[
                row("trading", "openai", Some("trading-openai"), "OPENAI_API_KEY"),
                row("cortana", "openai", None, "OPENAI_API_KEY"),
                row("trading", "discord", Some("trading-discord"), "DISCORD_WEBHOOK_URL"),
            ],
            &["image-workflow".into()],
        );
        let discord = doc.find("## discord").unwrap();
        let openai = doc.find("## openai").unwrap();
        assert!(discord < openai, "{doc}");
        assert!(doc.contains(
            "| cortana | (not named; convention: `cortana-openai`) | `OPENAI_API_KEY` | `/p/cortana/.env` |"
        ));
        assert!(doc.contains("| trading | `trading-openai` | `OPENAI_API_KEY` | `/p/trading/.env` |"));
        assert!(doc.contains("Projects that declare no keys: image-workflow."));
    }

    #[test]
    fn backups_never_overwrite_an_older_backup() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("run.sh");
        assert_eq!(backup_path(&f), dir.path().join("run.sh.bak"));
        std::fs::write(dir.path().join("run.sh.bak"), "old").unwrap();
        assert_eq!(backup_path(&f), dir.path().join("run.sh.bak.2"));
    }
}
