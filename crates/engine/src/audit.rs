//! The credential-isolation audit: does each project keep its own credentials? It looks at a
//! project's own env file (does it exist, does git ignore it, is it tracked), at the project's
//! scripts and configs (does any line read another project's env file, or Agent OS's own), at
//! the files git tracks (secret-shaped values), at the manifest's `keys:` (undeclared
//! credentials, key names off the `{project}-{service}` convention), across projects (one
//! secret value in two projects' env files) and at Agent OS's own `HOME/.env` (provider keys
//! there are the shared-key anti-pattern).
//!
//! This is the one place in Agent OS that reads values from env files, and only on a user's
//! command. A value lives in memory while it is compared: it is never stored, logged or put in
//! a [`Finding`]. Values are compared across projects by an HMAC-SHA256 fingerprint under a
//! per-install key (`HOME/audit.key`), so not even a plain hash of a key is ever kept. Whether
//! git ignores or tracks a file is asked of git itself (negations, nested and global ignore
//! files all count), through [`crate::runner::run_tool`].

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use agent_os_core::Manifest;
use agent_os_core::envfile;
use agent_os_core::redact::find_shapes;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::runner;

/// A project to audit: its name, its canonical root directory and its manifest.
#[derive(Clone, Debug)]
pub struct AuditTarget {
    pub name: String,
    pub root: PathBuf,
    pub manifest: Manifest,
}

#[derive(Clone, Debug, Default)]
pub struct AuditOptions {
    /// Agent OS's home: its own `.env` is checked, and the fingerprint key lives at
    /// `HOME/audit.key`. Without it, a random key serves this run only.
    pub home: Option<PathBuf>,
    /// Shared env files the projects used to read (`--shared`, `keys.shared` in config.yaml),
    /// such as the seed's `agent_os/.env`: a project's value found in one is a shared key.
    pub shared: Vec<PathBuf>,
}

/// How bad a finding is. `Warning < Error`, so `severity >= fail_on` reads naturally.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One problem, where it is and how to fix it. Never holds a secret value: at most its masked
/// form ([`mask`]).
#[derive(Serialize, Clone, Debug)]
pub struct Finding {
    pub severity: Severity,
    /// The project it is about; `None` for Agent OS's own env file.
    pub project: Option<String>,
    /// A stable identifier of the check, e.g. `env-not-ignored`.
    pub check: &'static str,
    /// The file, relative to the project's root when it is inside it, else absolute.
    pub file: Option<String>,
    /// 1-based.
    pub line: Option<u64>,
    pub message: String,
    pub fix: String,
}

/// A line in one of a project's files that reads an env file outside the project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvRead {
    /// The file, absolute.
    pub file: PathBuf,
    /// 1-based.
    pub line: u64,
    /// The whole line as it is in the file.
    pub text: String,
    /// The path as written (including a `$(dirname "$0")` prefix when there is one).
    pub path: String,
    /// Where `path` starts in `text`, in bytes.
    pub column: usize,
    /// Where it leads.
    pub resolved: PathBuf,
    /// The same line reading the project's own env file instead.
    pub replacement: String,
}

/// Files read, at most, per project (scripts and configs; files git tracks).
pub const MAX_FILES: usize = 5000;
/// Larger files are skipped: they are data, not scripts or configs.
pub const MAX_BYTES: u64 = 1024 * 1024;
/// Directory entries looked at, at most, per walk: a project with a huge data directory is
/// still audited in bounded time.
const MAX_ENTRIES: usize = 200_000;
/// Dependencies, build output and virtual environments: never the project's own scripts.
const SKIP_DIRS: [&str; 6] = [".git", "node_modules", "target", "venv", ".venv", "__pycache__"];
/// File extensions of scripts and configs that may load an env file.
const SCRIPT_EXTENSIONS: [&str; 16] = [
    "sh", "bash", "zsh", "py", "js", "ts", "mjs", "cjs", "rb", "plist", "yml", "yaml", "toml", "cron", "service",
    "envrc",
];
/// Lock files and checksum lists: full of hashes that look random and are not secrets.
const LOCK_FILES: [&str; 6] =
    ["package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "go.sum", "Cargo.lock", "flake.lock"];
/// A git command that takes longer than this is given up on.
const GIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Findings of one kind reported per file, at most.
const MAX_PER_FILE: usize = 20;
/// Values shorter than this are never compared across projects: too many collide by chance.
const MIN_SHARED_LEN: usize = 8;

/// Runs every check on `targets` and, with a home, on Agent OS's own env file.
pub fn audit(targets: &[AuditTarget], opts: &AuditOptions) -> Vec<Finding> {
    let home = opts.home.as_deref();
    let targets: Vec<AuditTarget> = targets
        .iter()
        .map(|t| AuditTarget { root: t.root.canonicalize().unwrap_or_else(|_| t.root.clone()), ..t.clone() })
        .collect();
    let mut findings = Vec::new();
    let key = fingerprint_key(home);
    let mut fingerprints: BTreeMap<[u8; 32], Vec<Holder>> = BTreeMap::new();

    for t in &targets {
        let env = env_check(t, &mut findings);
        if let Some(entries) = env {
            undeclared(t, &entries, &mut findings);
            for e in entries.iter().filter(|e| comparable(&e.key, &e.value)) {
                fingerprints.entry(fingerprint(&key, &e.value)).or_default().push(Holder {
                    owner: Owner::Project(t.name.clone()),
                    variable: e.key.clone(),
                    file: env_file_rel(&t.manifest).to_string(),
                    line: e.line as u64,
                    masked: mask(&e.value),
                });
            }
        }
        key_names(t, &mut findings);
        for read in foreign_reads(t, home, &mut findings) {
            findings.push(read_finding(t, &read, home, &opts.shared, &targets));
        }
        secrets_in_git(t, &mut findings);
    }

    if let Some(home) = home {
        let path = home.join(".env");
        if let Some(entries) = read_env(&path) {
            agent_os_env(&path, &entries, &targets, &mut findings);
            for e in entries.iter().filter(|e| comparable(&e.key, &e.value)) {
                fingerprints.entry(fingerprint(&key, &e.value)).or_default().push(Holder {
                    owner: Owner::AgentOs,
                    variable: e.key.clone(),
                    file: path.display().to_string(),
                    line: e.line as u64,
                    masked: mask(&e.value),
                });
            }
        }
    }
    let agent_os_env = home.map(|h| h.join(".env")).map(|p| p.canonicalize().unwrap_or(p));
    let mut seen = BTreeSet::new();
    for path in &opts.shared {
        let path = path.canonicalize().unwrap_or_else(|_| path.clone());
        if agent_os_env.as_ref() == Some(&path) || !seen.insert(path.clone()) {
            continue;
        }
        let Some(entries) = read_env(&path) else { continue };
        for e in entries.iter().filter(|e| comparable(&e.key, &e.value)) {
            fingerprints.entry(fingerprint(&key, &e.value)).or_default().push(Holder {
                owner: Owner::Shared(path.display().to_string()),
                variable: e.key.clone(),
                file: path.display().to_string(),
                line: e.line as u64,
                masked: mask(&e.value),
            });
        }
    }
    shared(&fingerprints, &targets, home, &mut findings);
    findings
}

/// Lines in `target`'s scripts and configs that read an env file outside the project: another
/// project's, Agent OS's own (`HOME/.env`) or a shared one. `home` is Agent OS's home.
pub fn foreign_env_reads(target: &AuditTarget, home: Option<&Path>) -> Vec<EnvRead> {
    let root = target.root.canonicalize().unwrap_or_else(|_| target.root.clone());
    let target = AuditTarget { root, ..target.clone() };
    foreign_reads(&target, home, &mut Vec::new())
}

/// Which of `names` appear as words in `target`'s scripts and configs (its manifest included),
/// in the order given: the variables the project takes from somewhere.
pub fn names_used(target: &AuditTarget, names: &[String]) -> Vec<String> {
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let mut found: BTreeSet<String> = BTreeSet::new();
    let walk = walk(&target.root, is_script);
    for file in &walk.files {
        let Some(text) = read_text(file) else { continue };
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if wanted.contains(word) {
                found.insert(word.to_string());
            }
        }
    }
    names.iter().filter(|n| found.contains(n.as_str())).cloned().collect()
}

