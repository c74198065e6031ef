//! The signing secret of an HTTP plugin project: shown again to an admin, rotated with a grace
//! period during which requests carry signatures under both the new and the previous secret
//! (Standard Webhooks allows several), so the project can switch without failing a request.

use std::time::Duration;

use agent_os_store::ProjectTransport;

use crate::plugin::SigningKeys;
use crate::project::LoadedProject;
use crate::secrets::new_signing_secret;

use super::{Engine, EngineError};

/// The longest grace a rotation may give the previous secret.
pub const MAX_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// A project's signing secret, and the previous one while it is still accepted.
#[derive(Clone, Debug)]
pub struct SigningSecret {
    pub secret: String,
    /// The previous secret and until when requests are also signed with it.
    pub previous_until: Option<i64>,
}

/// Where the previous secret is kept during a rotation's grace: `UNTIL_MS SECRET`.
fn previous_key(project_id: &str) -> String {
    format!("signing_secret.previous:{project_id}")
}

impl Engine {
    /// The project's signing secret (admin only, checked by the caller).
    pub async fn signing_secret(&self, name: &str) -> Result<SigningSecret, EngineError> {
        let p = self.project(name).await?;
        let secret = current(&p)?;
        let previous_until = self.previous_secret(&p).await?.map(|(until, _)| until);
        Ok(SigningSecret { secret, previous_until })
    }

    /// Makes a new signing secret; the previous one still signs requests for `grace`.
    pub async fn rotate_signing_secret(&self, name: &str, grace: Duration) -> Result<SigningSecret, EngineError> {
        if grace > MAX_GRACE {
            return Err(EngineError::Invalid {
                field: Some("grace".into()),
                message: "at most 7d; the previous secret should not stay valid longer".into(),
            });
        }
        let p = self.project(name).await?;
        let old = current(&p)?;
        let now = self.now();
        let key = previous_key(&p.record.id);
        let previous_until = if grace.is_zero() {
            self.store.set_setting(&key, "").await?;
            None
        } else {
            let until = now.saturating_add(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
            self.store.set_setting(&key, &format!("{until} {old}")).await?;
            Some(until)
        };
        let secret = new_signing_secret();
        let record = self.store.set_signing_secret(name, &secret, now).await?;
        self.loaded(record)?;
        tracing::info!(project = %name, "signing secret rotated");
        Ok(SigningSecret { secret, previous_until })
    }

    /// The previous secret while its grace lasts: requests are signed with it too.
    pub(super) async fn previous_signing_secret(&self, p: &LoadedProject) -> Option<String> {
        match self.previous_secret(p).await {
            Ok(previous) => previous.map(|(_, old)| old),
            Err(e) => {
                tracing::warn!(project = %p.record.name, error = %e, "previous signing secret not read");
                None
            }
        }
    }

    /// What a request to the project is signed with; `None` for a command project, which has
    /// no signing secret.
    pub(super) async fn signing_keys(&self, p: &LoadedProject) -> Option<SigningKeys> {
        let ProjectTransport::Http { secret, .. } = &p.record.transport else { return None };
        Some(SigningKeys { current: secret.clone(), previous: self.previous_signing_secret(p).await })
    }

    async fn previous_secret(&self, p: &LoadedProject) -> Result<Option<(i64, String)>, EngineError> {
        let Some(value) = self.store.get_setting(&previous_key(&p.record.id)).await? else { return Ok(None) };
        let Some((until, secret)) = value.split_once(' ') else { return Ok(None) };
        Ok(until.parse::<i64>().ok().filter(|u| *u > self.now()).map(|u| (u, secret.to_string())))
    }
}

fn current(p: &LoadedProject) -> Result<String, EngineError> {
    match &p.record.transport {
        ProjectTransport::Http { secret, .. } => Ok(secret.clone()),
        ProjectTransport::Command { .. } => Err(EngineError::Conflict(format!(
            "project {:?} runs commands in its directory; only hosted projects (plugin: {{ url: … }}) have a signing secret",
            p.record.name
        ))),
        ProjectTransport::Worker => Err(EngineError::Conflict(format!(
            "project {:?} is served by workers, which run its commands; only hosted projects (plugin: {{ url: … }}) have a signing secret",
            p.record.name
        ))),
    }
}
