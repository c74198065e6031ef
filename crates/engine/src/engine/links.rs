//! Signed action links: a notification about an incident carries a link that acknowledges it
//! without a login, because the link itself is the credential. The token in the link names
//! the action (`ack`), what it acts on (the incident's id) and when it expires, and carries an
//! HMAC-SHA256 of those under a server-wide key kept in the settings table (`links.key`, made
//! once at first use, the same for every node). A token is good once: its use is recorded
//! (`links.used:NONCE` in the settings table), and a second use is refused with when it was
//! used. Links are only made when the server has a configured public URL
//! ([`EngineConfig::links_url`](crate::EngineConfig)): without one there is no address a
//! reader of the notification could open.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use agent_os_core::alerting::IncidentStatus;
use agent_os_store::IncidentRecord;

use crate::secrets::random_bytes;

use super::{Engine, EngineError};

/// How long a link works after it was made: 7 days.
pub const LINK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The settings row holding the server-wide key links are signed with (hex, 32 bytes).
const KEY_SETTING: &str = "links.key";

/// What the `acked_by` of an incident acknowledged through a link says.
pub const ACKED_BY_LINK: &str = "signed link";

/// The prefix of the settings rows that record used tokens.
pub(super) const USED_PREFIX: &str = "links.used:";

/// Where a token's use is recorded: `AT RANDOM BY`.
fn used_setting(nonce: &str) -> String {
    format!("{USED_PREFIX}{nonce}")
}

/// When the use recorded as `value` happened (ms), if the record reads.
pub(super) fn used_at(value: &str) -> Option<i64> {
    value.split(' ').next()?.parse().ok()
}

/// What a link does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkAction {
    /// Acknowledge an incident (the subject is its id).
    Ack,
    /// Approve a workflow's waiting approval step (the subject is `RUN/STEP`).
    Approve,
    /// Reject it.
    Reject,
}

impl LinkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkAction::Ack => "ack",
            LinkAction::Approve => "approve",
            LinkAction::Reject => "reject",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "ack" => Some(LinkAction::Ack),
            "approve" => Some(LinkAction::Approve),
            "reject" => Some(LinkAction::Reject),
            _ => None,
        }
    }
}

/// What a token says, once its signature is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkClaims {
    pub action: LinkAction,
    pub subject: String,
    pub expires_at: i64,
    nonce: String,
}

/// Why a link is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkRefusal {
    /// Not a token at all, or its signature does not match: cut short or altered.
    Altered,
    /// A good token, for another action or another incident than the address names.
    OtherSubject,
    /// Its time ran out (at `expired_at`).
    Expired { expired_at: i64 },
    /// It was used already, at `at`, by `by`.
    Used { at: i64, by: String },
}

impl LinkRefusal {
    /// What the page says.
    pub fn message(&self) -> String {
        match self {
            LinkRefusal::Altered => "This link is not valid: it was cut short or altered. Open the link from the \
                                     notification exactly as it was sent, or acknowledge in the dashboard."
                .into(),
            LinkRefusal::OtherSubject => "This link belongs to another incident or action than this address names. \
                                          Open the link from the notification exactly as it was sent."
                .into(),
            LinkRefusal::Expired { .. } => "This link has expired. Acknowledge the incident in the dashboard, or \
                                            with `agent-os ack ID`."
                .into(),
            LinkRefusal::Used { .. } => "This link was already used; a link works once.".into(),
        }
    }
}

/// What using a link did.
#[derive(Clone, Debug)]
pub struct LinkUse {
    pub incident: IncidentRecord,
    /// When the link was used.
    pub at: i64,
}

/// HMAC-SHA256 of `payload` under a server-wide key, after `domain`: a line naming what the
/// MAC is for, so that a MAC made for one use (a link, a badge) is never valid for another.
pub(super) fn server_mac(key: &[u8], domain: &str, payload: &str) -> Result<Vec<u8>, EngineError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| EngineError::Unavailable("bad server key".into()))?;
    mac.update(domain.as_bytes());
    mac.update(b"\n");
    mac.update(payload.as_bytes());
    Ok(mac.finalize().into_bytes().to_vec())
}

fn sign(key: &[u8], payload: &str) -> Result<Vec<u8>, EngineError> {
    server_mac(key, "agent-os link v1", payload)
}

