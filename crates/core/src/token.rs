//! API tokens and dashboard logins: the kinds of credential Agent OS hands out, spelled once.

use crate::text::text_enum;

text_enum! {
    /// Kinds of API token; each has its own prefix, so a leaked one is recognisable.
    pub enum TokenKind("token kind") {
        /// Acts on everything.
        Admin = "admin",
        /// Acts for one project.
        Project = "project",
        /// Acts for one attempt of a run (and so for its project), revoked when it ends.
        Run = "run",
        /// A worker's: may call only the worker operations, and only for the projects it names.
        Worker = "worker",
    }
}

impl TokenKind {
    /// The start of every token of this kind (`aosa_`, `aosp_`, `aosr_`, `aosw_`).
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Admin => "aosa_",
            TokenKind::Project => "aosp_",
            TokenKind::Run => "aosr_",
            TokenKind::Worker => "aosw_",
        }
    }
}

text_enum! {
    /// How a dashboard session was logged in.
    pub enum LoginVia("login method") {
        /// With an admin token (the session ends when that token is revoked).
        Token = "token",
        /// With the dashboard password (sessions end when it changes).
        Password = "password",
    }
}
