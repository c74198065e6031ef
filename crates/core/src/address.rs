//! Which IP addresses are a host on the public internet, and which are special: this machine, a
//! private network, documentation, benchmarking, translation prefixes and the like. Outbound
//! channels (webhooks, SMTP) refuse special addresses unless the user allows them, so that a
//! URL in a config cannot make Agent OS reach into the network it runs in.
//!
//! The tables follow the IANA special-purpose address registries (written here by hand, checked
//! by the tests below):
//! - IPv4: <https://www.iana.org/assignments/iana-ipv4-special-registry/> (RFC 6890), plus
//!   multicast, 224.0.0.0/4 (<https://www.iana.org/assignments/multicast-addresses/>);
//! - IPv6: <https://www.iana.org/assignments/iana-ipv6-special-registry/> (RFC 6890), plus
//!   whatever lies outside global unicast, 2000::/3
//!   (<https://www.iana.org/assignments/ipv6-address-space/>).
//!
//! An entry counts as special when the registry does not mark it "globally reachable"; the
//! few globally reachable blocks nested inside a special one (anycast services) are listed as
//! exceptions. Addresses that carry an IPv4 address inside an IPv6 one (IPv4-mapped
//! `::ffff:a.b.c.d`, the NAT64 well-known prefix `64:ff9b::/96`, 6to4 `2002::/16`) are judged by
//! the IPv4 address they lead to, so `64:ff9b::7f00:1` is loopback while a public address
//! reached through DNS64 stays public.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One block of a registry: its first address, its prefix length and what it is.
struct Block<T> {
    net: T,
    len: u32,
    name: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u32, name: &'static str) -> Block<u32> {
    Block { net: u32::from_be_bytes([a, b, c, d]), len, name }
}

const fn v6(segments: [u16; 8], len: u32, name: &'static str) -> Block<u128> {
    let mut net = 0u128;
    let mut i = 0;
    while i < 8 {
        net = (net << 16) | segments[i] as u128;
        i += 1;
    }
    Block { net, len, name }
}

/// IPv4 blocks that are not globally reachable; the first match names the address.
const V4_SPECIAL: &[Block<u32>] = &[
    v4(0, 0, 0, 0, 8, "\"this network\" (RFC 791)"),
    v4(10, 0, 0, 0, 8, "a private network (RFC 1918)"),
    v4(100, 64, 0, 0, 10, "shared address space, carrier-grade NAT (RFC 6598)"),
    v4(127, 0, 0, 0, 8, "loopback, this machine (RFC 1122)"),
    v4(169, 254, 0, 0, 16, "link-local, e.g. a cloud metadata service (RFC 3927)"),
    v4(172, 16, 0, 0, 12, "a private network (RFC 1918)"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments (RFC 6890)"),
    v4(192, 0, 2, 0, 24, "documentation, TEST-NET-1 (RFC 5737)"),
    v4(192, 88, 99, 0, 24, "the deprecated 6to4 relay anycast (RFC 7526)"),
    v4(192, 168, 0, 0, 16, "a private network (RFC 1918)"),
    v4(198, 18, 0, 0, 15, "benchmarking (RFC 2544)"),
    v4(198, 51, 100, 0, 24, "documentation, TEST-NET-2 (RFC 5737)"),
    v4(203, 0, 113, 0, 24, "documentation, TEST-NET-3 (RFC 5737)"),
    v4(224, 0, 0, 0, 4, "multicast (RFC 5771)"),
    v4(255, 255, 255, 255, 32, "limited broadcast (RFC 919)"),
    v4(240, 0, 0, 0, 4, "reserved (RFC 1112)"),
];

/// Globally reachable IPv4 blocks inside a special one.
const V4_GLOBAL: &[Block<u32>] = &[
    v4(192, 0, 0, 9, 32, "Port Control Protocol anycast (RFC 7723)"),
    v4(192, 0, 0, 10, 32, "TURN anycast (RFC 8155)"),
];

/// IPv6 blocks that are not globally reachable; the first match names the address.
const V6_SPECIAL: &[Block<u128>] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "the unspecified address (RFC 4291)"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback, this machine (RFC 4291)"),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 96, "IPv4-compatible, deprecated (RFC 4291)"),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use IPv4/IPv6 translation (RFC 8215)"),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only (RFC 6666)"),
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "the dummy IPv6 prefix (RFC 9780)"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo (RFC 4380)"),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking (RFC 5180)"),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "IETF protocol assignments (RFC 2928)"),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation (RFC 3849)"),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation (RFC 9637)"),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing SIDs (RFC 9602)"),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "a unique local (private) network (RFC 4193)"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local (RFC 4291)"),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local, deprecated (RFC 3879)"),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast (RFC 4291)"),
];

