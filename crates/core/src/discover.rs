//! Schedule discovery: reading the schedules users keep outside Agent OS (crontabs, launchd
//! jobs, systemd timers, Railway cron, GitHub Actions) and translating each into a cron
//! expression and a time zone, exactly or not at all.
//!
//! Every source has its own reader here; [`discover_file`] picks one by the file's name
//! ([`kind_of`]). A schedule that cron cannot express exactly (a launchd interval counted from
//! load time, a systemd timer relative to boot, a job at second 30) becomes
//! [`Outcome::Untranslatable`] with the reason, never an approximation. Every cron expression
//! produced passes [`Cron::parse`] and is written as five fields (aliases are expanded).
//!
//! The zone [`LOCAL`] stands for "the machine's own zone", which is what cron, launchd and
//! systemd use unless told otherwise; this module cannot know it (no I/O), so the caller (the
//! CLI) replaces it with the machine's IANA zone name.

use serde::Serialize;

use crate::cron::{self, Cron};
use crate::manifest::ManagedBy;

/// The zone of a schedule that follows the machine's clock; the caller replaces it.
pub const LOCAL: &str = "local";

/// The source name for the text of `crontab -l`.
pub const CRONTAB_L: &str = "crontab -l";

/// One schedule found in a file, translated or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The file it was found in (or [`CRONTAB_L`]).
    pub source: String,
    /// 1-based line of the entry, key or value that defines the schedule.
    pub line: u64,
    /// `cron`, `launchd`, `systemd`, `railway` or `github`.
    pub managed_by: ManagedBy,
    /// What it runs, as the source states it; empty when the source does not say.
    pub command: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Whether a schedule could be expressed as cron exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Five cron fields with Debian semantics, in an IANA zone or [`LOCAL`].
    Schedule {
        cron: String,
        timezone: String,
    },
    Untranslatable {
        reason: String,
    },
}

/// The kinds of file discovery reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `m h dom mon dow command`: `crontab*`, `*.cron`, files in a `crontabs` spool directory
    /// (named after their user), the text of `crontab -l`.
    UserCrontab,
    /// `m h dom mon dow user command`: `/etc/crontab` and files in a `cron.d` directory.
    SystemCrontab,
    Launchd,
    Systemd,
    RailwayJson,
    RailwayToml,
    GitHub,
}

/// Extensions that make a `crontab*` file source code or documentation, not a crontab.
const NOT_CRONTAB: [&str; 26] = [
    "rs", "py", "js", "ts", "go", "rb", "java", "c", "h", "cpp", "md", "rst", "html", "json", "yml", "yaml", "toml",
    "sh", "bash", "lock", "log", "php", "pl", "swift", "kt", "adoc",
];

/// Which reader a file needs, from its path alone; `None` for files discovery does not read.
pub fn kind_of(path: &str) -> Option<Kind> {
    if path == CRONTAB_L {
        return Some(Kind::UserCrontab);
    }
    let path = path.trim_end_matches('/');
    let (parent, name) = match path.rsplit_once('/') {
        Some((p, n)) => (p, n),
        None => ("", path),
    };
    let parent_name = parent.rsplit('/').next().unwrap_or("");
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    if ext == "plist" {
        Some(Kind::Launchd)
    } else if ext == "timer" {
        Some(Kind::Systemd)
    } else if name == "railway.json" {
        Some(Kind::RailwayJson)
    } else if name == "railway.toml" {
        Some(Kind::RailwayToml)
    } else if (ext == "yml" || ext == "yaml")
        && (parent == ".github/workflows" || parent.ends_with("/.github/workflows"))
    {
        Some(Kind::GitHub)
    } else if parent_name == "cron.d" || (name == "crontab" && parent_name == "etc") {
        Some(Kind::SystemCrontab)
    } else if ext == "cron"
        || parent_name == "crontabs"
        || (name.starts_with("crontab") && !NOT_CRONTAB.contains(&ext.as_str()))
    {
        Some(Kind::UserCrontab)
    } else {
        None
    }
}

/// The schedules in one file, read with the reader its name calls for ([`kind_of`]); nothing
/// for a file discovery does not read.
pub fn discover_file(path: &str, text: &str) -> Vec<Finding> {
    match kind_of(path) {
        Some(Kind::UserCrontab) => discover_crontab(path, text, false),
        Some(Kind::SystemCrontab) => discover_crontab(path, text, true),
        Some(Kind::Launchd) => discover_launchd(path, text),
        Some(Kind::Systemd) => discover_systemd(path, text),
        Some(Kind::RailwayJson) => discover_railway_json(path, text),
        Some(Kind::RailwayToml) => discover_railway_toml(path, text),
        Some(Kind::GitHub) => discover_github(path, text),
        None => Vec::new(),
    }
}

fn finding(source: &str, line: u64, managed_by: ManagedBy, command: &str, outcome: Outcome) -> Finding {
    Finding { source: source.to_string(), line, managed_by, command: command.to_string(), outcome }
}

fn refused(reason: impl Into<String>) -> Outcome {
    Outcome::Untranslatable { reason: reason.into() }
}

/// Checks an expression with the scheduler's own parser and writes it as five single-spaced
/// fields, aliases expanded. `standard` refuses `L` and `#`, which Agent OS's parser accepts but
/// the cron of the source would not read the same way.
fn checked_cron(expr: &str, zone: &str, standard: Option<&str>) -> Outcome {
    if let Err(e) = Cron::parse(expr) {
        return refused(format!("cron expression {:?}: {e}", expr.trim()));
    }
    let expanded = match expr.trim().to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
        "@monthly" => "0 0 1 * *".to_string(),
        "@weekly" => "0 0 * * 0".to_string(),
        "@daily" | "@midnight" => "0 0 * * *".to_string(),
        "@hourly" => "0 * * * *".to_string(),
        _ => expr.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    if let Some(manager) = standard {
        let fields: Vec<&str> = expanded.split(' ').collect();
        let extension = fields.get(2).is_some_and(|dom| dom.split(',').any(|t| t.eq_ignore_ascii_case("L")))
            || fields
                .get(4)
                .is_some_and(|dow| dow.split(',').any(|t| t.contains('#') || t.to_ascii_uppercase().ends_with('L')));
        if extension {
            return refused(format!(
                "cron expression {expanded:?} uses L or #, which {manager} does not read as Agent OS does"
            ));
        }
    }
    if zone != LOCAL
        && let Err(e) = cron::zone(zone)
    {
        return refused(e);
    }
    Outcome::Schedule { cron: expanded, timezone: zone.to_string() }
}

/// Lines with their 1-based numbers, a trailing `\r` removed.
fn numbered(text: &str) -> impl Iterator<Item = (u64, &str)> {
    text.split('\n').enumerate().map(|(i, l)| (i as u64 + 1, l.strip_suffix('\r').unwrap_or(l)))
}

