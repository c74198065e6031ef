//! Test support shared by the store's integration tests.

#![allow(dead_code)] // each test binary uses a subset

pub use agent_os_store::testing::PgDatabase;
