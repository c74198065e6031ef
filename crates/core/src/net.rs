//! Network addresses as users write them in `config.yaml`: an address (`10.0.0.7`, `::1`) or a
//! range in CIDR notation (`10.0.0.0/8`, `fd00::/8`), and what a request's forwarding headers
//! say (the client's address, whether the browser used HTTPS) when it came through proxies the
//! operator trusts.

use std::net::IpAddr;

/// An address range: every address whose first `prefix` bits are those of `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    addr: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Reads `10.0.0.0/8`, `fd00::/8`, or a single address (a range of one).
    pub fn parse(text: &str) -> Result<IpRange, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("{text:?} is not an IP address or range; write e.g. 10.0.0.7, 10.0.0.0/8 or fd00::/8")
        })?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{text:?}: the prefix length must be a number from 0 to {max}")),
            },
        };
        Ok(IpRange { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => same_prefix(u32::from(a).into(), u32::from(b).into(), 32, self.prefix),
            (IpAddr::V6(a), IpAddr::V6(b)) => same_prefix(u128::from(a), u128::from(b), 128, self.prefix),
            _ => false,
        }
    }
}

impl std::fmt::Display for IpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn same_prefix(a: u128, b: u128, bits: u32, prefix: u8) -> bool {
    let prefix = u32::from(prefix).min(bits);
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (a >> shift) == (b >> shift)
}

/// The client a request stands for. Without trusted proxies it is the TCP peer, whatever the
/// headers say (anyone can write `X-Forwarded-For`). When the peer is a trusted proxy, the
/// `X-Forwarded-For` entries are read from the right, past every trusted proxy, and the first
/// address that is not one is the client: entries left of it were written by the client itself
/// and prove nothing. An entry that is not an address stops the walk at what was read so far.
pub fn client_address<'a>(peer: IpAddr, forwarded_for: impl Iterator<Item = &'a str>, trusted: &[IpRange]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|h| h.split(',')).map(str::trim).filter(|h| !h.is_empty()).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// Whether the browser reached the proxy over HTTPS, as `X-Forwarded-Proto` says: only when
/// the TCP peer is a trusted proxy, since anyone else can write the header. The last value is
/// the one the peer itself wrote (a proxy that appends leaves the client's own words to its
/// left); several header lines read as one list.
pub fn forwarded_https<'a>(peer: IpAddr, forwarded_proto: impl Iterator<Item = &'a str>, trusted: &[IpRange]) -> bool {
    if !trusted.iter().any(|r| r.contains(peer.to_canonical())) {
        return false;
    }
    let last = forwarded_proto.flat_map(|h| h.split(',')).map(str::trim).filter(|p| !p.is_empty()).last();
    last.is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_contain() {
        let cases = [
            ("10.0.0.0/8", "10.200.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.0.0.7", "10.0.0.7", true),
            ("10.0.0.7", "10.0.0.8", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("127.0.0.1", "::ffff:127.0.0.1", true),
            ("::1", "127.0.0.1", false),
        ];
        for (range, addr, inside) in cases {
            assert_eq!(IpRange::parse(range).unwrap().contains(ip(addr)), inside, "{range} ∋ {addr}");
        }
        for bad in ["10.0.0.0/33", "fd00::/129", "localhost", "10.0.0.0/x", ""] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let trusted = [IpRange::parse("10.0.0.0/8").unwrap()];
        let cases: [(&str, &[&str], &[IpRange], &str); 7] = [
            // No proxies trusted: the header is ignored.
            ("203.0.113.9", &["198.51.100.1"], &[], "203.0.113.9"),
            // The peer is not a trusted proxy: the header is ignored.
            ("203.0.113.9", &["198.51.100.1"], &trusted, "203.0.113.9"),
            // Through a trusted proxy: the address it saw.
            ("10.0.0.2", &["198.51.100.1"], &trusted, "198.51.100.1"),
            // The client wrote its own entry first; only what trusted hops added counts.
            ("10.0.0.2", &["1.1.1.1, 198.51.100.1, 10.0.0.3"], &trusted, "198.51.100.1"),
            // Two header lines read as one list.
            ("10.0.0.2", &["1.1.1.1", "198.51.100.1:4711"], &trusted, "198.51.100.1"),
            // No header: the proxy itself.
            ("10.0.0.2", &[], &trusted, "10.0.0.2"),
            // Garbage stops the walk.
            ("10.0.0.2", &["198.51.100.1, nonsense"], &trusted, "10.0.0.2"),
        ];
        for (peer, headers, trusted, want) in cases {
            assert_eq!(client_address(ip(peer), headers.iter().copied(), trusted), ip(want), "{peer} {headers:?}");
        }
    }

    #[test]
    fn https_is_taken_from_a_trusted_proxy_only() {
        let trusted = [IpRange::parse("10.0.0.0/8").unwrap()];
        let cases: [(&str, &[&str], &[IpRange], bool); 8] = [
            // The proxy says the browser used HTTPS.
            ("10.0.0.2", &["https"], &trusted, true),
            ("10.0.0.2", &["HTTPS"], &trusted, true),
            ("10.0.0.2", &["http"], &trusted, false),
            // Anyone else can write the header: ignored.
            ("203.0.113.9", &["https"], &trusted, false),
            ("10.0.0.2", &["https"], &[], false),
            // The peer's own word is the last one; the client's to its left proves nothing.
            ("10.0.0.2", &["https, http"], &trusted, false),
            ("10.0.0.2", &["http", "https"], &trusted, true),
            // No header: plain HTTP.
            ("10.0.0.2", &[], &trusted, false),
        ];
        for (peer, headers, trusted, want) in cases {
            assert_eq!(forwarded_https(ip(peer), headers.iter().copied(), trusted), want, "{peer} {headers:?}");
        }
    }
}