/// Reads a token: `ACTION.SUBJECT(base64url).EXPIRES_MS.NONCE.SIGNATURE(base64url)`.
fn read_token(key: &[u8], token: &str) -> Result<Result<LinkClaims, LinkRefusal>, EngineError> {
    let Some((payload, signature)) = token.rsplit_once('.') else { return Ok(Err(LinkRefusal::Altered)) };
    let Ok(given) = URL_SAFE_NO_PAD.decode(signature) else { return Ok(Err(LinkRefusal::Altered)) };
    let expected = sign(key, payload)?;
    if !bool::from(expected.ct_eq(&given)) {
        return Ok(Err(LinkRefusal::Altered));
    }
    let parts: Vec<&str> = payload.split('.').collect();
    let [action, subject, expires, nonce] = parts.as_slice() else { return Ok(Err(LinkRefusal::Altered)) };
    let claims = (|| {
        let action = LinkAction::parse(action)?;
        let subject = String::from_utf8(URL_SAFE_NO_PAD.decode(subject).ok()?).ok()?;
        let expires_at = expires.parse::<i64>().ok()?;
        Some(LinkClaims { action, subject, expires_at, nonce: (*nonce).to_string() })
    })();
    Ok(claims.ok_or(LinkRefusal::Altered))
}

impl Engine {
    /// A server-wide key kept in the settings table under `setting` (hex, 32 bytes): read, or
    /// made at first use (the first node's wins, so every node signs alike).
    pub(super) async fn server_key(&self, setting: &str) -> Result<Vec<u8>, EngineError> {
        let stored = match self.store.get_setting(setting).await? {
            Some(stored) => stored,
            None => self.store.init_setting(setting, &hex::encode(random_bytes::<32>())).await?,
        };
        hex::decode(stored.trim()).map_err(|_| EngineError::Unavailable(format!("the {setting} setting is not hex")))
    }

    /// The server-wide key links are signed with, made at first use.
    async fn link_key(&self) -> Result<Vec<u8>, EngineError> {
        self.server_key(KEY_SETTING).await
    }

    /// A token for `action` on `subject`, good until `expires_at` (ms).
    pub async fn sign_link(&self, action: LinkAction, subject: &str, expires_at: i64) -> Result<String, EngineError> {
        let key = self.link_key().await?;
        let payload = format!(
            "{}.{}.{expires_at}.{}",
            action.as_str(),
            URL_SAFE_NO_PAD.encode(subject.as_bytes()),
            hex::encode(random_bytes::<16>())
        );
        let signature = URL_SAFE_NO_PAD.encode(sign(&key, &payload)?);
        Ok(format!("{payload}.{signature}"))
    }

    /// The absolute address that acknowledges incident `id`, good for [`LINK_TTL`]; `None`
    /// when the server has no configured public URL.
    pub async fn ack_link(&self, id: &str) -> Result<Option<String>, EngineError> {
        let Some(base) = self.cfg().links_url.clone() else { return Ok(None) };
        let expires_at = self.now().saturating_add(LINK_TTL.as_millis() as i64);
        let token = self.sign_link(LinkAction::Ack, id, expires_at).await?;
        Ok(Some(format!("{}/links/incidents/{id}/ack?token={token}", base.trim_end_matches('/'))))
    }

    /// The absolute addresses that approve and reject step `step` of workflow run `run`, good
    /// for [`LINK_TTL`]; `None` when the server has no configured public URL.
    pub async fn approval_links(&self, run: &str, step: &str) -> Result<Option<(String, String)>, EngineError> {
        let Some(base) = self.cfg().links_url.clone() else { return Ok(None) };
        let expires_at = self.now().saturating_add(LINK_TTL.as_millis() as i64);
        let subject = approval_subject(run, step);
        let base = format!("{}/links/workflows/runs/{run}/steps/{step}", base.trim_end_matches('/'));
        let approve = self.sign_link(LinkAction::Approve, &subject, expires_at).await?;
        let reject = self.sign_link(LinkAction::Reject, &subject, expires_at).await?;
        Ok(Some((format!("{base}/approve?token={approve}"), format!("{base}/reject?token={reject}"))))
    }

