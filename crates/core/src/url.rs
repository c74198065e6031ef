//! Percent-encoding of URL path segments and query values (RFC 3986 unreserved characters
//! pass; everything else is `%XX`).

/// Encodes `s` for use as one path segment or query value.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Checks that `url` is an absolute `http://` or `https://` URL with a host.
pub fn parse_http(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') || host.chars().any(char::is_whitespace) {
        return Err(format!("{url:?} names no host (credentials do not belong in the URL)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_reserved_characters() {
        assert_eq!(super::encode_component("a b&c=1/ü"), "a%20b%26c%3D1%2F%C3%BC");
        assert_eq!(super::encode_component("run-1.x_~"), "run-1.x_~");
    }
}