/// Whether git ignores `rel` (a path relative to `root`) by its ignore rules, whether or not
/// the file exists or is tracked. `None` outside a git work tree, or when git cannot tell.
pub fn git_ignored(root: &Path, rel: &str) -> Option<bool> {
    if !in_work_tree(root) {
        return None;
    }
    match git(root, &["check-ignore", "-q", "--no-index", "--", rel], 0)?.code {
        Some(0) => Some(true),
        Some(1) => Some(false),
        _ => None,
    }
}

/// The project's env file relative to its root: `env_file`, else `.env`.
pub fn env_file_rel(m: &Manifest) -> &str {
    m.env_file.as_deref().unwrap_or(".env")
}

/// A value as it may be shown: the first 4 and last 3 characters of a value of 16 or more,
/// else nothing of it.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 16 {
        return "…".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 3..].iter().collect();
    format!("{head}…{tail}")
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    let mut n = 0usize;
    for c in s.chars() {
        *counts.entry(c).or_default() += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    counts
        .values()
        .map(|&k| {
            let p = k as f64 / n as f64;
            -p * p.log2()
        })
        .sum()
}

/// Whether a variable's name says it holds a credential.
pub fn credential_name(name: &str) -> bool {
    const WORDS: [&str; 9] =
        ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "WEBHOOK", "PRIVATE"];
    const NOT: [&str; 4] = ["AUTHOR", "AUTHORS", "MONKEY", "KEYBOARD"];
    let upper = name.to_ascii_uppercase();
    upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|seg| !NOT.contains(&seg) && WORDS.iter().any(|w| seg.contains(w)))
}

/// Whether a value has the shape of a secret: a known key shape, a URL with a password, or one
/// long high-entropy token.
pub fn secret_shaped(value: &str) -> bool {
    let v = value.trim();
    find_shapes(v).iter().any(|&(s, e)| plausible_secret(&v[s..e]))
        || url_password(v)
        || (high_entropy(v) && !placeholder(v))
}

/// The provider a variable is for, guessed from its name, then its value: `OPENAI_API_KEY` →
/// `openai`, `DISCORD_WEBHOOK_URL` → `discord`; else the name's first word.
pub fn guess_service(name: &str, value: &str) -> String {
    const BY_NAME: [(&str, &str); 32] = [
        ("OPENAI", "openai"),
        ("ANTHROPIC", "anthropic"),
        ("CLAUDE", "anthropic"),
        ("DISCORD", "discord"),
        ("SLACK", "slack"),
        ("GITHUB", "github"),
        ("GH", "github"),
        ("GITLAB", "gitlab"),
        ("STRIPE", "stripe"),
        ("AWS", "aws"),
        ("GOOGLE", "google"),
        ("GEMINI", "google"),
        ("GCP", "google"),
        ("AZURE", "azure"),
        ("MISTRAL", "mistral"),
        ("GROQ", "groq"),
        ("COHERE", "cohere"),
        ("REPLICATE", "replicate"),
        ("HUGGINGFACE", "huggingface"),
        ("HF", "huggingface"),
        ("PERPLEXITY", "perplexity"),
        ("ELEVENLABS", "elevenlabs"),
        ("PINECONE", "pinecone"),
        ("SUPABASE", "supabase"),
        ("TWILIO", "twilio"),
        ("SENDGRID", "sendgrid"),
        ("TELEGRAM", "telegram"),
        ("NOTION", "notion"),
        ("RAILWAY", "railway"),
        ("BINANCE", "binance"),
        ("COINBASE", "coinbase"),
        ("NTFY", "ntfy"),
    ];
    let upper = name.to_ascii_uppercase();
    let words: Vec<&str> = upper.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    for (word, service) in BY_NAME {
        if words.contains(&word) || (word.len() >= 5 && upper.contains(word)) {
            return service.to_string();
        }
    }
    let v = value.trim();
    let by_value = [
        ("sk-ant-", "anthropic"),
        ("sk-", "openai"),
        ("ghp_", "github"),
        ("github_pat_", "github"),
        ("xox", "slack"),
        ("AKIA", "aws"),
        ("AIza", "google"),
        ("https://discord.com/api/webhooks/", "discord"),
        ("https://hooks.slack.com/", "slack"),
    ];
    for (prefix, service) in by_value {
        if v.starts_with(prefix) {
            return service.to_string();
        }
    }
    const GENERIC: [&str; 12] = [
        "API", "KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "AUTH", "ACCESS", "PRIVATE", "WEBHOOK", "URL", "CLIENT",
    ];
    words
        .iter()
        .find(|w| !GENERIC.contains(w) && !w.chars().all(|c| c.is_ascii_digit()))
        .map(|w| w.to_ascii_lowercase())
        .unwrap_or_else(|| "service".into())
}

// ---------------------------------------------------------------------------------------------
// The project's own env file.