    /// Records the use of a checked token by `by`: `Err` with the earlier use when another
    /// request used it first.
    pub(super) async fn use_link(&self, claims: &LinkClaims, by: &str) -> Result<Result<(), LinkRefusal>, EngineError> {
        let mine = format!("{} {} {by}", self.now(), hex::encode(random_bytes::<8>()));
        let recorded = self.store.init_setting(&used_setting(&claims.nonce), &mine).await?;
        Ok(if recorded == mine { Ok(()) } else { Err(used_refusal(&recorded)) })
    }

    /// Checks `token` for `action` on `subject` without using it.
    pub async fn check_link(
        &self,
        action: LinkAction,
        subject: &str,
        token: &str,
    ) -> Result<Result<LinkClaims, LinkRefusal>, EngineError> {
        let key = self.link_key().await?;
        let claims = match read_token(&key, token.trim())? {
            Ok(c) => c,
            Err(refused) => return Ok(Err(refused)),
        };
        if claims.action != action || claims.subject != subject {
            return Ok(Err(LinkRefusal::OtherSubject));
        }
        if let Some(used) = self.store.get_setting(&used_setting(&claims.nonce)).await? {
            return Ok(Err(used_refusal(&used)));
        }
        if self.now() >= claims.expires_at {
            return Ok(Err(LinkRefusal::Expired { expired_at: claims.expires_at }));
        }
        Ok(Ok(claims))
    }

    /// Acknowledges the incident `id` through a link: the token is checked, its use recorded
    /// (a token works once, even when two requests race) and the incident acknowledged by
    /// [`ACKED_BY_LINK`].
    pub async fn ack_by_link(&self, id: &str, token: &str) -> Result<Result<LinkUse, LinkRefusal>, EngineError> {
        let claims = match self.check_link(LinkAction::Ack, id, token).await? {
            Ok(c) => c,
            Err(refused) => return Ok(Err(refused)),
        };
        let Some(incident) = self.store.get_incident(id).await? else {
            return Err(EngineError::NotFound(format!("no incident {id:?}; it may have been pruned")));
        };
        if incident.status != IncidentStatus::Open {
            return Err(EngineError::Conflict(format!("incident {id} is already resolved; nothing to acknowledge")));
        }
        if let (Some(at), Some(by)) = (incident.acked_at, &incident.acked_by) {
            let at = jiff::Timestamp::from_millisecond(at).map_or_else(|_| at.to_string(), |t| t.to_string());
            return Err(EngineError::Conflict(format!(
                "incident {id} is already acknowledged (by {by}, at {at}); the link was not used"
            )));
        }
        let now = self.now();
        if let Err(refused) = self.use_link(&claims, ACKED_BY_LINK).await? {
            return Ok(Err(refused));
        }
        let incident = self.ack_incident(id, ACKED_BY_LINK).await?;
        Ok(Ok(LinkUse { incident, at: now }))
    }
}

/// What an approval link's token names: the run and the step.
pub fn approval_subject(run: &str, step: &str) -> String {
    format!("{run}/{step}")
}

fn used_refusal(recorded: &str) -> LinkRefusal {
    let at = used_at(recorded).unwrap_or(0);
    let by = recorded.splitn(3, ' ').nth(2).unwrap_or(ACKED_BY_LINK).to_string();
    LinkRefusal::Used { at, by }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_token_reads_back_and_any_change_is_refused() {
        let key = [7u8; 32];
        let payload = format!("ack.{}.1000.abcd", URL_SAFE_NO_PAD.encode("inc-1"));
        let token = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(sign(&key, &payload).unwrap()));
        let claims = read_token(&key, &token).unwrap().unwrap();
        assert_eq!((claims.action, claims.subject.as_str(), claims.expires_at), (LinkAction::Ack, "inc-1", 1000));
        let later = token.replace(".1000.", ".9999.");
        assert_eq!(read_token(&key, &later).unwrap(), Err(LinkRefusal::Altered));
        assert_eq!(read_token(&[8u8; 32], &token).unwrap(), Err(LinkRefusal::Altered), "another key");
        assert_eq!(read_token(&key, "nothing").unwrap(), Err(LinkRefusal::Altered));
        assert_eq!(read_token(&key, &token[..token.len() - 2]).unwrap(), Err(LinkRefusal::Altered));
    }
}
