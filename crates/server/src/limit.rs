//! Slowing down guessing without locking out the owner: failures (a wrong login, a webhook
//! that does not verify) are counted per client address, per credential tried and in total, in
//! fixed one-minute windows. A client over its own limit is refused; other clients are not,
//! so ten wrong guesses from one address never lock the admin out from another. The limit per
//! credential caps how fast many addresses together can guess one secret, and the total is a
//! high ceiling on the work all failures may cause. Memory is bounded: at most
//! [`MAX_CLIENTS`] addresses (IPv6 counted per /64, which one host usually holds) and
//! [`MAX_CREDENTIALS`] credentials are tracked; when full, expired windows are dropped, and a
//! newcomer that still finds no room is counted only in the total and its credential.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;

use agent_os_core::net::{IpRange, client_address};

pub const WINDOW: Duration = Duration::from_secs(60);
pub const MAX_CLIENTS: usize = 10_000;
pub const MAX_CREDENTIALS: usize = 1_000;

/// Failures allowed per window.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub per_client: u32,
    pub per_credential: u32,
    pub total: u32,
}

/// Dashboard logins: a person mistypes a few times; a guesser needs millions.
pub const LOGIN: Limits = Limits { per_client: 10, per_credential: 100, total: 1_000 };
/// Inbound webhooks: a sender with a stale secret retries, so more per client.
pub const WEBHOOK: Limits = Limits { per_client: 60, per_credential: 600, total: 6_000 };

/// Which limit a refused request is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    Client,
    Credential,
    Total,
}

/// A refusal: which limit, and when the window that holds it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub over: Over,
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for a `Retry-After` header (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    count: u32,
}

impl Window {
    fn current(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.start) < WINDOW
    }

    fn left(&self, now: Instant) -> Duration {
        WINDOW.saturating_sub(now.saturating_duration_since(self.start))
    }
}

#[derive(Default)]
struct Counts {
    total: Option<Window>,
    clients: HashMap<IpAddr, Window>,
    credentials: HashMap<String, Window>,
}

/// Counts of recent failures. One per kind of secret (logins, webhooks), held by the server.
pub struct FailureLimiter {
    limits: Limits,
    /// One lock for the three counts: a check and its note are each a few map operations.
    counts: Mutex<Counts>,
}

impl FailureLimiter {
    pub fn new(limits: Limits) -> Self {
        FailureLimiter { limits, counts: Mutex::new(Counts::default()) }
    }

    /// Whether `client` may try `credential` now.
    pub fn check(&self, client: IpAddr, credential: &str, now: Instant) -> Result<(), Limited> {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let over = |w: Option<&Window>, limit: u32, over: Over| match w {
            Some(w) if w.current(now) && w.count >= limit => Err(Limited { over, retry_after: w.left(now) }),
            _ => Ok(()),
        };
        over(counts.clients.get(&client_key(client)), self.limits.per_client, Over::Client)?;
        over(counts.credentials.get(credential), self.limits.per_credential, Over::Credential)?;
        over(counts.total.as_ref(), self.limits.total, Over::Total)
    }

    /// Counts one failure of `client` with `credential`.
    pub fn note_failure(&self, client: IpAddr, credential: &str, now: Instant) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match &mut counts.total {
            Some(w) => count(w, now),
            None => counts.total = Some(Window { start: now, count: 1 }),
        }
        bump_in(&mut counts.clients, &client_key(client), MAX_CLIENTS, now);
        bump_in(&mut counts.credentials, credential, MAX_CREDENTIALS, now);
    }

    /// How many clients and credentials are tracked now (for tests of the bound).
    pub fn tracked(&self) -> (usize, usize) {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        (counts.clients.len(), counts.credentials.len())
    }
}

fn count(w: &mut Window, now: Instant) {
    if w.current(now) {
        w.count = w.count.saturating_add(1);
    } else {
        *w = Window { start: now, count: 1 };
    }
}

/// Counts a failure of `key`, making its entry if there is room (after dropping windows that
/// have ended); without room it is not tracked.
fn bump_in<K, Q>(map: &mut HashMap<K, Window>, key: &Q, max: usize, now: Instant)
where
    K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
    Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
{
    if let Some(w) = map.get_mut(key) {
        count(w, now);
        return;
    }
    if map.len() >= max {
        map.retain(|_, w| w.current(now));
        if map.len() >= max {
            return;
        }
    }
    map.insert(key.to_owned(), Window { start: now, count: 1 });
}