// ---------------------------------------------------------------------------------------------
// crontab

/// A crontab: the user format (`m h dom mon dow command`, also the text of `crontab -l`) or,
/// with `system`, the format of `/etc/crontab` and `/etc/cron.d` with a user field before the
/// command.
///
/// `CRON_TZ=Zone` sets the zone of the entries below it (cronie's and Solaris's rule; an empty
/// value returns to the machine's zone). Debian's own cron ignores `CRON_TZ`, so a crontab that
/// sets it is taken to be meant for a cron that honours it. `TZ=Zone` without `CRON_TZ` is
/// ambiguous, as crons differ: cronie and Debian's cron still fire on the machine's clock and
/// only pass `TZ` to the command, systemd-cron fires in that zone. Such entries are reported as
/// untranslatable rather than guessed.
pub fn discover_crontab(source: &str, text: &str, system: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut cron_tz: Option<String> = None;
    let mut tz: Option<String> = None;
    for (n, raw) in numbered(text) {
        let line = raw.trim_start_matches([' ', '\t']);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, value)) = env_assignment(line) {
            match name {
                "CRON_TZ" => cron_tz = Some(value).filter(|v| !v.is_empty()),
                "TZ" => tz = Some(value).filter(|v| !v.is_empty()),
                _ => {}
            }
            continue;
        }
        let (fields, rest) = if line.starts_with('@') { split_fields(line, 1) } else { split_fields(line, 5) };
        // The user field of a system crontab says who runs it, not what runs.
        let rest = if system { split_fields(rest, 1).1 } else { rest };
        let command = crontab_command(rest);
        let expected = if line.starts_with('@') { "an @ alias" } else { "5 time fields" };
        let outcome = if command.is_empty() {
            let what = if system {
                format!("not a cron entry: expected {expected}, a user and a command")
            } else {
                format!("not a cron entry: expected {expected} and a command")
            };
            refused(what)
        } else if fields[0].eq_ignore_ascii_case("@reboot") {
            refused("runs at boot, not on a schedule")
        } else if let (None, Some(t)) = (&cron_tz, &tz) {
            refused(format!(
                "TZ={t} is set above it: cronie and Debian's cron fire it on the machine's clock and only pass TZ to the command, while systemd-cron fires it in {t}; write CRON_TZ={t} (or remove TZ) to say which"
            ))
        } else {
            let zone = cron_tz.as_deref().unwrap_or(LOCAL);
            checked_cron(&fields.join(" "), zone, Some("cron"))
        };
        out.push(finding(source, n, ManagedBy::Cron, &command, outcome));
    }
    out
}

/// `NAME=VALUE` with optional blanks around `=` and optional matching quotes around the value,
/// recognised as Debian's cron does: the first word, then `=`. Anything else is an entry.
fn env_assignment(line: &str) -> Option<(&str, String)> {
    let end = line.find(['=', ' ', '\t'])?;
    let name = &line[..end];
    let after = line[end..].trim_start_matches([' ', '\t']);
    let value = after.strip_prefix('=')?.trim();
    if name.is_empty() {
        return None;
    }
    let unquoted = [('"', '"'), ('\'', '\'')]
        .iter()
        .find_map(|(a, b)| value.strip_prefix(*a).and_then(|v| v.strip_suffix(*b)).filter(|_| value.len() >= 2))
        .unwrap_or(value);
    Some((name, unquoted.to_string()))
}

/// The first `n` blank-separated words and the rest of the line after the blanks that follow
/// them; fewer words leave the rest empty.
fn split_fields(line: &str, n: usize) -> (Vec<&str>, &str) {
    let mut fields = Vec::with_capacity(n);
    let mut rest = line.trim_start_matches([' ', '\t']);
    while fields.len() < n && !rest.is_empty() {
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        fields.push(&rest[..end]);
        rest = rest[end..].trim_start_matches([' ', '\t']);
    }
    while fields.len() < n {
        fields.push("");
    }
    (fields, rest)
}

/// The command cron runs: the text before the first unescaped `%` (cron sends what follows to
/// the command's stdin), with `\%` read as `%`.
fn crontab_command(rest: &str) -> String {
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'%') => {
                out.push('%');
                chars.next();
            }
            '%' => break,
            c => out.push(c),
        }
    }
    out.trim_end().to_string()
}

// ---------------------------------------------------------------------------------------------
// launchd

