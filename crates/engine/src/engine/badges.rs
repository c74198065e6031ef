//! Status badges: a public, read-only image (and JSON) of how a project's checks, or the checks
//! carrying a tag, are doing, for a README. A badge's address holds a token that is the
//! badge's own credential: an HMAC-SHA256 of its subject (`project:NAME` or `tag:NAME`) under a
//! server-wide key kept in the settings table (`badges.key`, made once at first use, the same
//! for every node; apart from the links' key so that neither use can stand for the other).
//! Knowing one badge's address gives no other's, and a token that does not match its subject
//! is answered exactly as a subject that does not exist.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use agent_os_core::badge::Tally;
use agent_os_core::name::{check_project_name, check_tag};

use super::links::server_mac;
use super::{Engine, EngineError};

/// The settings row holding the key badge tokens are made with (hex, 32 bytes).
const KEY_SETTING: &str = "badges.key";

/// What the MAC of a badge token is for.
const DOMAIN: &str = "agent-os badge v1";

/// Bytes of the MAC a token keeps: 128 bits, 22 characters of base64url.
const TOKEN_BYTES: usize = 16;

/// What a badge is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BadgeSubject {
    /// A project's checks (its own and those of the schedules it keeps elsewhere).
    Project(String),
    /// The checks carrying a tag, across projects.
    Tag(String),
}

impl BadgeSubject {
    /// What the token signs.
    fn signed(&self) -> String {
        match self {
            BadgeSubject::Project(name) => format!("project:{name}"),
            BadgeSubject::Tag(tag) => format!("tag:{tag}"),
        }
    }

    /// The project's name or the tag: the badge's default label.
    pub fn name(&self) -> &str {
        match self {
            BadgeSubject::Project(name) | BadgeSubject::Tag(name) => name,
        }
    }

    /// Whether the name could be one: a project name, or a tag.
    fn well_formed(&self) -> bool {
        match self {
            BadgeSubject::Project(name) => check_project_name(name).is_ok(),
            BadgeSubject::Tag(tag) => check_tag(tag).is_ok(),
        }
    }
}

/// A badge a caller may show, with its token and what it says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadgeLink {
    pub subject: BadgeSubject,
    pub token: String,
    pub tally: Tally,
}

impl Engine {
    /// The token of `subject`'s badge: the same on every call and every node.
    pub async fn badge_token(&self, subject: &BadgeSubject) -> Result<String, EngineError> {
        let key = self.server_key(KEY_SETTING).await?;
        token(&key, subject)
    }

    /// What `subject`'s badge says, if `token` is its token and the subject exists; `None`
    /// otherwise, alike for a wrong token and an unknown project (the token is compared in
    /// constant time, before anything is looked up). A tag no check carries (any more) says
    /// "no checks": a README's badge keeps working while checks come and go.
    pub async fn open_badge(&self, subject: &BadgeSubject, token: &str) -> Result<Option<Tally>, EngineError> {
        let key = self.server_key(KEY_SETTING).await?;
        let expected = self::token(&key, subject)?;
        if !bool::from(expected.as_bytes().ct_eq(token.as_bytes())) || !subject.well_formed() {
            return Ok(None);
        }
        self.badge_tally(subject).await
    }

    /// The tally of `subject`'s checks now; `None` for a project that is not registered.
    async fn badge_tally(&self, subject: &BadgeSubject) -> Result<Option<Tally>, EngineError> {
        let checks = match subject {
            BadgeSubject::Project(name) => {
                if self.store.get_project(name).await?.is_none() {
                    return Ok(None);
                }
                self.store.list_checks(Some(name)).await?
            }
            BadgeSubject::Tag(tag) => self.store.list_tagged_checks(tag, None).await?,
        };
        Ok(Some(Tally::of(checks.iter().map(|c| c.state))))
    }

    /// The badges a caller may show: with `project`, that project's and one for each tag its
    /// checks carry; without, every project's and every tag's. By project name, then by tag.
    pub async fn list_badges(&self, project: Option<&str>) -> Result<Vec<BadgeLink>, EngineError> {
        let key = self.server_key(KEY_SETTING).await?;
        let projects: Vec<String> = match project {
            Some(name) => {
                if self.store.get_project(name).await?.is_none() {
                    return Err(EngineError::NotFound(format!("project {name:?} is not registered")));
                }
                vec![name.to_string()]
            }
            None => self.store.list_projects().await?.into_iter().map(|p| p.name).collect(),
        };
        let checks = self.store.list_checks(project).await?;
        let mut tags: Vec<String> = checks.iter().flat_map(|c| c.tags.iter().cloned()).collect();
        tags.sort();
        tags.dedup();
        let mut out = Vec::with_capacity(projects.len() + tags.len());
        for name in projects {
            let tally = Tally::of(checks.iter().filter(|c| c.project == name).map(|c| c.state));
            let subject = BadgeSubject::Project(name);
            out.push(BadgeLink { token: token(&key, &subject)?, subject, tally });
        }
        for tag in tags {
            let subject = BadgeSubject::Tag(tag);
            // A tag's badge counts every project's checks, not only the caller's.
            let Some(tally) = self.badge_tally(&subject).await? else { continue };
            out.push(BadgeLink { token: token(&key, &subject)?, subject, tally });
        }
        Ok(out)
    }
}

fn token(key: &[u8], subject: &BadgeSubject) -> Result<String, EngineError> {
    let mac = server_mac(key, DOMAIN, &subject.signed())?;
    Ok(URL_SAFE_NO_PAD.encode(&mac[..TOKEN_BYTES]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_token_is_its_subjects_alone() {
        let key = [3u8; 32];
        let p = token(&key, &BadgeSubject::Project("trading".into())).unwrap();
        assert_eq!(p.len(), 22);
        assert_eq!(p, token(&key, &BadgeSubject::Project("trading".into())).unwrap(), "stable");
        assert_ne!(p, token(&key, &BadgeSubject::Tag("trading".into())).unwrap(), "a tag is not a project");
        assert_ne!(p, token(&key, &BadgeSubject::Project("cortana".into())).unwrap());
        assert_ne!(p, token(&[4u8; 32], &BadgeSubject::Project("trading".into())).unwrap(), "another key");
        assert!(p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{p}");
    }
}
