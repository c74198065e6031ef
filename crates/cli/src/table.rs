//! Plain-text tables for human output (`--json` gives the API's JSON instead).

/// Renders rows under a header, columns padded to their widest cell.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// A short, local-time-free rendering of an RFC 3339 time: `2026-11-25 10:00:03`.
pub fn short_time(t: &str) -> String {
    t.get(..19).map(|s| s.replace('T', " ")).unwrap_or_else(|| t.to_string())
}

pub fn duration_ms(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms}ms"),
        Some(ms) if ms < 60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        Some(ms) => agent_os_core::format_duration(std::time::Duration::from_millis(ms as u64 / 1000 * 1000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns() {
        let t = render(&["NAME", "X"], &[vec!["cortana".into(), "1".into()], vec!["a".into(), "22".into()]]);
        assert_eq!(t, "NAME     X\ncortana  1\na        22\n");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms(Some(12)), "12ms");
        assert_eq!(duration_ms(Some(1500)), "1.5s");
        assert_eq!(duration_ms(Some(90_500)), "1m30s");
        assert_eq!(duration_ms(None), "-");
    }
}
