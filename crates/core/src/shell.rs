//! Shell words: a word written so that a POSIX shell reads it back as it is, for the commands
//! Agent OS shows or writes for a user to paste (a launchd job's command line, a path in a
//! suggested fix, the directory `agent-os init` was given).

/// `word` as it is when it holds only characters that need no quoting, else in single quotes
/// (a `'` in it written `'\''`). The empty word is `''`.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty() && word.bytes().all(|c| c.is_ascii_alphanumeric() || b"/._-+@%,:=".contains(&c));
    if plain { word.to_string() } else { format!("'{}'", word.replace('\'', "'\\''")) }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn words_are_quoted_only_when_they_must_be() {
        assert_eq!(quote("/home/me/cortana/.env"), "/home/me/cortana/.env");
        assert_eq!(quote("user@host:port,a=b+c%d"), "user@host:port,a=b+c%d");
        assert_eq!(quote("/Users/me/Cortana personal AI"), "'/Users/me/Cortana personal AI'");
        assert_eq!(quote("/a/it's $HOME"), "'/a/it'\\''s $HOME'");
        assert_eq!(quote("ü"), "'ü'");
        assert_eq!(quote(""), "''");
    }
}
