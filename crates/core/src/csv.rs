//! CSV records (RFC 4180) safe to open in a spreadsheet: the one writer behind the dashboard's
//! cost export and the CLI's `cost report --csv`. A cell that a spreadsheet would run as a
//! formula is disarmed, since what we export holds text that projects and users chose.

/// Appends one field to `out`: a value a spreadsheet would take for a formula (starting with
/// `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`; a value with a quote,
/// comma or line break is quoted, its quotes doubled.
pub fn push_field(out: &mut String, v: &str) {
    let guard = v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = v.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if guard {
        out.push('\'');
    }
    if quote {
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// One record's fields, separated by commas, without a line ending (the caller picks `\r\n`
/// for a file, a plain newline for a terminal).
pub fn record<S: AsRef<str>>(fields: &[S]) -> String {
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(&mut out, f.as_ref());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(v: &str) -> String {
        let mut s = String::new();
        push_field(&mut s, v);
        s
    }

    #[test]
    fn fields_are_quoted_and_formulas_disarmed() {
        assert_eq!(field("openai"), "openai");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(field("+1"), "'+1");
        assert_eq!(field("@cmd"), "'@cmd");
        assert_eq!(field("-2,3"), "\"'-2,3\"");
        assert_eq!(field("\tx"), "'\tx");
        assert_eq!(field("0.5"), "0.5");
        assert_eq!(field(""), "");
    }

    #[test]
    fn records_join_their_fields() {
        assert_eq!(record(&["a", "b,c", "=1"]), "a,\"b,c\",'=1");
        assert_eq!(record::<&str>(&[]), "");
    }
}