/// Checks the env file exists, is ignored and untracked; returns its entries when it exists.
fn env_check(t: &AuditTarget, findings: &mut Vec<Finding>) -> Option<Vec<envfile::EnvEntry>> {
    let rel = env_file_rel(&t.manifest);
    let path = t.root.join(rel);
    // A hosted project's keys live on its host: naming them says nothing of a local env file.
    let hosted = matches!(t.manifest.transport, agent_os_core::manifest::Transport::Http { .. });
    let declared = t.manifest.env_file.is_some() || (!t.manifest.keys.is_empty() && !hosted);
    let exists = path.is_file();
    if !exists && declared {
        let fill = if t.manifest.keys.is_empty() { "adjust its settings" } else { "fill in this project's own keys" };
        let fix = if t.root.join(".env.example").is_file() && rel == ".env" {
            format!("create it from the example: `cp .env.example .env`, then {fill}")
        } else if t.manifest.keys.is_empty() {
            format!(
                "create {rel} with the project's settings, or remove `env_file` from agent-os.yaml if it needs none"
            )
        } else {
            format!("create {rel} with this project's own keys (see `keys:` in agent-os.yaml)")
        };
        findings.push(Finding {
            severity: Severity::Warning,
            project: Some(t.name.clone()),
            check: "env-missing",
            file: Some(rel.to_string()),
            line: None,
            message: format!(
                "the project's env file {rel} does not exist, so its tasks and scripts get no keys from it"
            ),
            fix,
        });
    }
    if in_work_tree(&t.root) {
        let tracked = git(&t.root, &["ls-files", "--error-unmatch", "--", rel], 0).is_some_and(|o| o.code == Some(0));
        if tracked {
            findings.push(Finding {
                severity: Severity::Error,
                project: Some(t.name.clone()),
                check: "env-tracked",
                file: Some(rel.to_string()),
                line: None,
                message: format!("{rel} is tracked by git: every key in it is in the repository's history"),
                fix: format!(
                    "`git rm --cached -- {}` and commit, make sure .gitignore lists it, then rotate every key it held (the old values stay in the history)",
                    shell_quote(rel)
                ),
            });
        }
        if git_ignored(&t.root, rel) == Some(false) && (exists || declared) {
            findings.push(Finding {
                severity: Severity::Error,
                project: Some(t.name.clone()),
                check: "env-not-ignored",
                file: Some(rel.to_string()),
                line: None,
                message: format!("git does not ignore {rel}: one `git add .` commits the project's keys"),
                fix: format!(
                    "add the line `/{rel}` to the project's .gitignore (check with `git check-ignore -v {}`)",
                    shell_quote(rel)
                ),
            });
        }
    }
    if exists { Some(read_env(&path).unwrap_or_default()) } else { None }
}

/// The entries of an env file, if it can be read.
fn read_env(path: &Path) -> Option<Vec<envfile::EnvEntry>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_BYTES {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    Some(envfile::parse(&text).entries)
}

/// Credential-like variables of the env file that `keys:` does not declare.
fn undeclared(t: &AuditTarget, entries: &[envfile::EnvEntry], findings: &mut Vec<Finding>) {
    let declared: BTreeSet<&str> = t.manifest.keys.iter().map(|k| k.variable.as_str()).collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for e in entries.iter().rev() {
        // A later line wins; report each variable once, at its last line.
        if !seen.insert(e.key.as_str()) || declared.contains(e.key.as_str()) || !looks_like_credential(&e.key, &e.value)
        {
            continue;
        }
        let service = guess_service(&e.key, &e.value);
        out.push(Finding {
            severity: Severity::Warning,
            project: Some(t.name.clone()),
            check: "undeclared-credential",
            file: Some(env_file_rel(&t.manifest).to_string()),
            line: Some(e.line as u64),
            message: format!(
                "{} looks like a credential but agent-os.yaml does not declare it under `keys:`, so its use and cost cannot be attributed",
                e.key
            ),
            fix: format!(
                "add under `keys:` in agent-os.yaml: `  {}: {{ service: {service}, key_name: {}-{service} }}` (correct the service if the guess is wrong)",
                e.key, t.name
            ),
        });
    }
    out.sort_by_key(|f| f.line);
    findings.extend(out);
}

/// Declared key names off the `{project}-{service}` convention.
fn key_names(t: &AuditTarget, findings: &mut Vec<Finding>) {
    for k in &t.manifest.keys {
        let Some(name) = &k.key_name else { continue };
        let expected = format!("{}-{}", t.name, k.service);
        if *name != expected {
            findings.push(Finding {
                severity: Severity::Warning,
                project: Some(t.name.clone()),
                check: "key-name-convention",
                file: Some(agent_os_core::manifest::MANIFEST_FILE.to_string()),
                line: None,
                message: format!(
                    "keys.{}.key_name is {name:?}; the convention is {{project}}-{{service}}, so each project has its own key per provider",
                    k.variable
                ),
                fix: format!(
                    "create a key named {expected} at {} for this project alone and write `key_name: {expected}`",
                    k.service
                ),
            });
        }
    }
}

/// Provider keys in Agent OS's own env file. Agent OS's own secrets (`AGENT_OS_*`, the
/// webhooks of its notification channels) belong there; a project's keys do not.
fn agent_os_env(path: &Path, entries: &[envfile::EnvEntry], targets: &[AuditTarget], findings: &mut Vec<Finding>) {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for e in entries.iter().rev() {
        let upper = e.key.to_ascii_uppercase();
        if !seen.insert(e.key.as_str())
            || upper.starts_with("AGENT_OS_")
            || upper.contains("WEBHOOK")
            || !looks_like_credential(&e.key, &e.value)
        {
            continue;
        }
        let service = guess_service(&e.key, &e.value);
        let users: Vec<&str> = targets
            .iter()
            .filter(|t| t.manifest.keys.iter().any(|k| k.variable == e.key))
            .map(|t| t.name.as_str())
            .collect();
        let whom = match users.as_slice() {
            [] => format!("to the project that uses it, under a new key named {{project}}-{service}"),
            [one] => format!("to {one}, which declares it, under a new key named {one}-{service}"),
            many => format!(
                "to each project that declares it ({}), each under its own new key ({})",
                many.join(", "),
                many.iter().map(|p| format!("{p}-{service}")).collect::<Vec<_>>().join(", ")
            ),
        };
        out.push(Finding {
            severity: Severity::Error,
            project: None,
            check: "agent-os-env-holds-keys",
            file: Some(path.display().to_string()),
            line: Some(e.line as u64),
            message: format!(
                "Agent OS's own env file holds {} ({}), a provider key: the shared-key anti-pattern — every project that reads it spends on one key, costs cannot be told apart and one leak exposes them all",
                e.key,
                mask(&e.value)
            ),
            fix: format!(
                "move it {whom} in that project's own env file (`agent-os keys migrate --from {} --project DIR` shows the edits), then delete the line here and revoke the shared key",
                shell_quote(&path.display().to_string())
            ),
        });
    }
    out.sort_by_key(|f| f.line);
    findings.extend(out);
}