/// IPv6 clients are counted per /64: one host or home network usually holds a whole /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// The client a request came from, as [`client_of`] finds it.
#[derive(Clone, Copy, Debug)]
pub struct Client(pub IpAddr);

impl axum::extract::FromRequestParts<crate::AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &crate::AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Client(client_of(&parts.extensions, &parts.headers, &st.trusted_proxies)))
    }
}

/// The TCP peer of a request, when the router was served with connection info.
pub fn peer_of(extensions: &axum::http::Extensions) -> Option<std::net::SocketAddr> {
    extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|ConnectInfo(peer)| *peer)
}

/// The client address of a request: the TCP peer, or, behind a trusted proxy, what the proxies
/// say (`api.trusted_proxies`). Without a known peer (a router served without connection
/// info), the unspecified address stands for every such client.
pub fn client_of(extensions: &axum::http::Extensions, headers: &HeaderMap, trusted: &[IpRange]) -> IpAddr {
    let Some(ConnectInfo(peer)) = extensions.get::<ConnectInfo<std::net::SocketAddr>>() else {
        return IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    };
    let forwarded = headers.get_all("x-forwarded-for").into_iter().filter_map(|v| v.to_str().ok());
    client_address(peer.ip(), forwarded, trusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const SMALL: Limits = Limits { per_client: 3, per_credential: 5, total: 8 };

    #[test]
    fn one_clients_failures_do_not_refuse_another() {
        let l = FailureLimiter::new(SMALL);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check(ip("192.0.2.1"), "password", t0).is_ok());
            l.note_failure(ip("192.0.2.1"), "password", t0);
        }
        let refused = l.check(ip("192.0.2.1"), "password", t0).unwrap_err();
        assert_eq!((refused.over, refused.retry_after_secs()), (Over::Client, 60));
        assert!(l.check(ip("192.0.2.2"), "password", t0).is_ok(), "another client goes on");
        // The window ends: the first client may try again.
        assert!(l.check(ip("192.0.2.1"), "password", t0 + WINDOW).is_ok());
    }

    #[test]
    fn many_clients_together_meet_the_credential_limit_then_the_total() {
        let l = FailureLimiter::new(SMALL);
        let t0 = Instant::now();
        for i in 0..5 {
            l.note_failure(ip(&format!("192.0.2.{i}")), "password", t0);
        }
        assert_eq!(l.check(ip("198.51.100.1"), "password", t0).unwrap_err().over, Over::Credential);
        assert!(l.check(ip("198.51.100.1"), "token", t0).is_ok(), "another credential is not held up");
        for i in 0..3 {
            l.note_failure(ip(&format!("192.0.2.{}", 10 + i)), "token", t0);
        }
        assert_eq!(l.check(ip("198.51.100.1"), "token", t0).unwrap_err().over, Over::Total);
    }

    #[test]
    fn ipv6_clients_count_per_64_and_memory_stays_bounded() {
        let l = FailureLimiter::new(Limits { per_client: 2, per_credential: u32::MAX, total: u32::MAX });
        let t0 = Instant::now();
        l.note_failure(ip("2001:db8:1:2::1"), "p", t0);
        l.note_failure(ip("2001:db8:1:2:ffff::9"), "p", t0);
        assert_eq!(l.check(ip("2001:db8:1:2::77"), "p", t0).unwrap_err().over, Over::Client);
        assert!(l.check(ip("2001:db8:1:3::1"), "p", t0).is_ok());

        for i in 0..(MAX_CLIENTS as u32 + 500) {
            l.note_failure(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)), &format!("c{}", i % 2000), t0);
        }
        assert_eq!(l.tracked(), (MAX_CLIENTS, MAX_CREDENTIALS), "full, and no further");
        // Once their windows end, old entries make room for new ones.
        l.note_failure(ip("203.0.113.5"), "q", t0 + WINDOW);
        assert_eq!(l.tracked(), (1, 1));
    }
}
