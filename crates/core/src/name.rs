//! Names users pick: project slugs and task names.

/// Checks a project name: 1–63 characters of `[a-z0-9-]`, starting with a letter or digit.
pub fn check_project_name(name: &str) -> Result<(), String> {
    check(name, "project name", |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks a task name: 1–63 characters of `[a-z0-9_-]`, starting with a letter or digit.
pub fn check_task_name(name: &str) -> Result<(), String> {
    check(name, "task name", |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
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
}
