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

/// Decodes one percent-encoded path segment or query value. A `%` not followed by two hex
/// digits, or bytes that are not UTF-8 once decoded, are refused.
pub fn decode_component(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
            let byte = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a % is not followed by two hex digits; write a literal % as %25")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the percent-encoding is not UTF-8".to_string())
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

    #[test]
    fn decoding_refuses_broken_escapes_and_non_utf8() {
        assert_eq!(super::decode_component("a%20b%2F%C3%BC").as_deref(), Ok("a b/ü"));
        assert_eq!(super::decode_component("nul%00").as_deref(), Ok("nul\0"));
        assert!(super::decode_component("%FF").unwrap_err().contains("not UTF-8"));
        assert!(super::decode_component("100%").unwrap_err().contains("two hex digits"));
        assert!(super::decode_component("%zz").is_err());
    }
}