// ---------------------------------------------------------------------------------------------
// The same secret in two places.

/// Whose env file holds a value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Project(String),
    /// Agent OS's own `HOME/.env`.
    AgentOs,
    /// A shared env file named by `--shared` or `keys.shared`, by its path.
    Shared(String),
}

struct Holder {
    owner: Owner,
    variable: String,
    file: String,
    line: u64,
    masked: String,
}

/// Whether a value is worth comparing across projects: long enough, and a credential.
fn comparable(name: &str, value: &str) -> bool {
    value.chars().count() >= MIN_SHARED_LEN && looks_like_credential(name, value) && !placeholder(value)
}

#[allow(clippy::expect_used, reason = "HMAC accepts a key of any length; 32 bytes never fails")]
fn fingerprint(key: &[u8; 32], value: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(value.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The install's fingerprint key from `HOME/audit.key` (64 hex digits, mode 0600), made when
/// missing; a key for this run alone when there is no home or it cannot be written.
fn fingerprint_key(home: Option<&Path>) -> [u8; 32] {
    let fresh = crate::secrets::random_bytes::<32>;
    let Some(home) = home else { return fresh() };
    let path = home.join("audit.key");
    let parse = |text: &str| -> Option<[u8; 32]> { hex::decode(text.trim()).ok()?.try_into().ok() };
    if let Ok(text) = std::fs::read_to_string(&path) {
        return parse(&text).unwrap_or_else(fresh);
    }
    if !home.exists() && std::fs::create_dir_all(home).is_ok() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700));
        }
    }
    let key = fresh();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(&path) {
        Ok(mut f) => {
            use std::io::Write as _;
            if f.write_all(hex::encode(key).as_bytes()).and_then(|_| f.sync_all()).is_err() {
                drop(f);
                let _ = std::fs::remove_file(&path);
            }
            key
        }
        // Another audit made it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(&path).ok().and_then(|t| parse(&t)).unwrap_or(key)
        }
        Err(_) => key,
    }
}

fn shared(
    fingerprints: &BTreeMap<[u8; 32], Vec<Holder>>,
    targets: &[AuditTarget],
    home: Option<&Path>,
    findings: &mut Vec<Finding>,
) {
    let mut out = Vec::new();
    for holders in fingerprints.values() {
        let owners: BTreeSet<&Owner> = holders.iter().map(|h| &h.owner).collect();
        if owners.len() < 2 {
            continue;
        }
        for h in holders {
            let Owner::Project(project) = &h.owner else { continue };
            let others: Vec<String> = holders
                .iter()
                .filter(|o| o.owner != h.owner)
                .map(|o| match &o.owner {
                    Owner::Project(p) => format!("{p}'s {}", o.variable),
                    Owner::AgentOs => format!("{} in Agent OS's own env file", o.variable),
                    Owner::Shared(file) => format!("{} in the shared env file {file}", o.variable),
                })
                .collect();
            let service = guess_service(&h.variable, "");
            let with_home = holders.iter().any(|o| o.owner == Owner::AgentOs);
            let shared_files: BTreeSet<&str> = holders
                .iter()
                .filter_map(|o| match &o.owner {
                    Owner::Shared(file) => Some(file.as_str()),
                    _ => None,
                })
                .collect();
            let mut remove_from: Vec<String> = shared_files.iter().map(|f| f.to_string()).collect();
            if let (true, Some(home)) = (with_home, home) {
                remove_from.insert(0, home.join(".env").display().to_string());
            }
            out.push(Finding {
                severity: Severity::Error,
                project: Some(project.clone()),
                check: "shared-secret",
                file: Some(h.file.clone()),
                line: Some(h.line),
                message: format!(
                    "{} ({}) holds the same value as {}: one key shared by several projects, so their costs cannot be told apart and revoking it breaks them all",
                    h.variable,
                    h.masked,
                    others.join(", ")
                ),
                fix: format!(
                    "create a new {service} key named {project}-{service} for {project} alone, put it in {project}'s {}, and revoke the shared key once every project has its own{}",
                    h.file,
                    if remove_from.is_empty() {
                        String::new()
                    } else {
                        format!(" (and remove it from {})", remove_from.join(" and "))
                    }
                ),
            });
        }
    }
    // Keep the project order of the targets.
    let order = |p: &Option<String>| targets.iter().position(|t| Some(&t.name) == p.as_ref()).unwrap_or(usize::MAX);
    out.sort_by_key(|f| (order(&f.project), f.line));
    findings.extend(out);
}

// ---------------------------------------------------------------------------------------------
// Reading another project's env file.

fn foreign_reads(t: &AuditTarget, home: Option<&Path>, findings: &mut Vec<Finding>) -> Vec<EnvRead> {
    let user_home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let own = t.root.join(env_file_rel(&t.manifest));
    // Agent OS's own env file is never the project's, even in a home kept inside the project.
    let agent_os_env = home.map(|h| h.join(".env")).map(|p| p.canonicalize().unwrap_or(p));
    let walk = walk(&t.root, is_script);
    if walk.truncated {
        findings.push(limit(t, "scripts and configs"));
    }
    let mut reads = Vec::new();
    for file in &walk.files {
        let Some(text) = read_text(file) else { continue };
        let dir = file.parent().unwrap_or(&t.root);
        let shell = is_shell_script(file, &text);
        for (n, line) in text.lines().enumerate() {
            if !line.contains(".env") || is_comment(line) {
                continue;
            }
            for r in env_paths(line) {
                let Some(resolved) = resolve(&r, dir, user_home.as_deref()) else { continue };
                if resolved.starts_with(&t.root) && agent_os_env.as_ref() != Some(&resolved) {
                    continue;
                }
                let new_path = shell
                    .then(|| script_relative(&own, file, line, r.start))
                    .flatten()
                    .unwrap_or_else(|| shell_word(&own.display().to_string(), line, r.start));
                let replacement = format!("{}{new_path}{}", &line[..r.start], &line[r.end..]);
                reads.push(EnvRead {
                    file: file.clone(),
                    line: n as u64 + 1,
                    text: line.to_string(),
                    path: line[r.start..r.end].to_string(),
                    column: r.start,
                    resolved,
                    replacement,
                });
            }
        }
    }
    reads
}

