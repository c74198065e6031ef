//! The readable text of each tool's answer, made from the API's JSON: one line per item, the
//! facts an agent needs to answer in words, and ids it can pass to the next tool. Everything
//! else is in the structured content.

use std::fmt::Write;

use serde_json::Value;

use crate::items;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// `key: value` for a value that is set.
fn opt(label: &str, v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(t) if t.is_empty() => String::new(),
        Value::String(t) => format!(" · {label} {t}"),
        other => format!(" · {label} {other}"),
    }
}

fn millis(v: &Value) -> String {
    match v.as_i64() {
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 120_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{:.1} min", ms as f64 / 60_000.0),
        None => String::new(),
    }
}

fn none_or(items: &[Value], empty: &str, each: impl Fn(&Value) -> String) -> String {
    if items.is_empty() {
        return format!("{empty}\n");
    }
    items.iter().map(|i| each(i) + "\n").collect()
}

pub fn overview(d: &Value, since: &str) -> String {
    let mut out = String::new();
    let ok = d["ok"].as_bool() == Some(true);
    let _ = writeln!(
        out,
        "{} (since {since}, {})",
        if ok { "Everything is OK." } else { "Needs attention." },
        s(&d["since"])
    );
    let _ = writeln!(out, "\nProjects:");
    out += &none_or(items(&d["projects"]), "  none registered", |p| {
        let reasons: Vec<String> = p["reasons"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter(|x| s(&x["state"]) != "ok")
                    .map(|x| format!("{}: {}", s(&x["source"]), s(&x["message"])))
                    .collect()
            })
            .unwrap_or_default();
        let why = if reasons.is_empty() { String::new() } else { format!(" — {}", reasons.join("; ")) };
        format!("  {} {}{why}", s(&p["project"]), s(&p["state"]))
    });
    let section = |out: &mut String, title: &str, key: &str, each: &dyn Fn(&Value) -> String| {
        let items = items(&d[key]);
        let _ = writeln!(out, "\n{title} ({}):", items.len());
        for i in items {
            let _ = writeln!(out, "  {}", each(i));
        }
    };
    section(&mut out, "Open incidents", "open_incidents", &incident_line);
    section(&mut out, "Late or down checks", "late_or_down_checks", &check_line);
    section(&mut out, "Late or down schedules", "late_or_down_schedules", &schedule_line);
    section(&mut out, "Budgets at 80% or more, or pausing a project", "budgets_near_limit", &budget_line);
    section(&mut out, "Failed runs", "failed_runs", &run_line);
    if d["failed_runs_truncated"].as_bool() == Some(true) {
        out += "  (more not shown: use list_runs with since)\n";
    }
    let _ = writeln!(out, "\nSpent:");
    out += &cost_lines(&d["spent"]);
    out
}

pub fn projects(items: &[Value]) -> String {
    none_or(items, "No project is registered.", |p| {
        let tasks: Vec<&str> =
            p["tasks"].as_array().map(|t| t.iter().map(|x| s(&x["name"])).collect()).unwrap_or_default();
        format!(
            "{} ({}) — {} · tasks: {} · {} schedules",
            s(&p["name"]),
            s(&p["transport"]),
            s(&p["description"]),
            if tasks.is_empty() { "none".into() } else { tasks.join(", ") },
            p["schedules"].as_array().map_or(0, Vec::len)
        )
    })
}

pub fn project(p: &Value, health: &Value) -> String {
    let mut out = format!("{} ({}): {}\n", s(&p["name"]), s(&p["transport"]), s(&p["description"]));
    let _ = writeln!(out, "Health: {}", s(&health["state"]));
    for r in items(&health["reasons"]) {
        let _ = writeln!(out, "  {} {}: {}", s(&r["source"]), s(&r["state"]), s(&r["message"]));
    }
    let _ = writeln!(out, "Tasks:");
    out += &none_or(items(&p["tasks"]), "  none", |t| {
        format!("  {} — {}{}", s(&t["name"]), s(&t["description"]), opt("retries", &t["retries"]))
    });
    let _ = writeln!(out, "Schedules:");
    out += &none_or(items(&p["schedules"]), "  none", |x| format!("  {}", schedule_line(x)));
    let keys: Vec<&str> = p["keys"].as_array().map(|k| k.iter().map(|x| s(&x["name"])).collect()).unwrap_or_default();
    if !keys.is_empty() {
        let _ = writeln!(out, "Declared keys (names only): {}", keys.join(", "));
    }
    out
}

fn schedule_line(x: &Value) -> String {
    let next: Vec<&str> = x["next"].as_array().map(|n| n.iter().map(s).collect()).unwrap_or_default();
    let mut flags = Vec::new();
    if x["late"].as_bool() == Some(true) {
        flags.push("LATE");
    }
    if x["down"].as_bool() == Some(true) {
        flags.push("DOWN");
    }
    if x["paused"].as_bool() == Some(true) {
        flags.push("paused");
    }
    let last = match &x["last_run"] {
        Value::Null => String::new(),
        r => format!(" · last run {} {}", s(&r["status"]), s(&r["slot"])),
    };
    format!(
        "{}/{} `{}` {} [{}] {}{} · next {}{last} · id {}",
        s(&x["project"]),
        s(&x["task"]),
        s(&x["cron"]),
        s(&x["timezone"]),
        s(&x["managed_by"]),
        s(&x["state"]),
        if flags.is_empty() { String::new() } else { format!(" {}", flags.join(" ")) },
        if next.is_empty() { "—".into() } else { next.join(", ") },
        s(&x["id"])
    )
}