/// A launchd job (XML property list, read by the `plist` crate). `StartCalendarInterval` (a
/// dict, or an array of dicts of `Minute`, `Hour`, `Day`, `Weekday`, `Month`; a missing key
/// means every value) becomes cron, one finding per dict unless the dicts differ in one key
/// only, when they merge into one list. launchd documents these semantics as crontab's, so a
/// dict with both `Day` and `Weekday` fires on either, as cron does. `StartInterval` counts from
/// when the job was loaded, so it is never a wall-clock schedule. The zone is the machine's
/// ([`LOCAL`]). A finding's line is that of its key.
///
/// A property list that cannot be read, or that nests deeper than [`PLIST_MAX_DEPTH`], is
/// reported only when it mentions a schedule key; other property lists (app settings,
/// `Info.plist`) are not launchd jobs.
pub fn discover_launchd(source: &str, text: &str) -> Vec<Finding> {
    let mentions_schedule = text.contains("StartCalendarInterval") || text.contains("StartInterval");
    if text.starts_with("bplist") {
        if !mentions_schedule {
            return Vec::new();
        }
        let reason = "a binary property list; convert it with `plutil -convert xml1 FILE` to read its schedule";
        return vec![finding(source, 1, ManagedBy::Launchd, "", refused(reason))];
    }
    let root = plist_depth(text)
        .and_then(|()| plist::Value::from_reader_xml(text.as_bytes()).map_err(|e| plist_error(text, &e)));
    let root = match root {
        Ok(root) => root,
        Err((line, message)) if mentions_schedule => {
            let reason = format!("cannot read this property list: {message}");
            return vec![finding(source, line, ManagedBy::Launchd, "", refused(reason))];
        }
        Err(_) => return Vec::new(),
    };
    let Some(job) = root.as_dictionary() else {
        return Vec::new();
    };
    let command = launchd_command(job.get("Program"), job.get("ProgramArguments"))
        .or_else(|| job.get("Label").and_then(plist::Value::as_string).map(str::to_string))
        .unwrap_or_default();
    let mut out = Vec::new();
    if let Some(value) = job.get("StartCalendarInterval") {
        let at = key_line(text, "StartCalendarInterval");
        let dicts: Vec<&plist::Value> = match value {
            plist::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        let specs: Vec<Result<Calendar, String>> = dicts.into_iter().map(calendar).collect();
        if specs.is_empty() {
            out.push(finding(
                source,
                at,
                ManagedBy::Launchd,
                &command,
                refused("StartCalendarInterval is an empty array"),
            ));
        }
        let translated: Option<Vec<Calendar>> = specs.iter().map(|s| s.as_ref().ok().cloned()).collect();
        match translated.and_then(|all| merge(&all)) {
            Some(merged) => {
                out.push(finding(source, at, ManagedBy::Launchd, &command, checked_cron(&merged.cron(), LOCAL, None)));
            }
            None => {
                for spec in specs {
                    let outcome = match spec {
                        Ok(c) => checked_cron(&c.cron(), LOCAL, None),
                        Err(reason) => refused(reason),
                    };
                    out.push(finding(source, at, ManagedBy::Launchd, &command, outcome));
                }
            }
        }
    }
    if let Some(value) = job.get("StartInterval") {
        let reason = match value.as_signed_integer() {
            Some(s) if s > 0 => format!(
                "runs every {s} s ({}) counted from when launchd loaded it; not a wall-clock schedule",
                crate::format_duration(std::time::Duration::from_secs(s as u64))
            ),
            _ => "StartInterval is not a positive integer number of seconds".to_string(),
        };
        out.push(finding(source, key_line(text, "StartInterval"), ManagedBy::Launchd, &command, refused(reason)));
    }
    out
}

/// How deep a property list may nest `dict`s and `array`s. A launchd job needs three levels;
/// the bound keeps a hostile file from costing unbounded stack when its value is dropped.
pub const PLIST_MAX_DEPTH: usize = 32;

/// Refuses, with its line, the first `<dict>` or `<array>` nested deeper than
/// [`PLIST_MAX_DEPTH`]. Only the nesting is looked at; the `plist` crate reads the rest.
fn plist_depth(text: &str) -> Result<(), (u64, String)> {
    let mut depth = 0usize;
    for (at, _) in text.match_indices('<') {
        let tag = &text[at + 1..];
        let (closing, tag) = match tag.strip_prefix('/') {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        let end = tag.find(|c: char| c == '>' || c == '/' || c.is_whitespace()).unwrap_or(tag.len());
        if !matches!(&tag[..end], "dict" | "array") {
            continue;
        }
        let empty = tag[end..].split('>').next().is_some_and(|attributes| attributes.trim_end().ends_with('/'));
        if closing {
            depth = depth.saturating_sub(1);
        } else if !empty {
            depth += 1;
            if depth > PLIST_MAX_DEPTH {
                return Err((line_at(text, at), format!("nested deeper than {PLIST_MAX_DEPTH} levels")));
            }
        }
    }
    Ok(())
}

/// The line and a readable message of the `plist` crate's error, whose text is the error's
/// kind and its byte offset (`InvalidIntegerString (offset 181)`).
fn plist_error(text: &str, e: &plist::Error) -> (u64, String) {
    let shown = e.to_string();
    let (kind, offset) = match shown.rsplit_once(" (offset ") {
        Some((kind, rest)) => (kind, rest.trim_end_matches(')').parse::<usize>().ok()),
        None => (shown.as_str(), None),
    };
    // `UnexpectedEventType { expected: Integer, found: String }` reads as
    // "unexpected event type (expected: integer, found: string)".
    let mut message = String::new();
    let mut previous = ' ';
    for c in kind.chars() {
        if c.is_ascii_uppercase() && previous.is_ascii_lowercase() {
            message.push(' ');
        }
        message.push(match c {
            '{' => '(',
            '}' => ')',
            c => c.to_ascii_lowercase(),
        });
        previous = c;
    }
    let message = message.replace("( ", "(").replace(" )", ")").replace("xml", "XML").replace("utf8", "UTF-8");
    let line = offset.map_or(1, |at| line_at(text, at.min(text.len())));
    (line, message)
}

/// The 1-based line of byte `at`.
fn line_at(text: &str, at: usize) -> u64 {
    text.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

/// The line of the first `<key>` naming `key` (the `plist` crate keeps no positions).
fn key_line(text: &str, key: &str) -> u64 {
    text.match_indices("<key>")
        .find(|(at, open)| {
            let rest = &text[at + open.len()..];
            rest.find("</key>").is_some_and(|end| rest[..end].trim() == key)
        })
        .map_or(1, |(at, _)| line_at(text, at))
}

/// `Program` and/or `ProgramArguments` as one shell-quoted line. With both, launchd runs
/// `Program` with `ProgramArguments` as its argv, whose first item is only the name it sees.
fn launchd_command(program: Option<&plist::Value>, args: Option<&plist::Value>) -> Option<String> {
    let program = program.and_then(plist::Value::as_string).map(str::to_string);
    let args: Option<Vec<String>> = args
        .and_then(plist::Value::as_array)
        .and_then(|items| items.iter().map(|v| v.as_string().map(str::to_string)).collect());
    let words: Vec<String> = match (program, args) {
        (Some(p), Some(a)) => std::iter::once(p).chain(a.into_iter().skip(1)).collect(),
        (Some(p), None) => vec![p],
        (None, Some(a)) => a,
        (None, None) => return None,
    };
    if words.is_empty() {
        return None;
    }
    Some(words.iter().map(|w| crate::shell::quote(w)).collect::<Vec<_>>().join(" "))
}

/// One `StartCalendarInterval` dict: minute, hour, day, month, weekday; `None` is every value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Calendar([Option<Vec<i64>>; 5]);

impl Calendar {
    fn cron(&self) -> String {
        self.0
            .iter()
            .map(|f| match f {
                None => "*".to_string(),
                Some(values) => list(values),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Sorted values as a cron list, runs of three or more written as ranges: `1-5,7`.
fn list(values: &[i64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let mut j = i;
        while j + 1 < values.len() && values[j + 1] == values[j] + 1 {
            j += 1;
        }
        if j >= i + 2 {
            parts.push(format!("{}-{}", values[i], values[j]));
        } else {
            parts.extend(values[i..=j].iter().map(i64::to_string));
        }
        i = j + 1;
    }
    parts.join(",")
}

fn calendar(v: &plist::Value) -> Result<Calendar, String> {
    const KEYS: [(&str, i64, i64); 5] =
        [("Minute", 0, 59), ("Hour", 0, 23), ("Day", 1, 31), ("Month", 1, 12), ("Weekday", 0, 7)];
    let Some(entries) = v.as_dictionary() else {
        return Err("StartCalendarInterval holds something other than a dict of integers".into());
    };
    let mut fields: [Option<Vec<i64>>; 5] = Default::default();
    for (name, value) in entries {
        let Some(i) = KEYS.iter().position(|(k, _, _)| k == name) else {
            return Err(format!(
                "unknown key {name:?} in StartCalendarInterval (launchd reads Minute, Hour, Day, Weekday and Month)"
            ));
        };
        let (key, lo, hi) = KEYS[i];
        let Some(n) = value.as_signed_integer() else {
            return Err(format!("StartCalendarInterval {key} is not an integer"));
        };
        if n < lo || n > hi {
            return Err(format!("StartCalendarInterval {key} {n} is out of range {lo}-{hi}"));
        }
        // Weekday 7 is Sunday, as 0 is.
        fields[i] = Some(vec![if key == "Weekday" { n % 7 } else { n }]);
    }
    Ok(Calendar(fields))
}

/// Several dicts as one expression, when that is exact: identical dicts, or dicts that differ
/// in one key that every one of them sets (the union of `A×B` and `A'×B` is `(A∪A')×B`).
fn merge(all: &[Calendar]) -> Option<Calendar> {
    let mut unique: Vec<&Calendar> = Vec::new();
    for c in all {
        if !unique.contains(&c) {
            unique.push(c);
        }
    }
    let first = (*unique.first()?).clone();
    if unique.len() == 1 {
        return Some(first);
    }
    let differing: Vec<usize> = (0..5).filter(|&i| unique.iter().any(|c| c.0[i] != first.0[i])).collect();
    let [i] = differing[..] else { return None };
    let mut values = Vec::new();
    for c in &unique {
        values.extend(c.0[i].clone()?);
    }
    values.sort_unstable();
    values.dedup();
    let mut merged = first;
    merged.0[i] = Some(values);
    Some(merged)
}

// ---------------------------------------------------------------------------------------------
// systemd

/// A systemd timer unit. Each `OnCalendar=` in `[Timer]` becomes one finding; the common forms
/// translate (`daily`, `weekly` = Monday 00:00, `Mon..Fri *-*-* 09:00`, `*:0/15`, a trailing
/// zone name), and what cron cannot express is refused: a second other than 0, a year, a day
/// counted from the month's end (`~`), a weekday *and* a day of the month (systemd wants both,
/// cron either). A random or coarse delay (`RandomizedDelaySec=`, `AccuracySec=` over a minute)
/// makes every calendar trigger inexact. `OnBootSec=` and the other monotonic triggers count
/// from an event, not the clock. An empty assignment resets the list, as in systemd.
///
/// The command is the timer's `Unit=`, else the service of the timer's own name.
pub fn discover_systemd(source: &str, text: &str) -> Vec<Finding> {
    let mut section = String::new();
    let mut triggers: Vec<(String, u64, String)> = Vec::new();
    let mut unit: Option<String> = None;
    let mut randomized: Option<String> = None;
    let mut accuracy: Option<String> = None;
    let mut lines = numbered(text).peekable();
    while let Some((n, raw)) = lines.next() {
        let mut line = raw.trim().to_string();
        // A trailing backslash continues the line.
        while line.ends_with('\\') {
            line.pop();
            match lines.next() {
                Some((_, next)) => {
                    line.push(' ');
                    line.push_str(next.trim());
                }
                None => break,
            }
        }
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = line[1..line.len() - 1].trim().to_string();
            continue;
        }
        if section != "Timer" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "Unit" => unit = Some(value.to_string()).filter(|v| !v.is_empty()),
            "RandomizedDelaySec" => randomized = Some(value.to_string()).filter(|v| !v.is_empty()),
            "AccuracySec" => accuracy = Some(value.to_string()).filter(|v| !v.is_empty()),
            k if k.starts_with("On") => {
                if value.is_empty() {
                    triggers.retain(|(t, _, _)| t != k);
                } else {
                    triggers.push((k.to_string(), n, value.to_string()));
                }
            }
            _ => {}
        }
    }
    let command = unit.unwrap_or_else(|| {
        let name = source.rsplit('/').next().unwrap_or(source);
        format!("{}.service", name.strip_suffix(".timer").unwrap_or(name))
    });
    // systemd's default accuracy is one minute, which cron's minute resolution absorbs.
    let delay = [("RandomizedDelaySec", randomized, 0.0), ("AccuracySec", accuracy, 60.0)].into_iter().find_map(
        |(key, value, limit)| {
            let value = value?;
            match timespan_secs(&value) {
                Some(s) if s <= limit => None,
                Some(_) => Some(format!("{key}={value} lets systemd start it up to {value} late")),
                None => Some(format!("cannot read {key}={value}")),
            }
        },
    );
    triggers
        .into_iter()
        .map(|(key, line, value)| {
            let outcome = if key == "OnCalendar" {
                match (on_calendar(&value), &delay) {
                    (Err(reason), _) => refused(format!("OnCalendar={value}: {reason}")),
                    (Ok(_), Some(d)) => refused(d.clone()),
                    (Ok((cron, zone)), None) => checked_cron(&cron, zone.as_deref().unwrap_or(LOCAL), None),
                }
            } else {
                let from = match key.as_str() {
                    "OnBootSec" => "after boot",
                    "OnStartupSec" => "after the service manager started",
                    "OnActiveSec" => "after the timer was activated",
                    "OnUnitActiveSec" => "after the unit last started",
                    "OnUnitInactiveSec" => "after the unit last stopped",
                    "OnClockChange" | "OnTimezoneChange" => "when the clock or zone changes",
                    _ => "from an event",
                };
                refused(format!("{key}={value} runs {from}, not on a wall-clock schedule"))
            };
            finding(source, line, ManagedBy::Systemd, &command, outcome)
        })
        .collect()
}

/// A systemd time span (`30s`, `5min`, `1h 30min`, a bare number of seconds) in seconds.
fn timespan_secs(s: &str) -> Option<f64> {
    const UNITS: [(&[&str], f64); 9] = [
        (&["usec", "us", "µs"], 1e-6),
        (&["msec", "ms"], 1e-3),
        (&["seconds", "second", "sec", "s"], 1.0),
        (&["minutes", "minute", "min", "m"], 60.0),
        (&["hours", "hour", "hr", "h"], 3600.0),
        (&["days", "day", "d"], 86_400.0),
        (&["weeks", "week", "w"], 604_800.0),
        (&["months", "month", "M"], 2_629_800.0),
        (&["years", "year", "y"], 31_557_600.0),
    ];
    let s = s.trim();
    if s.eq_ignore_ascii_case("infinity") || s.is_empty() {
        return None;
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..num_end].parse().ok()?;
        rest = rest[num_end..].trim_start();
        let unit_end = rest.find(|c: char| !c.is_alphabetic()).unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        let factor = if unit.is_empty() {
            1.0
        } else {
            UNITS.iter().find(|(names, _)| names.contains(&unit)).map(|(_, f)| *f)?
        };
        total += number * factor;
        rest = rest[unit_end..].trim_start();
    }
    Some(total)
}

/// `OnCalendar=` as (cron, zone), or why it has no exact cron form.
fn on_calendar(expr: &str) -> Result<(String, Option<String>), String> {
    let mut tokens: Vec<String> = expr.split_whitespace().map(str::to_string).collect();
    if let Some(first) = tokens.first() {
        let expansion = match first.to_ascii_lowercase().as_str() {
            "minutely" => Some("*-*-* *:*:00"),
            "hourly" => Some("*-*-* *:00:00"),
            "daily" => Some("*-*-* 00:00:00"),
            "weekly" => Some("Mon *-*-* 00:00:00"),
            "monthly" => Some("*-*-01 00:00:00"),
            "yearly" | "annually" => Some("*-01-01 00:00:00"),
            "quarterly" => Some("*-01,04,07,10-01 00:00:00"),
            "semiannually" => Some("*-01,07-01 00:00:00"),
            _ => None,
        };
        if let Some(e) = expansion {
            tokens.splice(0..1, e.split(' ').map(str::to_string));
        }
    }
    if tokens.is_empty() {
        return Err("empty".into());
    }
    let starts_alpha = |t: &str| t.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let mut zone = None;
    if tokens.len() > 1 && tokens.last().is_some_and(|t| starts_alpha(t)) {
        let z = tokens.pop().unwrap_or_default();
        cron::zone(&z)?;
        zone = Some(z);
    }
    let mut rest = &tokens[..];
    let mut weekdays = None;
    if let Some(t) = rest.first().filter(|t| starts_alpha(t)) {
        weekdays = Some(weekday_spec(t)?);
        rest = &rest[1..];
    }
    let mut date = None;
    if let Some(t) = rest.first().filter(|t| !t.contains(':')) {
        date = Some(t.as_str());
        rest = &rest[1..];
    }
    let mut time = None;
    if let Some(t) = rest.first().filter(|t| t.contains(':')) {
        time = Some(t.as_str());
        rest = &rest[1..];
    }
    if !rest.is_empty() {
        return Err(format!("cannot read {:?} (expected [WEEKDAY] [DATE] [TIME] [ZONE])", rest.join(" ")));
    }
    if weekdays.is_none() && date.is_none() && time.is_none() {
        return Err("no weekday, date or time".into());
    }
    let (mut month, mut day) = ("*".to_string(), "*".to_string());
    if let Some(d) = date {
        if d.contains('~') {
            return Err("counts days from the end of the month (~), which cron cannot express".into());
        }
        if d.contains('T') {
            return Err("cannot read the date (write it as YYYY-MM-DD HH:MM:SS)".into());
        }
        let parts: Vec<&str> = d.split('-').collect();
        let (year, m, dd) = match parts[..] {
            [y, m, d] => (Some(y), m, d),
            [m, d] => (None, m, d),
            _ => return Err(format!("cannot read the date {d:?}")),
        };
        if let Some(y) = year
            && y != "*"
        {
            return Err(format!("only in the year(s) {y}; cron has no year field"));
        }
        month = component(m, 1, 12, "month")?;
        day = component(dd, 1, 31, "day")?;
    }
    let (mut hour, mut minute) = ("0".to_string(), "0".to_string());
    if let Some(t) = time {
        let parts: Vec<&str> = t.split(':').collect();
        let (h, m, s) = match parts[..] {
            [h, m] => (h, m, None),
            [h, m, s] => (h, m, Some(s)),
            _ => return Err(format!("cannot read the time {t:?}")),
        };
        if let Some(s) = s
            && !s.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c == '0'))
        {
            return Err(format!("fires at second {s}; cron fires only at the start of a minute"));
        }
        hour = component(h, 0, 23, "hour")?;
        minute = component(m, 0, 59, "minute")?;
    }
    let dow = weekdays.unwrap_or_else(|| "*".to_string());
    if dow != "*" && day != "*" {
        return Err("restricts both the weekday and the day of the month; systemd requires both, cron either".into());
    }
    Ok((format!("{minute} {hour} {day} {month} {dow}"), zone))
}

/// One calendar component (`*`, `5`, `1,15`, `9..17`, `0/15`, `9..17/2`) as a cron field.
fn component(text: &str, min: u32, max: u32, what: &str) -> Result<String, String> {
    let number = |s: &str| -> Result<u32, String> {
        let n: u32 = s.parse().map_err(|_| format!("cannot read the {what} {s:?}"))?;
        if n < min || n > max {
            return Err(format!("{what} {n} is out of range {min}-{max}"));
        }
        Ok(n)
    };
    let mut items = Vec::new();
    for item in text.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("cannot read the repetition {s:?}"))?;
                if step == 0 {
                    return Err(format!("a repetition of 0 in {item:?}"));
                }
                (b, Some(step))
            }
            None => (item, None),
        };
        let range = if base == "*" {
            None
        } else if let Some((a, b)) = base.split_once("..") {
            let (a, b) = (number(a)?, number(b)?);
            if a > b {
                return Err(format!("the range {base:?} runs backwards"));
            }
            Some((a, b))
        } else {
            let a = number(base)?;
            // `a/n` is a, a+n, … to the end of the range.
            Some((a, if step.is_some() { max } else { a }))
        };
        items.push(match (range, step) {
            (None, None) => "*".to_string(),
            (None, Some(s)) => format!("*/{s}"),
            (Some((a, b)), None) if a == b => a.to_string(),
            (Some((a, b)), None) => format!("{a}-{b}"),
            (Some((a, b)), Some(s)) if a == min && b == max => format!("*/{s}"),
            (Some((a, b)), Some(s)) => format!("{a}-{b}/{s}"),
        });
    }
    if items.iter().any(|i| i == "*") && items.len() > 1 {
        return Err(format!("cannot read the {what} {text:?}"));
    }
    Ok(items.join(","))
}