fn read_finding(
    t: &AuditTarget,
    read: &EnvRead,
    home: Option<&Path>,
    shared: &[PathBuf],
    targets: &[AuditTarget],
) -> Finding {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let agent_os = home.is_some_and(|h| canon(&h.join(".env")) == read.resolved);
    let owner = targets.iter().find(|o| o.name != t.name && read.resolved.starts_with(&o.root));
    let whose = if agent_os {
        " — Agent OS's own env file (HOME/.env): the shared-key anti-pattern. Agent OS's env file holds Agent OS's secrets only".to_string()
    } else if let Some(o) = owner {
        format!(" — project {}'s env file", o.name)
    } else if shared.iter().any(|s| canon(s) == read.resolved) {
        " — a shared env file (keys.shared)".to_string()
    } else {
        ", outside the project".to_string()
    };
    let own = env_file_rel(&t.manifest);
    Finding {
        severity: Severity::Error,
        project: Some(t.name.clone()),
        check: "foreign-env-read",
        file: Some(rel_to(&t.root, &read.file)),
        line: Some(read.line),
        message: if Path::new(&read.path) == read.resolved {
            format!("reads {}{whose}", read.path)
        } else {
            format!("reads {} ({}){whose}", read.path, read.resolved.display())
        },
        fix: format!(
            "read the project's own {own} instead: `{}`; put this project's own keys there (`agent-os keys migrate --from {} --project {}` makes the edit)",
            agent_os_core::redact::redact_shapes(read.replacement.trim()),
            shell_quote(&read.resolved.display().to_string()),
            shell_quote(&t.root.display().to_string())
        ),
    }
}

/// Where a path written in a line starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    /// Relative, or after `$(dirname "$0")`: the file's own directory (an approximation for
    /// scripts run from elsewhere).
    FileDir,
    /// After `~`, `$HOME` or `${HOME}`.
    Home,
    Absolute,
}

/// A path to an env file written in a line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PathRef {
    /// Byte range of the path as written, prefix included.
    start: usize,
    end: usize,
    base: Base,
    /// The rest of the path after its base.
    rest: String,
}

fn is_delim(b: u8) -> bool {
    b.is_ascii_whitespace() || b"'\"`(),;|<>=[]:&".contains(&b)
}

fn is_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with('#') || t.starts_with("//") || t.starts_with("<!--")
}

/// Paths to env files in a line: any word that is a path whose last part is `.env`, ends in
/// `.env` or starts with `.env.` (examples and templates aside), as `source`, `.`,
/// `export $(grep … | xargs)`, `load_dotenv(…)`, `dotenv.config({ path })`, `env_file:` and
/// `EnvironmentFile=` write them.
fn env_paths(line: &str) -> Vec<PathRef> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = line[from..].find(".env") {
        let i = from + found;
        from = i + 4;
        // The end of the word: `.env`, or `.env.local`; never `.environment`, `.envrc`.
        let mut end = i + 4;
        match b.get(end) {
            None => {}
            Some(b'.') => {
                end += 1;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b"_.-".contains(&b[end])) {
                    end += 1;
                }
            }
            Some(&c) if is_delim(c) || c == b'}' => {}
            Some(_) => continue,
        }
        if end < b.len() && !(is_delim(b[end]) || b[end] == b'}') {
            continue;
        }
        let mut start = i;
        while start > 0 && !is_delim(b[start - 1]) {
            start -= 1;
        }
        let word = &line[start..end];
        let last = word.rsplit('/').next().unwrap_or(word);
        let suffix = last.strip_prefix(".env.").unwrap_or("");
        let env_like = last == ".env" || last.ends_with(".env") || !suffix.is_empty();
        if !env_like
            || ["example", "sample", "template", "dist", "tmpl", "defaults"].iter().any(|s| suffix.starts_with(s))
        {
            continue;
        }
        let Some(r) = path_ref(line, start, end) else { continue };
        if !(r.rest.contains('/') || r.base != Base::FileDir || r.rest.starts_with(".env")) {
            // `process.env`, `import.meta.env`: not paths.
            continue;
        }
        out.push(r);
    }
    out
}

/// The path written at `start..end`, with its base; `None` when it depends on something this
/// reader cannot know (another variable, a command other than `dirname`).
fn path_ref(line: &str, start: usize, end: usize) -> Option<PathRef> {
    let b = line.as_bytes();
    let word = &line[start..end];
    // `$(dirname "$0")/../x/.env` or `"$(dirname "$0")"/../x/.env`.
    if start > 0 && (b[start - 1] == b')' || (b[start - 1] == b'"' && start > 1 && b[start - 2] == b')')) {
        let close = if b[start - 1] == b')' { start - 1 } else { start - 2 };
        let open = matching_open(b, close)?;
        if !line[open..close].contains("dirname") || !word.starts_with('/') {
            return None;
        }
        // Replace from the quote that opens a `"$(…)"` form, so the new path is not left inside it.
        let from = if close + 1 < start && open > 0 && b[open - 1] == b'"' { open - 1 } else { open };
        return plain(word.trim_start_matches('/')).map(|rest| PathRef { start: from, end, base: Base::FileDir, rest });
    }
    let (base, rest) = if let Some(r) = word.strip_prefix("~/") {
        (Base::Home, r)
    } else if let Some(r) = word.strip_prefix("$HOME/").or_else(|| word.strip_prefix("${HOME}/")) {
        (Base::Home, r)
    } else if let Some(r) = word.strip_prefix("-/") {
        // systemd's `EnvironmentFile=-/path`: the file is optional.
        return plain(r).map(|rest| PathRef { start: start + 1, end, base: Base::Absolute, rest });
    } else if let Some(r) = word.strip_prefix('/') {
        (Base::Absolute, r)
    } else {
        (Base::FileDir, word)
    };
    plain(rest).map(|rest| PathRef { start, end, base, rest })
}

/// `rest` when it holds no variable, glob or template.
fn plain(rest: &str) -> Option<String> {
    (!rest.is_empty() && !rest.contains(['$', '{', '}', '*', '?', '~', '\\'])).then(|| rest.to_string())
}

/// The index of the `$(` that `b[close] == b')'` closes.
fn matching_open(b: &[u8], close: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = close;
    loop {
        match b[i] {
            b')' => depth += 1,
            b'(' => {
                depth -= 1;
                if depth == 0 {
                    return (i > 0 && b[i - 1] == b'$').then(|| i - 1);
                }
            }
            _ => {}
        }
        if i == 0 {
            return None;
        }
        i -= 1;
    }
}