pub fn schedules(items: &[Value]) -> String {
    none_or(items, "No schedule.", schedule_line)
}

fn check_line(c: &Value) -> String {
    let tags: Vec<&str> =
        c["tags"].as_array().map(|t| t.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    // A quiet check says why it does not page: held by an upstream, or snoozed.
    let held = c["held_by"].as_str().filter(|b| *b != "snooze").map(|b| format!(" · held by {b}")).unwrap_or_default();
    format!(
        "{}/{} {}{held}{}{}{}{}",
        s(&c["project"]),
        s(&c["slug"]),
        s(&c["state"]),
        opt("snoozed until", &c["snoozed_until"]),
        opt("last ping", &c["last_ping_at"]),
        opt("running since", &c["running_since"]),
        if tags.is_empty() { String::new() } else { format!(" [{}]", tags.join(", ")) }
    )
}

pub fn checks(items: &[Value]) -> String {
    none_or(items, "No heartbeat check.", check_line)
}

fn run_line(r: &Value) -> String {
    let when = if r["finished_at"].is_string() { &r["finished_at"] } else { &r["queued_at"] };
    let mut line = format!("{} {}/{} {} {}", s(&r["id"]), s(&r["project"]), s(&r["task"]), s(&r["status"]), s(when));
    if r["duration_ms"].is_i64() {
        let _ = write!(line, " ({})", millis(&r["duration_ms"]));
    }
    line += &opt("exit", &r["exit_code"]);
    line += &opt("error", &r["error"]);
    line += &opt("waiting for", &r["waiting_for"]);
    line
}

pub fn runs(items: &[Value], more: bool) -> String {
    let mut out = none_or(items, "No run matches.", run_line);
    if more {
        out += "(more runs match: narrow the filters or raise `limit`)\n";
    }
    out
}

pub fn run(r: &Value) -> String {
    let mut out = run_line(r) + "\n";
    let _ = writeln!(out, "trigger {} · attempt {} of {}", s(&r["trigger"]), r["attempt"], r["max_attempts"]);
    for (label, key) in [("queued", "queued_at"), ("started", "started_at"), ("finished", "finished_at")] {
        if r[key].is_string() {
            let _ = writeln!(out, "{label} {}", s(&r[key]));
        }
    }
    if r["input"].as_object().is_some_and(|o| !o.is_empty()) {
        let _ = writeln!(out, "input {}", r["input"]);
    }
    if r["outputs"].as_object().is_some_and(|o| !o.is_empty()) {
        let _ = writeln!(out, "outputs {}", r["outputs"]);
    }
    if r["resources"].as_array().is_some_and(|a| !a.is_empty()) {
        let _ = writeln!(out, "resources {}", r["resources"]);
    }
    if r["logs_pruned_at"].is_string() {
        let _ = writeln!(out, "its log was removed by retention at {}", s(&r["logs_pruned_at"]));
    }
    out
}

pub fn log(id: &str, lines: &[String], finished: bool, dropped: i64) -> String {
    let mut out = format!(
        "Log of run {id}, last {} lines{}{}:\n",
        lines.len(),
        if finished { "" } else { " (still running)" },
        if dropped > 0 { format!(", {dropped} bytes over the log limit were dropped") } else { String::new() }
    );
    for l in lines {
        out += l;
        out.push('\n');
    }
    out
}

fn cost_lines(summary: &Value) -> String {
    let groups = items(&summary["groups"]);
    let mut out = none_or(groups, "  nothing recorded", |g| {
        let tokens = match (g["tokens_in"].as_i64(), g["tokens_out"].as_i64()) {
            (Some(i), Some(o)) if i > 0 || o > 0 => format!(" · {i} tokens in, {o} out"),
            _ => String::new(),
        };
        let unpriced = match g["unpriced"].as_i64() {
            Some(n) if n > 0 => format!(" · {n} unpriced"),
            _ => String::new(),
        };
        let records = g["records"].as_i64().unwrap_or(0);
        format!(
            "  {} {} {} ({records} record{}{tokens}{unpriced})",
            s(&g["group"]),
            s(&g["amount"]),
            s(&g["currency"]),
            if records == 1 { "" } else { "s" }
        )
    });
    for t in items(&summary["totals"]) {
        let _ = writeln!(out, "  total {} {}", s(&t["amount"]), s(&t["currency"]));
    }
    out
}

pub fn costs(summary: &Value) -> String {
    let range = match (summary["from"].as_str(), summary["to"].as_str()) {
        (Some(f), Some(t)) => format!(" from {f} to {t}"),
        (Some(f), None) => format!(" since {f}"),
        (None, Some(t)) => format!(" until {t}"),
        (None, None) => String::new(),
    };
    format!("Spending by {}{range}:\n{}", s(&summary["by"]), cost_lines(summary))
}

fn budget_line(b: &Value) -> String {
    format!(
        "{} {} {}: {} of {} {} ({:.0}%) · forecast {} · {} to {}{}",
        s(&b["project"]),
        s(&b["service"]),
        s(&b["period"]),
        s(&b["spent"]),
        s(&b["limit"]),
        s(&b["currency"]),
        b["percent"].as_f64().unwrap_or(0.0),
        s(&b["forecast"]),
        s(&b["period_start"]),
        s(&b["period_end"]),
        opt("PAUSED", &b["paused"])
    )
}

pub fn budgets(items: &[Value]) -> String {
    none_or(items, "No budget.", budget_line)
}

fn incident_line(i: &Value) -> String {
    format!(
        "{} [{}] {} {}: {}{}{}{}",
        s(&i["id"]),
        s(&i["severity"]),
        s(&i["status"]),
        s(&i["title"]),
        s(&i["reason"]),
        opt("project", &i["project"]),
        opt("since", &i["opened_at"]),
        opt("acknowledged by", &i["acked_by"])
    )
}

pub fn incidents(items: &[Value]) -> String {
    none_or(items, "No incident.", incident_line)
}

pub fn resources(items: &[Value]) -> String {
    none_or(items, "No resource is declared.", |r| {
        let who = |key: &str| -> String {
            let l: Vec<String> = r[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|h| {
                            let name = h["label"].as_str().or(h["project"].as_str()).unwrap_or(s(&h["kind"]));
                            format!("{name} since {}", s(&h["since"]))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if l.is_empty() { "none".into() } else { l.join(", ") }
        };
        let mut limits = Vec::new();
        if let Some(c) = r["concurrency"].as_u64() {
            limits.push(format!("{c} at a time"));
        }
        if let Some(rate) = r["rate"].as_str() {
            limits.push(format!("rate {rate}"));
        }
        format!("{} ({}) · held by: {} · waiting: {}", s(&r["name"]), limits.join(", "), who("holders"), who("waiters"))
    })
}

pub fn notification(n: &Value) -> String {
    let deliveries = items(&n["deliveries"]);
    let mut out = format!(
        "Notification {} [{}] {}{}\n",
        s(&n["id"]),
        s(&n["severity"]),
        s(&n["title"]),
        if n["deduplicated"].as_bool() == Some(true) { " (deduplicated: an earlier one stands for it)" } else { "" }
    );
    if let Some(why) = n["suppressed"].as_str() {
        let _ = writeln!(out, "Not sent: {why}");
    }
    for d in deliveries {
        let _ = writeln!(out, "  {} {}{}", s(&d["channel"]), s(&d["status"]), opt("error", &d["last_error"]));
    }
    if deliveries.is_empty() && n["suppressed"].is_null() {
        out += "  no channel's route matched it\n";
    }
    out
}

pub fn workflows(items: &[Value]) -> String {
    none_or(items, "No workflow is loaded.", |w| {
        let triggers: Vec<&str> = w["triggers"].as_array().map(|t| t.iter().map(s).collect()).unwrap_or_default();
        format!(
            "{} — {} · triggers: {} · {} steps · {}",
            s(&w["name"]),
            s(&w["description"]),
            triggers.join(", "),
            w["step_count"],
            s(&w["file"])
        )
    })
}

pub fn workflow_run(r: &Value) -> String {
    // A run detail is the run's fields with its steps beside them.
    let run = r;
    let mut out = format!(
        "Workflow run {} of {}: {}{}{}\n",
        s(&run["id"]),
        s(&run["workflow"]),
        s(&run["status"]),
        opt("error", &run["error"]),
        opt("finished", &run["finished_at"])
    );
    for step in items(&r["steps"]) {
        let _ = writeln!(
            out,
            "  step {} {}{}{}",
            s(&step["step_id"]),
            s(&step["status"]),
            opt("run", &step["task_run_id"]),
            opt("error", &step["error"])
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_check_says_why_it_does_not_page() {
        let held = serde_json::json!({"project": "trading", "slug": "report", "state": "late",
            "held_by": "trading/db", "snoozed_until": null, "tags": ["nightly"]});
        assert_eq!(check_line(&held), "trading/report late · held by trading/db [nightly]");
        let snoozed = serde_json::json!({"project": "trading", "slug": "feed", "state": "down",
            "held_by": "snooze", "snoozed_until": "2026-12-07T12:00:00Z", "tags": []});
        assert_eq!(check_line(&snoozed), "trading/feed down · snoozed until 2026-12-07T12:00:00Z");
        let plain =
            serde_json::json!({"project": "p", "slug": "s", "state": "up", "last_ping_at": "2026-12-07T01:00:00Z"});
        assert_eq!(check_line(&plain), "p/s up · last ping 2026-12-07T01:00:00Z");
    }
}