/// `Mon..Fri`, `Sat,Sun`, `Monday` as a cron day-of-week field.
fn weekday_spec(text: &str) -> Result<String, String> {
    const NAMES: [(&str, &str); 7] = [
        ("sun", "sunday"),
        ("mon", "monday"),
        ("tue", "tuesday"),
        ("wed", "wednesday"),
        ("thu", "thursday"),
        ("fri", "friday"),
        ("sat", "saturday"),
    ];
    let day = |s: &str| -> Result<u32, String> {
        let l = s.to_ascii_lowercase();
        NAMES
            .iter()
            .position(|(short, long)| l == *short || l == *long)
            .map(|i| i as u32)
            .ok_or_else(|| format!("{s:?} is not a weekday (Mon, Tue, … or a zone name at the end)"))
    };
    let mut items = Vec::new();
    for item in text.split(',') {
        match item.split_once("..") {
            Some((a, b)) => {
                let a = day(a)?;
                let mut b = day(b)?;
                // Sunday closes a week that starts on Monday.
                if b == 0 && a > 0 {
                    b = 7;
                }
                if a > b {
                    return Err(format!("the weekday range {item:?} wraps around the week"));
                }
                items.push(format!("{a}-{b}"));
            }
            None => items.push(day(item)?.to_string()),
        }
    }
    Ok(items.join(","))
}