/// Where a path leads: lexically normalized, then through symlinks when it exists.
fn resolve(r: &PathRef, file_dir: &Path, user_home: Option<&Path>) -> Option<PathBuf> {
    let base = match r.base {
        Base::FileDir => file_dir.to_path_buf(),
        Base::Home => user_home?.to_path_buf(),
        Base::Absolute => PathBuf::from("/"),
    };
    let joined = normalize(&base.join(&r.rest));
    Some(joined.canonicalize().unwrap_or(joined))
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Every path in a command this audit prints goes through the one shell quoting, so the
/// command can be pasted whatever the path holds.
pub use agent_os_core::shell::quote as shell_quote;

/// Whether `file` is a shell script: by its extension, else by its `#!` line.
fn is_shell_script(file: &Path, text: &str) -> bool {
    match file.extension().and_then(OsStr::to_str) {
        Some("sh" | "bash" | "zsh" | "envrc") => true,
        Some(_) => false,
        None => text.lines().next().is_some_and(|l| {
            l.starts_with("#!")
                && ["sh", "bash", "zsh", "dash"]
                    .iter()
                    .any(|s| l.ends_with(&format!("/{s}")) || l.ends_with(&format!(" {s}")))
        }),
    }
}

/// `to` relative to the directory `from` (both absolute, normalized): `../../.env`.
pub fn relative_path(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to_parts: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to_parts).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to_parts[common..] {
        out.push(c.as_os_str());
    }
    out
}

/// The project's own env file as a line of a shell script at `file` should name it: relative
/// to the script (`"$(dirname "$0")/../../.env"`), so the project still works when its
/// directory moves. `None` where that cannot be written (inside single quotes, or a path with
/// characters double quotes do not keep).
fn script_relative(own: &Path, file: &Path, line: &str, at: usize) -> Option<String> {
    let rel = relative_path(file.parent()?, own);
    let rel = rel.to_str()?;
    if rel.contains(['"', '$', '`', '\\']) {
        return None;
    }
    match at.checked_sub(1).map(|i| line.as_bytes()[i]) {
        Some(b'\'') => None,
        Some(b'"') => Some(format!("$(dirname \"$0\")/{rel}")),
        _ => Some(format!("\"$(dirname \"$0\")/{rel}\"")),
    }
}

