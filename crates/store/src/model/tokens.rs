//! API tokens and dashboard sessions.

use agent_os_core::token::{LoginVia, TokenKind};

/// An API credential; only its SHA-256 hash is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRecord {
    pub id: String,
    pub kind: TokenKind,
    pub name: String,
    pub project_id: Option<String>,
    pub run_id: Option<String>,
    pub hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A dashboard login; `id` is the SHA-256 of the cookie value.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    pub csrf: String,
    pub via: LoginVia,
    /// The admin token a token login used.
    pub token_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}