// ---------------------------------------------------------------------------------------------
// Railway

/// `railway.json`: `deploy.cronSchedule` (UTC, as Railway runs cron) and `deploy.startCommand`.
pub fn discover_railway_json(source: &str, text: &str) -> Vec<Finding> {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) if text.contains("cronSchedule") => {
            let reason = format!("cannot read railway.json: {e}");
            return vec![finding(source, e.line() as u64, ManagedBy::Railway, "", refused(reason))];
        }
        Err(_) => return Vec::new(),
    };
    let deploy = value.get("deploy");
    let command = deploy.and_then(|d| d.get("startCommand")).and_then(|c| c.as_str()).unwrap_or("");
    let line = line_of(text, "\"cronSchedule\"").unwrap_or(1);
    match deploy.and_then(|d| d.get("cronSchedule")) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Vec::new(),
        Some(serde_json::Value::String(s)) => {
            vec![finding(source, line, ManagedBy::Railway, command, checked_cron(s, "UTC", Some("Railway")))]
        }
        Some(_) => {
            vec![finding(source, line, ManagedBy::Railway, command, refused("deploy.cronSchedule is not a string"))]
        }
    }
}

/// `railway.toml`: the `[deploy]` table's `cronSchedule` and `startCommand` (also written as
/// dotted keys), read by the `toml` crate. A file that is not TOML is reported only when it
/// mentions `cronSchedule`, at the line of the error.
pub fn discover_railway_toml(source: &str, text: &str) -> Vec<Finding> {
    let root = match toml::de::DeTable::parse(text) {
        Ok(root) => root,
        Err(e) if text.contains("cronSchedule") => {
            let line = e.span().map_or(1, |span| line_at(text, span.start.min(text.len())));
            let reason = format!("cannot read railway.toml: {}", e.message());
            return vec![finding(source, line, ManagedBy::Railway, "", refused(reason))];
        }
        Err(_) => return Vec::new(),
    };
    let Some((_, toml::de::DeValue::Table(deploy))) = toml_entry(root.get_ref(), "deploy") else {
        return Vec::new();
    };
    let command = match toml_entry(deploy, "startCommand") {
        Some((_, toml::de::DeValue::String(c))) => c.to_string(),
        _ => String::new(),
    };
    let Some((span, schedule)) = toml_entry(deploy, "cronSchedule") else {
        return Vec::new();
    };
    let line = line_at(text, span.start.min(text.len()));
    match schedule {
        toml::de::DeValue::String(s) if s.trim().is_empty() => Vec::new(),
        toml::de::DeValue::String(s) => {
            vec![finding(source, line, ManagedBy::Railway, &command, checked_cron(s, "UTC", Some("Railway")))]
        }
        _ => vec![finding(source, line, ManagedBy::Railway, &command, refused("cronSchedule: not a quoted string"))],
    }
}