/// `path` ready to stand where a word of `line` started at `at`: quoted when it needs quotes
/// and is not inside quotes already.
fn shell_word(path: &str, line: &str, at: usize) -> String {
    let quoted = at > 0 && matches!(line.as_bytes()[at - 1], b'"' | b'\'');
    if quoted || path.bytes().all(|c| c.is_ascii_alphanumeric() || b"/._-+@%,".contains(&c)) {
        path.to_string()
    } else {
        format!("\"{path}\"")
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets in files git tracks.

fn secrets_in_git(t: &AuditTarget, findings: &mut Vec<Finding>) {
    if !in_work_tree(&t.root) {
        return;
    }
    let Some(out) = git(&t.root, &["ls-files", "-z"], 64 * 1024 * 1024) else { return };
    if out.code != Some(0) {
        return;
    }
    let env_rel = env_file_rel(&t.manifest);
    let mut files: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .filter(|p| p != env_rel && !is_lock_file(p))
        .collect();
    files.dedup();
    if files.len() > MAX_FILES {
        findings.push(limit(t, "files git tracks"));
        files.truncate(MAX_FILES);
    }
    for rel in files {
        let path = t.root.join(&rel);
        let Some(text) = read_text(&path) else { continue };
        let mut count = 0;
        for (n, line) in text.lines().enumerate() {
            for (what, masked) in secrets_in_line(line) {
                count += 1;
                if count > MAX_PER_FILE {
                    break;
                }
                findings.push(Finding {
                    severity: Severity::Error,
                    project: Some(t.name.clone()),
                    check: "secret-in-git",
                    file: Some(rel.clone()),
                    line: Some(n as u64 + 1),
                    message: format!("{what} ({masked}) in a file git tracks"),
                    fix: format!(
                        "revoke it at the provider and create a new one, move it to the project's {env_rel} (read it from the environment), remove it from {rel}; the old value stays in the git history"
                    ),
                });
            }
        }
    }
}

fn is_lock_file(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name.ends_with(".lock") || LOCK_FILES.contains(&name) || name.ends_with(".min.js") || name.ends_with(".map")
}

/// Secrets in one line: what each is, with its masked form.
fn secrets_in_line(line: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if line.contains("-----BEGIN") && line.contains("PRIVATE KEY") {
        out.push(("a private key", "-----BEGIN … PRIVATE KEY-----".to_string()));
    }
    let mut taken: Vec<(usize, usize)> = Vec::new();
    for (s, e) in find_shapes(line) {
        // A URL's password (`:…@`) is reported below as such, with its own placeholder rules.
        let url_password_span = line[..s].ends_with(':') && line[e..].starts_with('@');
        if !url_password_span && plausible_secret(&line[s..e]) {
            out.push(("a secret-shaped value", mask(&line[s..e])));
            taken.push((s, e));
        }
    }
    for (s, e) in high_entropy_tokens(line) {
        if taken.iter().any(|&(ts, te)| s < te && ts < e) {
            continue;
        }
        out.push(("a high-entropy token", mask(&line[s..e])));
    }
    if url_password(line) {
        out.push(("a URL with a password", "…".to_string()));
    }
    out
}

fn token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+/=_-".contains(&b)
}

/// Long random-looking tokens that are assigned or quoted: `KEY = "…"`, `key: …`.
fn high_entropy_tokens(line: &str) -> Vec<(usize, usize)> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !token_char(b[i]) || (i > 0 && token_char(b[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && token_char(b[i]) {
            i += 1;
        }
        let token = &line[start..i];
        let mut j = start;
        while j > 0 && b[j - 1] == b' ' {
            j -= 1;
        }
        let context = j > 0 && matches!(b[j - 1], b'"' | b'\'' | b'`' | b'=' | b':');
        if context && high_entropy(token) && !placeholder(token) {
            out.push((start, i));
        }
    }
    out
}

/// A token of 32 to 512 characters from the base64/URL-safe alphabet with letters and digits,
/// at least 4 bits of entropy per character, and not a hex digest (git object ids, SHA-256).
fn high_entropy(token: &str) -> bool {
    let n = token.len();
    (32..=512).contains(&n)
        && token.bytes().all(token_char)
        && !token.starts_with('/')
        && !token.bytes().all(|c| c.is_ascii_hexdigit())
        && token.bytes().any(|c| c.is_ascii_digit())
        && token.bytes().any(|c| c.is_ascii_alphabetic())
        && !["sha1-", "sha256-", "sha384-", "sha512-"].iter().any(|p| token.starts_with(p))
        && entropy(token) >= 4.0
}

/// A known-shape match that is a real-looking value, not documentation (`Bearer YOUR_TOKEN`).
fn plausible_secret(s: &str) -> bool {
    s.bytes().any(|c| c.is_ascii_digit()) && !placeholder(s)
}

/// Placeholders people write where a key goes.
fn placeholder(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    ["...", "replace", "change", "your", "example", "placeholder", "xxxx", "<", "redacted", "dummy", "todo"]
        .iter()
        .any(|p| lower.contains(p))
}

/// A URL with a password in it: `scheme://user:password@host`.
fn url_password(text: &str) -> bool {
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let after = &rest[i + 3..];
        let authority =
            after.split(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'').next().unwrap_or("");
        if let Some((userinfo, _host)) = authority.rsplit_once('@')
            && let Some((_user, password)) = userinfo.split_once(':')
            && !password.is_empty()
            && !password.starts_with('$')
            && !placeholder(password)
            && !password.eq_ignore_ascii_case("password")
        {
            return true;
        }
        rest = after;
    }
    false
}

/// A variable that holds a credential: by its name (with a value that is not a number or a
/// switch), or by its value's shape.
fn looks_like_credential(name: &str, value: &str) -> bool {
    let v = value.trim();
    if v.is_empty() {
        return false;
    }
    let switch = v.parse::<f64>().is_ok() || ["true", "false", "yes", "no", "on", "off"].contains(&v);
    (credential_name(name) && !switch) || secret_shaped(v)
}

// ---------------------------------------------------------------------------------------------
// Files and git.

struct Walk {
    files: Vec<PathBuf>,
    /// The file limit cut the walk short.
    truncated: bool,
}

fn is_script(name: &str) -> bool {
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    name == "Makefile"
        || name == "makefile"
        || name == "GNUmakefile"
        || name == "Dockerfile"
        || name.starts_with("Dockerfile.")
        || name.starts_with("crontab")
        || name == ".envrc"
        || SCRIPT_EXTENSIONS.contains(&ext)
}

/// The files under `root` whose names `want` accepts, in name order, skipping [`SKIP_DIRS`];
/// at most [`MAX_FILES`]. Symbolic links to directories are not followed (they can loop).
fn walk(root: &Path, want: fn(&str) -> bool) -> Walk {
    let mut files = Vec::new();
    let mut entries_seen = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        let mut entries: Vec<(PathBuf, std::fs::FileType)> =
            rd.filter_map(Result::ok).filter_map(|e| Some((e.path(), e.file_type().ok()?))).collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut subdirs = Vec::new();
        for (path, kind) in entries {
            entries_seen += 1;
            if entries_seen > MAX_ENTRIES || files.len() >= MAX_FILES {
                return Walk { files, truncated: true };
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if kind.is_dir() {
                if !SKIP_DIRS.contains(&name.as_str()) {
                    subdirs.push(path);
                }
            } else if (kind.is_file() || (kind.is_symlink() && path.is_file())) && want(&name) {
                files.push(path);
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Walk { files, truncated: false }
}

fn limit(t: &AuditTarget, what: &str) -> Finding {
    Finding {
        severity: Severity::Warning,
        project: Some(t.name.clone()),
        check: "scan-limit",
        file: None,
        line: None,
        message: format!("stopped after {MAX_FILES} {what}; the rest were not audited"),
        fix: "move data and dependencies out of the project directory, or audit its parts one by one".into(),
    }
}

/// A text file's contents: `None` when it is missing, over [`MAX_BYTES`] or binary.
fn read_text(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_BYTES {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    if bytes.iter().take(8192).any(|b| *b == 0) {
        return None;
    }
    Some(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

fn rel_to(root: &Path, file: &Path) -> String {
    file.strip_prefix(root).map(|p| p.display().to_string()).unwrap_or_else(|_| file.display().to_string())
}

/// Runs git in `dir`. `max_stdout` 0 keeps no output.
fn git(dir: &Path, args: &[&str], max_stdout: usize) -> Option<runner::ToolOutput> {
    // git finds the user's global ignore file through these; the scrubbed environment drops them.
    let extra: Vec<(String, String)> = ["XDG_CONFIG_HOME", "GIT_CONFIG_GLOBAL"]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    runner::run_tool("git", &args, dir, &extra, max_stdout, GIT_TIMEOUT).ok()
}

fn in_work_tree(dir: &Path) -> bool {
    git(dir, &["rev-parse", "--is-inside-work-tree"], 64)
        .is_some_and(|o| o.code == Some(0) && String::from_utf8_lossy(&o.stdout).trim() == "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_paths_are_quoted_for_a_posix_shell() {
        assert_eq!(shell_quote("/home/me/cortana/.env"), "/home/me/cortana/.env");
        assert_eq!(shell_quote("/Users/me/Cortana personal AI"), "'/Users/me/Cortana personal AI'");
        assert_eq!(shell_quote("/a/it's $HOME"), "'/a/it'\\''s $HOME'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn paths_relative_to_a_script() {
        let rel = |from: &str, to: &str| relative_path(Path::new(from), Path::new(to)).display().to_string();
        assert_eq!(rel("/p/scripts/automation", "/p/.env"), "../../.env");
        assert_eq!(rel("/p", "/p/.env"), ".env");
        assert_eq!(rel("/p/scripts", "/p/config/.env"), "../config/.env");
    }

    /// The paths found in `line`, as written, with where they lead from `/p/scripts` (HOME `/u`).
    fn found(line: &str) -> Vec<(String, String)> {
        env_paths(line)
            .into_iter()
            .map(|r| {
                let to = resolve(&r, Path::new("/p/scripts"), Some(Path::new("/u"))).unwrap();
                (line[r.start..r.end].to_string(), to.display().to_string())
            })
            .collect()
    }

    #[test]
    fn finds_env_paths_the_ways_scripts_write_them() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                "export $(grep -v '^#' /Users/me/agent_os/.env | xargs)",
                &[("/Users/me/agent_os/.env", "/Users/me/agent_os/.env")],
            ),
            ("source ~/agent_os/.env", &[("~/agent_os/.env", "/u/agent_os/.env")]),
            ("set -a; . $HOME/shared/.env; set +a", &[("$HOME/shared/.env", "/u/shared/.env")]),
            (". \"${HOME}/shared/.env\"", &[("${HOME}/shared/.env", "/u/shared/.env")]),
            ("export $(cat ../../other/.env | xargs)", &[("../../other/.env", "/other/.env")]),
            ("load_dotenv(\"/abs/other/.env\")", &[("/abs/other/.env", "/abs/other/.env")]),
            ("load_dotenv(dotenv_path='/abs/other/.env.local')", &[("/abs/other/.env.local", "/abs/other/.env.local")]),
            ("require('dotenv').config({ path: '../x/.env' })", &[("../x/.env", "/p/x/.env")]),
            ("    env_file: ../shared/.env", &[("../shared/.env", "/p/shared/.env")]),
            ("EnvironmentFile=-/etc/agent/prod.env", &[("/etc/agent/prod.env", "/etc/agent/prod.env")]),
            (
                "source \"$(dirname \"$0\")/../../shared/.env\"",
                &[("$(dirname \"$0\")/../../shared/.env", "/shared/.env")],
            ),
            ("source \"$(dirname \"$0\")\"/../.env", &[("\"$(dirname \"$0\")\"/../.env", "/p/.env")]),
            ("    . ./.env", &[("./.env", "/p/scripts/.env")]),
        ];
        for (line, want) in cases {
            let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
            assert_eq!(found(line), want, "{line}");
        }
    }

    #[test]
    fn leaves_what_is_not_a_readable_env_path_alone() {
        for line in [
            "const key = process.env.OPENAI_API_KEY;",
            "if (import.meta.env.DEV) {}",
            "cp .env.example .env.sample",
            "source $ROOT/.env",
            ". \"$root/.env\"",
            "path = f\"{ROOT}/.env\"",
            "source $(git rev-parse --show-toplevel)/.env",
            "see .environment and .envrc",
        ] {
            assert_eq!(found(line), Vec::<(String, String)>::new(), "{line}");
        }
    }

    #[test]
    fn the_replacement_reads_the_project_s_own_file() {
        let line = "export $(grep -v '^#' /Users/me/agent_os/.env | xargs)";
        let r = &env_paths(line)[0];
        let new = shell_word("/Users/me/cortana/.env", line, r.start);
        assert_eq!(
            format!("{}{new}{}", &line[..r.start], &line[r.end..]),
            "export $(grep -v '^#' /Users/me/cortana/.env | xargs)"
        );
        assert_eq!(shell_word("/My Projects/x/.env", "source ~/a/.env", 7), "\"/My Projects/x/.env\"");
        assert_eq!(shell_word("/My Projects/x/.env", "source \"~/a/.env\"", 8), "/My Projects/x/.env");
    }

    #[test]
    fn masks_show_at_most_seven_characters_of_long_values() {
        assert_eq!(mask("sk-proj-abcdefghijklmnop9xQ"), "sk-p…9xQ");
        assert_eq!(mask("short-value"), "…");
        assert_eq!(mask("exactly16chars!!"), "exac…s!!");
        assert_eq!(mask("fifteen-chars!!"), "…");
        assert_eq!(mask(""), "…");
        assert_eq!(mask("ünïcödé-ünïcödé-ü"), "ünïc…é-ü", "characters, not bytes");
    }

    #[test]
    fn entropy_tells_random_tokens_from_words() {
        assert_eq!(entropy(""), 0.0);
        assert_eq!(entropy("aaaa"), 0.0);
        assert!((entropy("abcd") - 2.0).abs() < 1e-9);
        let random = "Zx9Qp2Lk7Vb4Nm8Rt3Wy6Hc1Jd5Fg0Ks";
        assert!(entropy(random) >= 4.0, "{}", entropy(random));
        assert!(high_entropy(random));
        assert!(!high_entropy("this_is_a_long_identifier_name_for_tests"), "words");
        assert!(!high_entropy("3f786850e387550fdab836ed7e6dc881de23001b"), "a git object id");
        assert!(!high_entropy("sha512-Zx9Qp2Lk7Vb4Nm8Rt3Wy6Hc1Jd5Fg0Ks"), "an integrity hash");
    }

    #[test]
    fn finds_secrets_in_lines_and_shows_them_masked() {
        let found = |line: &str| secrets_in_line(line).into_iter().map(|(_, m)| m).collect::<Vec<_>>();
        assert_eq!(found("OPENAI_API_KEY = \"sk-proj-Ab3dEfGh1jKlMnOpQrStUv9xQ\""), ["sk-p…9xQ"]);
        assert_eq!(found("token: Zx9Qp2Lk7Vb4Nm8Rt3Wy6Hc1Jd5Fg0Ks"), ["Zx9Q…0Ks"]);
        assert_eq!(found("DATABASE_URL=postgres://app:s3cret-pw@db/app"), ["…"]);
        for quiet in [
            "OPENAI_API_KEY=sk-...replace-me",
            "curl -H 'Authorization: Bearer YOUR_TOKEN_HERE'",
            "commit 3f786850e387550fdab836ed7e6dc881de23001b",
            "see Zx9Qp2Lk7Vb4Nm8Rt3Wy6Hc1Jd5Fg0Ks in the log",
            "DATABASE_URL=postgres://app:${DB_PASSWORD}@db/app",
        ] {
            assert!(found(quiet).is_empty(), "{quiet}");
        }
    }

    #[test]
    fn credentials_are_told_by_name_or_by_shape() {
        assert!(credential_name("OPENAI_API_KEY"));
        assert!(credential_name("DISCORD_WEBHOOK_URL"));
        assert!(credential_name("DB_PASSWORD"));
        assert!(credential_name("GITHUB_TOKEN"));
        assert!(!credential_name("AUTHOR_NAME"));
        assert!(!credential_name("TRADING_SYMBOLS"));
        assert!(looks_like_credential("X", "sk-proj-Ab3dEfGh1jKlMnOpQrStUv9xQ"));
        assert!(!looks_like_credential("OPENAI_MAX_TOKENS", "1000"));
        assert!(!looks_like_credential("API_KEY", ""));
        assert!(!comparable("OPENAI_API_KEY", "sk-...replace-me"), "placeholders are not compared");
    }

    #[test]
    fn services_are_guessed_from_names_then_values() {
        for (name, value, want) in [
            ("OPENAI_API_KEY", "", "openai"),
            ("ANTHROPIC_API_KEY", "", "anthropic"),
            ("DISCORD_WEBHOOK_URL", "", "discord"),
            ("GH_TOKEN", "", "github"),
            ("LLM_KEY", "sk-ant-api03-xyz", "anthropic"),
            ("API_KEY", "sk-abc", "openai"),
            ("WEATHERAPI_KEY", "", "weatherapi"),
            ("API_KEY", "", "service"),
        ] {
            assert_eq!(guess_service(name, value), want, "{name}");
        }
    }

    #[test]
    fn fingerprints_depend_on_the_install_key() {
        let a = fingerprint(&[1; 32], "sk-proj-value");
        assert_eq!(a, fingerprint(&[1; 32], "sk-proj-value"));
        assert_ne!(a, fingerprint(&[2; 32], "sk-proj-value"));
        assert_ne!(a, fingerprint(&[1; 32], "sk-proj-other"));
    }

    #[test]
    fn the_fingerprint_key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let k1 = fingerprint_key(Some(&home));
        let k2 = fingerprint_key(Some(&home));
        assert_eq!(k1, k2);
        let text = std::fs::read_to_string(home.join("audit.key")).unwrap();
        assert_eq!(text.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.join("audit.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_ne!(fingerprint_key(None), fingerprint_key(None));
    }
}