/// Globally reachable IPv6 blocks inside a special one (all within 2001::/23).
const V6_GLOBAL: &[Block<u128>] = &[
    v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128, "Port Control Protocol anycast (RFC 7723)"),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128, "TURN anycast (RFC 8155)"),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 3], 128, "DNS-SD service registration anycast (RFC 9665)"),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT (RFC 7450)"),
    v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48, "AS112-v6 (RFC 7535)"),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2 (RFC 7343)"),
    v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28, "drone remote ID (RFC 9374)"),
];

fn find<T>(table: &'static [Block<T>], bits: T, width: u32) -> Option<&'static Block<T>>
where
    T: Copy + PartialEq + std::ops::Shr<u32, Output = T>,
{
    // Compare the top `len` bits by shifting both sides right by the rest.
    table.iter().find(|b| b.len == 0 || (bits >> (width - b.len)) == (b.net >> (width - b.len)))
}

/// What kind of special address `ip` is, in words (with the RFC that sets it apart), or `None`
/// when it is a public internet address.
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => special_v4(a),
        IpAddr::V6(a) => special_v6(a),
    }
}

/// Whether `ip` is this machine, a private network or otherwise not a public internet host.
pub fn is_special(ip: IpAddr) -> bool {
    special_purpose(ip).is_some()
}

fn special_v4(a: Ipv4Addr) -> Option<&'static str> {
    let bits = a.to_bits();
    if find(V4_GLOBAL, bits, 32).is_some() {
        return None;
    }
    find(V4_SPECIAL, bits, 32).map(|b| b.name)
}

fn special_v6(a: Ipv6Addr) -> Option<&'static str> {
    let bits = a.to_bits();
    let low32 = Ipv4Addr::from_bits(bits as u32);
    // IPv4-mapped (::ffff:0:0/96) and the NAT64 well-known prefix (64:ff9b::/96, RFC 6052)
    // lead to the IPv4 address in their last 32 bits; 6to4 (2002::/16, RFC 3056) to the one
    // in bits 16..48.
    if bits >> 32 == 0xffff || bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return special_v4(low32);
    }
    if bits >> 112 == 0x2002 {
        return special_v4(Ipv4Addr::from_bits((bits >> 80) as u32));
    }
    if find(V6_GLOBAL, bits, 128).is_some() {
        return None;
    }
    if let Some(b) = find(V6_SPECIAL, bits, 128) {
        return Some(b.name);
    }
    if bits >> 125 != 0b001 {
        return Some("outside the global unicast range 2000::/3 (RFC 4291)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(ip: &str) -> Option<&'static str> {
        special_purpose(ip.parse().unwrap())
    }

    #[test]
    fn nat64_benchmarking_reserved_and_other_special_addresses_are_not_public() {
        let special = [
            ("0.1.2.3", "this network"),
            ("10.1.2.3", "private"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.255", "carrier-grade NAT"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("169.254.169.254", "link-local"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.8", "IETF protocol"),
            ("192.0.0.170", "IETF protocol"),
            ("192.0.2.1", "TEST-NET-1"),
            ("192.88.99.1", "6to4 relay"),
            ("192.168.1.1", "private"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.254", "benchmarking"),
            ("198.51.100.7", "TEST-NET-2"),
            ("203.0.113.9", "TEST-NET-3"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("250.1.2.3", "reserved"),
            ("255.255.255.255", "broadcast"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::127.0.0.1", "IPv4-compatible"),
            ("::8.8.8.8", "IPv4-compatible"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("64:ff9b::c612:1", "benchmarking"),
            ("64:ff9b:1::8.8.8.8", "local-use IPv4/IPv6 translation"),
            ("100::1", "discard-only"),
            ("2001::1", "Teredo"),
            ("2001:2::1", "benchmarking"),
            ("2001:10::1", "IETF protocol"),
            ("2001:db8::1", "documentation"),
            ("2002:7f00:1::1", "loopback"),
            ("2002:c0a8:101::1", "private"),
            ("3fff::1", "documentation"),
            ("5f00::1", "segment routing"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("4000::1", "outside the global unicast range"),
        ];
        for (ip, what) in special {
            let got = kind(ip);
            assert!(got.is_some_and(|k| k.contains(what)), "{ip}: {got:?}, expected {what:?}");
        }
    }

    #[test]
    fn public_addresses_and_global_anycast_inside_special_blocks_are_public() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "162.159.128.233",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.0.9",
            "192.0.0.10",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
            "2001:1::1",
            "2001:3::1",
            "2001:4:112::1",
            "2001:20::1",
            "3ffe::1",
        ] {
            assert_eq!(kind(ip), None, "{ip}");
        }
    }
}