/// The span of `name`'s key in `table`, and its value.
fn toml_entry<'a, 'i>(
    table: &'a toml::de::DeTable<'i>,
    name: &str,
) -> Option<(std::ops::Range<usize>, &'a toml::de::DeValue<'i>)> {
    table.iter().find(|(key, _)| key.get_ref() == name).map(|(key, value)| (key.span(), value.get_ref()))
}

fn line_of(text: &str, needle: &str) -> Option<u64> {
    numbered(text).find(|(_, l)| l.contains(needle)).map(|(n, _)| n)
}

// ---------------------------------------------------------------------------------------------
// GitHub Actions

/// A GitHub Actions workflow: each `on.schedule[].cron`, in UTC unless the item sets
/// `timezone`. The command names the workflow; the line is that of the cron string.
///
/// YAML 1.1 readers turn the key `on` into `true`; serde-saphyr keeps it as the string `on`,
/// and both spellings are accepted.
pub fn discover_github(source: &str, text: &str) -> Vec<Finding> {
    let file = source.rsplit('/').next().unwrap_or(source);
    let doc: serde_json::Value = match serde_saphyr::from_str(text) {
        Ok(v) => v,
        Err(e) if text.contains("cron") && text.contains("schedule") => {
            let line = e.location().map(|l| l.line()).unwrap_or(1);
            let reason = format!("cannot read the workflow: {e}");
            return vec![finding(source, line, ManagedBy::Github, &format!("GitHub workflow {file}"), refused(reason))];
        }
        Err(_) => return Vec::new(),
    };
    let name = doc.get("name").and_then(|n| n.as_str()).filter(|n| !n.trim().is_empty()).unwrap_or(file);
    let command = format!("GitHub workflow {name}");
    let on = doc.get("on").or_else(|| doc.get("true"));
    let Some(schedule) = on.and_then(|o| o.get("schedule")) else {
        return Vec::new();
    };
    let schedule_line = numbered(text)
        .find(|(_, l)| l.trim_start().trim_start_matches(['-', ' ', '"', '\'']).starts_with("schedule"))
        .map(|(n, _)| n)
        .unwrap_or(1);
    let serde_json::Value::Array(items) = schedule else {
        return vec![finding(source, schedule_line, ManagedBy::Github, &command, refused("on.schedule is not a list"))];
    };
    let mut cursor = (0usize, 0usize);
    let mut out = Vec::new();
    for item in items {
        let Some(cron_value) = item.get("cron").and_then(|c| c.as_str()) else {
            out.push(finding(
                source,
                schedule_line,
                ManagedBy::Github,
                &command,
                refused("a schedule item has no cron string"),
            ));
            continue;
        };
        let line = match find_after(text, cursor, cron_value) {
            Some((l, c)) => {
                cursor = (l, c + cron_value.len());
                l as u64 + 1
            }
            None => schedule_line,
        };
        let outcome = match item.get("timezone") {
            None | Some(serde_json::Value::Null) => checked_cron(cron_value, "UTC", Some("GitHub")),
            Some(serde_json::Value::String(z)) => checked_cron(cron_value, z.trim(), Some("GitHub")),
            Some(_) => refused("timezone is not a string"),
        };
        out.push(finding(source, line, ManagedBy::Github, &command, outcome));
    }
    out
}

