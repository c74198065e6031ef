//! Costs, their totals, budgets and the pauses budgets impose.

use agent_os_core::budget::{BudgetSource, OnExceed, Period};
use agent_os_core::cost::CostSource;

/// A cost record to store; amounts are exact nano-units.
#[derive(Clone, Debug)]
pub struct NewCost {
    pub id: String,
    pub project_id: String,
    pub project: String,
    pub run_id: Option<String>,
    pub service: String,
    pub key_name: Option<String>,
    pub amount_nanos: i64,
    pub currency: String,
    pub tokens_in: Option<i64>,
    pub tokens_out: Option<i64>,
    /// Of `tokens_in`, those read from the provider's cache.
    pub tokens_cached_in: Option<i64>,
    pub model: Option<String>,
    pub at: i64,
    pub idempotency_key: String,
    pub source: CostSource,
    pub metadata: Option<String>,
    pub created_at: i64,
    /// The price Agent OS used (JSON) when it priced the tokens itself.
    pub price: Option<String>,
    /// Tokens of a model without a price: stored with amount 0 and counted as unpriced.
    pub unpriced: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CostRecord {
    pub id: String,
    pub project: String,
    pub run_id: Option<String>,
    pub service: String,
    pub key_name: Option<String>,
    pub amount_nanos: i64,
    pub currency: String,
    pub tokens_in: Option<i64>,
    pub tokens_out: Option<i64>,
    pub tokens_cached_in: Option<i64>,
    pub model: Option<String>,
    pub at: i64,
    pub idempotency_key: String,
    pub source: CostSource,
    pub metadata: Option<String>,
    /// The price Agent OS used (JSON) when it priced the tokens itself.
    pub price: Option<String>,
    /// No price was known for the model: `amount_nanos` is 0 and means nothing.
    pub unpriced: bool,
}

/// An unpriced record, as repricing reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct UnpricedCost {
    pub id: String,
    pub project: String,
    pub tokens_in: Option<i64>,
    pub tokens_out: Option<i64>,
    pub tokens_cached_in: Option<i64>,
}

#[derive(Clone, Debug, Default)]
pub struct CostFilter {
    pub project: Option<String>,
    pub run_id: Option<String>,
    pub limit: i64,
}

/// What cost totals are grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CostGroup {
    Project,
    Service,
    Key,
    Model,
    /// UTC calendar day (the group is the day's start, ms).
    Day,
}

#[derive(Clone, Debug, Default)]
pub struct CostTotalsFilter {
    pub project: Option<String>,
    pub service: Option<String>,
    /// Inclusive, ms.
    pub from: Option<i64>,
    /// Exclusive, ms.
    pub to: Option<i64>,
}

/// One group's exact total, per currency (amounts in different currencies are never added).
#[derive(Clone, Debug, PartialEq)]
pub struct CostTotal {
    /// The project, service, key name, model (`""` when none) or day start (ms, as text).
    pub group: String,
    pub currency: String,
    pub amount_nanos: i64,
    pub records: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    /// Records among `records` whose model had no price (their amount is not in the total).
    pub unpriced: i64,
}

/// A spending limit.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetRecord {
    pub id: String,
    pub project: String,
    /// `""` for every service of the project.
    pub service: String,
    pub period: Period,
    pub amount_nanos: i64,
    pub currency: String,
    /// Percentages, ascending.
    pub thresholds: Vec<i64>,
    pub on_exceed: OnExceed,
    pub source: BudgetSource,
    pub created_at: i64,
}

/// A project that may not spend: its runs, schedules and leases are refused.
#[derive(Clone, Debug, PartialEq)]
pub struct PauseRecord {
    pub project: String,
    pub reason: String,
    pub budget_id: Option<String>,
    pub since: i64,
    /// When it ends by itself (the budget period's end); `None` until resumed.
    pub until: Option<i64>,
}
