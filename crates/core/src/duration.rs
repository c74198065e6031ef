//! Human durations as written in manifests and flags: `500ms`, `10s`, `5m`, `1h30m`, `2d`.

use std::time::Duration;

/// The longest duration accepted (100 years): added to any time Agent OS handles, it stays far
/// inside both the millisecond integers times are stored as and the calendar's year 9999.
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// Parses a duration such as `30m`, `1h30m`, `90s`, `250ms` or `2d`. A bare number is refused,
/// because `30` could mean seconds or minutes.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration; write e.g. 30s, 5m or 1h".into());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("bad duration {text:?}: expected a number at {rest:?}"));
        }
        let number: u128 = rest[..digits].parse().map_err(|_| format!("bad duration {text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis_per_unit: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!("bad duration {text:?}: a number needs a unit (ms, s, m, h or d), e.g. {number}s"));
            }
            other => {
                return Err(format!("bad duration {text:?}: unknown unit {other:?}; use ms, s, m, h or d"));
            }
        };
        total = total
            .checked_add(number.saturating_mul(millis_per_unit))
            .ok_or_else(|| format!("bad duration {text:?}: too large"))?;
    }
    if total > MAX_DURATION.as_millis() {
        return Err(format!("bad duration {text:?}: longer than 36500d (100 years), the longest accepted"));
    }
    Ok(Duration::from_millis(total as u64))
}

/// Formats a duration in the same notation, e.g. `1h30m`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let cases = [
            ("250ms", 250),
            ("10s", 10_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("2d", 172_800_000),
            (" 1m30s ", 90_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)), "{text}");
        }
    }

    #[test]
    fn refuses_ambiguous_or_bad_forms() {
        for bad in ["", "30", "5x", "m", "1h 30m", "99999999999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_duration("30").unwrap_err().contains("needs a unit"));
    }

    #[test]
    fn durations_past_a_hundred_years_are_refused() {
        assert_eq!(parse_duration("36500d"), Ok(MAX_DURATION));
        assert!(parse_duration("36500d1ms").unwrap_err().contains("longer than 36500d"));
        assert!(parse_duration("100000000d").unwrap_err().contains("longer than 36500d"));
    }

    #[test]
    fn formats_round_trip() {
        for text in ["250ms", "10s", "5m", "1h30m", "2d", "1d2h3m4s5ms"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }
}
