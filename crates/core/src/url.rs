//! URL components and addresses: percent-encoding of path segments and query values (RFC 3986
//! unreserved characters pass; everything else is `%XX`), their strict decoding, and the check
//! of an `http(s)://` address. The encoding is the `percent-encoding` crate's and the address
//! is read by the `url` crate (WHATWG rules); what is ours is only how strict we are.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Everything but RFC 3986's unreserved characters (letters, digits, `-`, `.`, `_`, `~`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Encodes `s` for use as one path segment or query value.
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// Decodes one percent-encoded path segment or query value. A `%` not followed by two hex
/// digits, or bytes that are not UTF-8 once decoded, are refused (the crate's decoder would
/// keep a broken escape as it is, which would let `%zz` and `%25zz` mean the same).
pub fn decode_component(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    for (i, _) in s.match_indices('%') {
        if !bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            return Err("a % is not followed by two hex digits; write a literal % as %25".into());
        }
    }
    percent_decode_str(s)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| "the percent-encoding is not UTF-8".to_string())
}

/// Reads `text` as an absolute `http://` or `https://` URL that names a host and carries no
/// credentials. The scheme and its `//` must be written out: the WHATWG parser would also take
/// `http:host` or `http:///host`, which are typos here.
pub fn parse_http(text: &str) -> Result<url::Url, String> {
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(|| format!("{text:?} is not an http:// or https:// URL"))?;
    let no_host = || format!("{text:?} names no host (credentials do not belong in the URL)");
    if rest.starts_with(['/', '?', '#']) || rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(no_host());
    }
    let url = url::Url::parse(text).map_err(|e| match e {
        url::ParseError::EmptyHost => no_host(),
        e => format!("{text:?} is not a valid URL: {e}"),
    })?;
    if url.host_str().is_none_or(str::is_empty) || !url.username().is_empty() || url.password().is_some() {
        return Err(no_host());
    }
    Ok(url)
}

/// The host and port of an address as written (`scheme://user:pw@host:port/path` gives
/// `host:port`), without its user information, path or query, which may carry a credential.
/// The text need not be a valid URL: this is for showing where an address points.
pub fn host_of(text: &str) -> &str {
    let after = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once('@').map_or(authority, |(_, host)| host)
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
        assert!(super::decode_component("%2").is_err());
        assert!(super::decode_component("é%").is_err(), "a % at the end after a multi-byte character");
    }

    #[test]
    fn the_host_of_an_address_leaves_its_credentials_out() {
        assert_eq!(
            super::host_of("https://user:pw@hooks.example.test:8443/services/SECRET"),
            "hooks.example.test:8443"
        );
        assert_eq!(super::host_of("smtp://smtp.example.com:587"), "smtp.example.com:587");
        assert_eq!(super::host_of("a:b@example.com?x"), "example.com");
    }

    #[test]
    fn http_urls_need_a_host_and_no_credentials() {
        let ok = super::parse_http("http://127.0.0.1:8000/healthz").unwrap();
        assert_eq!((ok.host_str(), ok.port()), (Some("127.0.0.1"), Some(8000)));
        assert!(super::parse_http("https://example.com").is_ok());
        for (bad, says) in [
            ("ftp://example.com", "not an http"),
            ("http:example.com", "not an http"),
            ("http://", "names no host"),
            ("http:///x", "names no host"),
            ("https://user:pw@example.com/", "names no host"),
            ("http://exa mple.com/", "names no host"),
            ("http://[::1/", "not a valid URL"),
            ("http://example.com:99999/", "not a valid URL"),
        ] {
            let e = super::parse_http(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