/// The next (line index, byte column) at or after `from` where `needle` appears on a line that
/// mentions `cron` before it.
fn find_after(text: &str, from: (usize, usize), needle: &str) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    for (i, line) in text.split('\n').enumerate().skip(from.0) {
        let start = if i == from.0 { from.1.min(line.len()) } else { 0 };
        let mut at = start;
        while let Some(found) = line.get(at..).and_then(|s| s.find(needle)) {
            let col = at + found;
            if line[..col].contains("cron") {
                return Some((i, col));
            }
            at = col + needle.len();
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// What a job runs, and whether it is a manifest's task.

/// What a job's command line runs, as far as its words tell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Runs {
    /// The first script it names (a word ending in `.py`, `.sh`, `.js`, …), as written.
    pub script: Option<String>,
    /// The first program it starts that is not a wrapper (`env`, `nice`, `exec`…) nor a shell
    /// or interpreter given a script; `cd` and its directory are never one.
    pub program: Option<String>,
    /// Every word of the commands it runs, quotes removed, without `cd` commands, variable
    /// assignments and redirections.
    pub words: Vec<String>,
}

/// Programs that run another program named after them.
const WRAPPERS: [&str; 9] = ["env", "nice", "nohup", "exec", "time", "sudo", "command", "caffeinate", "flock"];
/// Shells and interpreters: the program is what they are given.
const INTERPRETERS: [&str; 14] =
    ["sh", "bash", "zsh", "dash", "python", "python3", "node", "ruby", "perl", "uv", "deno", "bun", "php", "pipenv"];
const SCRIPT_EXTENSIONS: [&str; 8] = ["py", "sh", "js", "ts", "rb", "pl", "mjs", "bash"];

/// A command line in shell words, quotes removed, with the operators that separate commands
/// (`&&`, `||`, `;`, `|`, `&`) and redirections (`>`, `>>`, `2>&1`, `<`) as words of their own.
fn shell_words(command: &str) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = command.chars().peekable();
    let flush = |word: &mut String, in_word: &mut bool, out: &mut Vec<(String, bool)>| {
        if *in_word {
            out.push((std::mem::take(word), false));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        _ => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c if c.is_whitespace() => flush(&mut word, &mut in_word, &mut out),
            '&' | '|' | ';' | '>' | '<' => {
                // A file descriptor number glued to a redirection (`2>`) belongs to it.
                let fd = in_word && c != '&' && c != '|' && c != ';' && word.chars().all(|d| d.is_ascii_digit());
                let mut op = if fd { std::mem::take(&mut word) } else { String::new() };
                if !fd {
                    flush(&mut word, &mut in_word, &mut out);
                }
                in_word = false;
                op.push(c);
                while let Some(&n) = chars.peek() {
                    if "&|>".contains(n) || (op.ends_with(">&") && n.is_ascii_digit()) {
                        op.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push((op, true));
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush(&mut word, &mut in_word, &mut out);
    out
}

fn base_name(word: &str) -> &str {
    word.trim_end_matches('/').rsplit('/').next().unwrap_or(word)
}

fn is_script(word: &str) -> bool {
    base_name(word).rsplit_once('.').is_some_and(|(stem, ext)| !stem.is_empty() && SCRIPT_EXTENSIONS.contains(&ext))
}

/// Reads what `command` runs: the script and program its schedule is named after, and its
/// words, to compare with a manifest task's command.
pub fn what_it_runs(command: &str) -> Runs {
    let mut runs = Runs::default();
    let mut segment: Vec<String> = Vec::new();
    let mut redirect_target = false;
    let mut words = shell_words(command);
    words.push((";".into(), true));
    for (word, operator) in words {
        if redirect_target {
            redirect_target = false;
            if !operator {
                continue;
            }
        }
        if !operator {
            segment.push(word);
            continue;
        }
        if word.contains('>') || word.contains('<') {
            // A redirection: the next word is a file, not something the job runs (`2>&1`
            // names none).
            redirect_target = !word.ends_with(|c: char| c.is_ascii_digit()) && !word.ends_with('-');
            continue;
        }
        read_segment(std::mem::take(&mut segment), &mut runs);
    }
    runs
}

/// One simple command of a command line.
fn read_segment(segment: Vec<String>, runs: &mut Runs) {
    let mut rest = segment.into_iter().skip_while(|w| {
        // `VAR=value` before the program.
        w.split_once('=')
            .is_some_and(|(name, _)| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    });
    let Some(first) = rest.next() else { return };
    if base_name(&first) == "cd" {
        return;
    }
    let args: Vec<String> = rest.collect();
    if ["sh", "bash", "zsh", "dash"].contains(&base_name(&first))
        && let Some(i) = args.iter().position(|a| a == "-c")
        && let Some(inner) = args.get(i + 1)
    {
        let inner = what_it_runs(inner);
        runs.words.extend(inner.words);
        runs.script = runs.script.take().or(inner.script);
        runs.program = runs.program.take().or(inner.program);
        return;
    }
    runs.words.push(first.clone());
    runs.words.extend(args.iter().cloned());
    let all: Vec<&String> = std::iter::once(&first).chain(&args).collect();
    if runs.script.is_none() {
        runs.script = all.iter().find(|w| !w.starts_with('-') && is_script(w)).map(|w| w.to_string());
    }
    if runs.program.is_none() {
        runs.program = all
            .iter()
            .filter(|w| !w.starts_with('-') && !w.contains('=') && !w.chars().all(|c| c.is_ascii_digit()))
            .find(|w| {
                let base = base_name(w);
                !WRAPPERS.contains(&base) && !INTERPRETERS.contains(&base) && !base.is_empty()
            })
            .map(|w| w.to_string());
    }
}

/// The words of a manifest task's command, as [`what_it_runs`] reads them.
fn task_runs(task: &crate::manifest::Command) -> Runs {
    match task {
        crate::manifest::Command::Shell(s) => what_it_runs(s),
        crate::manifest::Command::Argv(argv) => {
            what_it_runs(&argv.iter().map(|w| crate::shell::quote(w)).collect::<Vec<_>>().join(" "))
        }
    }
}

/// A path's parts, without `.` parts.
fn parts(path: &str) -> Vec<&str> {
    path.split('/').filter(|p| !p.is_empty() && *p != ".").collect()
}

/// Whether a job found by discovery runs the manifest task `task` (whose command runs in the
/// project's directory): it names the same script (the job's path ends with the task's,
/// `/Users/you/cortana/scripts/run.sh` runs `scripts/run.sh`), or the task's whole command
/// appears in the job's, word for word (`cd ~/newsletter && npm run send` runs `npm run send`).
pub fn runs_task(job: &str, task: &crate::manifest::Command) -> bool {
    let job = what_it_runs(job);
    let task = task_runs(task);
    if let (Some(j), Some(t)) = (&job.script, &task.script) {
        let (j, t) = (parts(j), parts(t));
        return !t.is_empty() && j.ends_with(&t);
    }
    let strip = |w: &String| w.strip_prefix("./").unwrap_or(w).to_string();
    let job_words: Vec<String> = job.words.iter().map(strip).collect();
    let task_words: Vec<String> = task.words.iter().map(strip).collect();
    !task_words.is_empty() && job_words.windows(task_words.len()).any(|w| w == task_words.as_slice())
}

/// Whether two zone names are the same zone by name (UTC's aliases are one zone).
pub fn same_zone(a: &str, b: &str) -> bool {
    const UTC: [&str; 8] = ["UTC", "Etc/UTC", "Etc/UCT", "UCT", "Zulu", "Etc/Zulu", "Etc/Universal", "Universal"];
    a == b || (UTC.contains(&a) && UTC.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Command;

    #[test]
    fn what_a_job_runs_skips_cd_redirections_and_wrappers() {
        let r = what_it_runs("cd /home/me/newsletter && npm run send");
        assert_eq!((r.script, r.program.as_deref()), (None, Some("npm")));
        assert_eq!(r.words, ["npm", "run", "send"]);
        let r = what_it_runs(
            "cd \"$HOME/projects/image-workflow\" && ./scripts/backup.sh >> \"$HOME/Library/Logs/b.sh\" 2>&1",
        );
        assert_eq!(r.script.as_deref(), Some("./scripts/backup.sh"));
        assert_eq!(r.words, ["./scripts/backup.sh"]);
        let r = what_it_runs("PATH=/bin nice -n 5 /usr/local/bin/backup-db>/tmp/x.log");
        assert_eq!(r.program.as_deref(), Some("/usr/local/bin/backup-db"));
        let r = what_it_runs("bash -c 'cd /srv && exec python3 jobs/rebalance.py --live'");
        assert_eq!(r.script.as_deref(), Some("jobs/rebalance.py"));
    }

    #[test]
    fn a_job_runs_a_task_by_its_script_or_its_whole_command() {
        let shell = |s: &str| Command::Shell(s.into());
        let argv = |v: &[&str]| Command::Argv(v.iter().map(|s| s.to_string()).collect());
        assert!(runs_task(
            "/bin/sh /Users/you/cortana/scripts/automation/run_daily_update.sh",
            &shell("scripts/automation/run_daily_update.sh")
        ));
        assert!(runs_task("cd ~/w && ./scripts/backup.sh >> log 2>&1", &argv(&["sh", "scripts/backup.sh"])));
        assert!(!runs_task("/bin/sh /Users/you/other/backup.sh", &shell("scripts/backup.sh")));
        assert!(runs_task("cd ~/newsletter && npm run send", &argv(&["npm", "run", "send"])));
        assert!(!runs_task("cd ~/newsletter && npm run build", &argv(&["npm", "run", "send"])));
        assert!(same_zone("UTC", "Etc/UTC") && !same_zone("UTC", "Europe/London"));
    }

    fn cron_of(expr: &str) -> Result<String, String> {
        on_calendar(expr).map(|(c, _)| c)
    }

    #[test]
    fn systemd_calendar_forms() {
        assert_eq!(cron_of("daily").as_deref(), Ok("0 0 * * *"));
        assert_eq!(cron_of("weekly").as_deref(), Ok("0 0 * * 1"));
        assert_eq!(cron_of("monthly").as_deref(), Ok("0 0 1 * *"));
        assert_eq!(cron_of("quarterly").as_deref(), Ok("0 0 1 1,4,7,10 *"));
        assert_eq!(cron_of("*:0/15").as_deref(), Ok("*/15 * * * *"));
        assert_eq!(cron_of("*-*-* 9..17:30").as_deref(), Ok("30 9-17 * * *"));
        assert_eq!(cron_of("Mon..Sun 08:00").as_deref(), Ok("0 8 * * 1-7"));
        assert_eq!(cron_of("*-*-1/7 06:00").as_deref(), Ok("0 6 */7 * *"));
        assert_eq!(cron_of("*-*-2/7 06:00").as_deref(), Ok("0 6 2-31/7 * *"));
        assert!(cron_of("Fri..Mon 08:00").unwrap_err().contains("wraps"));
        assert!(cron_of("*-*-* 08:00:30").unwrap_err().contains("second 30"));
        assert!(cron_of("2026-03-08 08:00").unwrap_err().contains("year"));
        assert!(cron_of("*-02~01").unwrap_err().contains("end of the month"));
        assert_eq!(on_calendar("daily Europe/Berlin"), Ok(("0 0 * * *".into(), Some("Europe/Berlin".into()))));
        assert!(on_calendar("daily Mars/Olympus").is_err());
    }

    #[test]
    fn timespans() {
        assert_eq!(timespan_secs("0"), Some(0.0));
        assert_eq!(timespan_secs("1h 30min"), Some(5400.0));
        assert_eq!(timespan_secs("45s"), Some(45.0));
        assert_eq!(timespan_secs("2 weeks"), Some(1_209_600.0));
        assert_eq!(timespan_secs("soon"), None);
    }

    #[test]
    fn crontab_commands_stop_at_percent() {
        assert_eq!(crontab_command(r"date +\%F >> /tmp/x%line one%two"), "date +%F >> /tmp/x");
        assert_eq!(crontab_command("echo hi   "), "echo hi");
    }

    #[test]
    fn env_lines_are_told_from_entries() {
        assert_eq!(env_assignment("MAILTO=\"\""), Some(("MAILTO", String::new())));
        assert_eq!(env_assignment("CRON_TZ = Europe/Berlin"), Some(("CRON_TZ", "Europe/Berlin".into())));
        assert_eq!(env_assignment("30 3 * * * FOO=bar cmd"), None);
        assert_eq!(env_assignment("@daily X=1 cmd"), None);
    }

    #[test]
    fn launchd_dicts_merge_only_when_exact() {
        let c = |m: i64, h: i64| Calendar([Some(vec![m]), Some(vec![h]), None, None, None]);
        assert_eq!(merge(&[c(0, 9), c(0, 17), c(0, 9)]).map(|m| m.cron()), Some("0 9,17 * * *".into()));
        assert_eq!(merge(&[c(0, 9), c(30, 17)]), None);
        assert_eq!(list(&[0, 1, 2, 3, 5, 7, 8]), "0-3,5,7,8");
        let every_hour = Calendar([Some(vec![0]), None, None, None, None]);
        assert_eq!(merge(&[c(0, 9), every_hour]), None);
    }

    #[test]
    fn kinds_by_name() {
        assert_eq!(kind_of("/etc/crontab"), Some(Kind::SystemCrontab));
        assert_eq!(kind_of("/etc/cron.d/backup"), Some(Kind::SystemCrontab));
        assert_eq!(kind_of("deploy/crontab.txt"), Some(Kind::UserCrontab));
        assert_eq!(kind_of("ops/nightly.cron"), Some(Kind::UserCrontab));
        assert_eq!(kind_of("/var/spool/cron/crontabs/me"), Some(Kind::UserCrontab));
        assert_eq!(kind_of("src/crontab.rs"), None);
        assert_eq!(kind_of("repo/.github/workflows/ci.yml"), Some(Kind::GitHub));
        assert_eq!(kind_of(".github/workflows/ci.yaml"), Some(Kind::GitHub));
        assert_eq!(kind_of("repo/.github/workflows/sub/ci.yml"), None);
        assert_eq!(kind_of("config/ci.yml"), None);
        assert_eq!(kind_of("a/railway.toml"), Some(Kind::RailwayToml));
        assert_eq!(kind_of("x/backup.timer"), Some(Kind::Systemd));
        assert_eq!(kind_of("x/com.example.job.plist"), Some(Kind::Launchd));
        assert_eq!(kind_of(CRONTAB_L), Some(Kind::UserCrontab));
    }
}
