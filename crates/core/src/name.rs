//! Names users pick: project slugs, task names and check tags.

/// Checks a project name: 1–63 characters of `[a-z0-9-]`, starting with a letter or digit.
pub fn check_project_name(name: &str) -> Result<(), String> {
    check(name, "project name", |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks a task name: 1–63 characters of `[a-z0-9_-]`, starting with a letter or digit.
pub fn check_task_name(name: &str) -> Result<(), String> {
    check(name, "task name", |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Most tags one check may carry.
pub const MAX_TAGS: usize = 10;

/// Longest tag.
pub const MAX_TAG_LEN: usize = 32;

/// Checks a check tag: 1–32 characters of `[a-z0-9_-]`, starting with a letter or digit.
pub fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err(format!("a tag is 1 to {MAX_TAG_LEN} characters long, got an empty one"));
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("tag {tag:?} is {} characters long; a tag has at most {MAX_TAG_LEN}", tag.len()));
    }
    check(tag, "tag", |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn check(name: &str, what: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!("{what} must be 1 to 63 characters long, got {}", name.len()));
    }
    if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
        return Err(format!("{what} {name:?} contains {bad:?}; use lower-case letters, digits and '-'"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("{what} {name:?} must start with a letter or a digit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        for ok in ["cortana", "image-workflow", "a", "p2"] {
            assert!(check_project_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Cortana", "-x", "a_b", "a b", &"x".repeat(64)] {
            assert!(check_project_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn task_names() {
        assert!(check_task_name("daily_update").is_ok());
        assert!(check_task_name("_x").is_err());
        assert!(check_task_name("a.b").is_err());
    }

    #[test]
    fn tags() {
        for ok in ["nightly", "trading", "team_a", "p-2", "0", &"x".repeat(MAX_TAG_LEN)] {
            assert!(check_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Nightly", "-x", "_x", "a b", "a.b", "a/b", "ü", &"x".repeat(MAX_TAG_LEN + 1)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }
}
