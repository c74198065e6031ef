//! Budgets: after every cost that reaches the ledger, the project's budgets are measured
//! against the spend of their period; each threshold crossed raises `budget.threshold` once per
//! period, and a budget with `on_exceed: pause` pauses the project at 100 %: its new runs,
//! scheduled slots and leases are refused until the period ends or a user resumes it.

use agent_os_core::alerting::{IncidentSource, Severity};
use agent_os_core::budget::{BudgetSource, OnExceed, Period, check_thresholds, forecast};
use agent_os_core::config::BudgetDecl;
use agent_os_core::cost::{check_currency, format_amount, parse_amount};
use agent_os_core::id::new_id;
use agent_os_store::{BudgetRecord, CostGroup, CostTotalsFilter, NewEvent, PauseRecord};
use serde_json::json;

use super::incidents::Alert;
use super::{Engine, EngineError};

/// A budget set over the API.
#[derive(Clone, Debug)]
pub struct BudgetInput {
    pub project: String,
    pub service: Option<String>,
    pub period: String,
    pub amount: String,
    pub currency: Option<String>,
    pub thresholds: Option<Vec<i64>>,
    pub on_exceed: Option<String>,
}

/// A budget with where its period stands.
#[derive(Clone, Debug)]
pub struct BudgetStatus {
    pub budget: BudgetRecord,
    pub period_start: i64,
    pub period_end: i64,
    pub spent_nanos: i64,
    pub forecast_nanos: i64,
    /// Thresholds already crossed this period.
    pub crossed: Vec<i64>,
}

pub fn record_of(d: &BudgetDecl, now: i64) -> BudgetRecord {
    BudgetRecord {
        id: new_id(),
        project: d.project.clone(),
        service: d.service.clone(),
        period: d.period,
        amount_nanos: d.amount_nanos,
        currency: d.currency.clone(),
        thresholds: d.thresholds.clone(),
        on_exceed: d.on_exceed,
        source: BudgetSource::Config,
        created_at: now,
    }
}

impl Engine {
    /// Sets (creates or replaces) the budget of a project, service and period.
    pub async fn set_budget(&self, input: BudgetInput) -> Result<BudgetRecord, EngineError> {
        let bad = |field: &str, message: String| EngineError::Invalid { field: Some(field.into()), message };
        self.project(&input.project).await?;
        let period = Period::parse(&input.period).map_err(|e| bad("period", e))?;
        let amount_nanos = parse_amount(&input.amount).map_err(|e| bad("amount", e))?;
        let currency = input.currency.unwrap_or_else(|| "USD".into());
        check_currency(&currency).map_err(|e| bad("currency", e))?;
        let thresholds =
            check_thresholds(&input.thresholds.unwrap_or_else(|| agent_os_core::budget::DEFAULT_THRESHOLDS.to_vec()))
                .map_err(|e| bad("thresholds", e))?;
        let on_exceed = match input.on_exceed.as_deref() {
            None => OnExceed::Alert,
            Some(text) => {
                text.parse().map_err(|e: agent_os_core::text::UnknownValue| bad("on_exceed", e.to_string()))?
            }
        };
        let service = input.service.unwrap_or_default();
        if service.len() > 64 {
            return Err(bad("service", "at most 64 bytes".into()));
        }
        let now = self.now();
        let stored = self
            .store
            .upsert_budget(&BudgetRecord {
                id: new_id(),
                project: input.project.clone(),
                service,
                period,
                amount_nanos,
                currency,
                thresholds,
                on_exceed,
                source: BudgetSource::Api,
                created_at: now,
            })
            .await?;
        // A lower limit may be crossed already.
        self.check_budgets(&input.project).await?;
        Ok(stored)
    }

    pub async fn remove_budget(&self, id: &str) -> Result<(), EngineError> {
        if !self.store.delete_budget(id).await? {
            return Err(EngineError::NotFound(format!("no budget {id:?}")));
        }
        Ok(())
    }

    /// Every budget (of one project) with its period's spend and forecast.
    pub async fn budget_status(&self, project: Option<&str>) -> Result<Vec<BudgetStatus>, EngineError> {
        let now = self.now();
        let mut out = Vec::new();
        for b in self.store.list_budgets(project).await? {
            let (start, end) = b.period.bounds(now);
            let spent = self.spent(&b, start, end).await?;
            let crossed = b.thresholds.iter().copied().filter(|t| crossed(spent, b.amount_nanos, *t)).collect();
            out.push(BudgetStatus {
                forecast_nanos: forecast(spent, start, end, now),
                budget: b,
                period_start: start,
                period_end: end,
                spent_nanos: spent,
                crossed,
            });
        }
        Ok(out)
    }

    async fn spent(&self, b: &BudgetRecord, start: i64, end: i64) -> Result<i64, EngineError> {
        let filter = CostTotalsFilter {
            project: Some(b.project.clone()),
            service: (!b.service.is_empty()).then(|| b.service.clone()),
            from: Some(start),
            to: Some(end),
        };
        Ok(self
            .store
            .cost_totals(&filter, CostGroup::Project)
            .await?
            .into_iter()
            .filter(|t| t.currency == b.currency)
            .map(|t| t.amount_nanos)
            .sum())
    }

    /// Measures the project's budgets after new costs. Every threshold crossed is marked once
    /// per period, but only the highest is told (event, incident, pause): a cost that takes the
    /// spend from 42 % to 84 % of 50/80/100 says 80 %, not 50 %.
    pub(crate) async fn check_budgets(&self, project: &str) -> Result<(), EngineError> {
        for s in self.budget_status(Some(project)).await? {
            let b = &s.budget;
            let Some(&threshold) = s.crossed.last() else { continue };
            let now = self.now();
            let pause = (threshold >= 100 && b.on_exceed == OnExceed::Pause).then(|| PauseRecord {
                project: b.project.clone(),
                reason: format!(
                    "its {} budget{} of {} is used up ({} spent)",
                    b.period,
                    scope(b),
                    money(b.amount_nanos, &b.currency),
                    money(s.spent_nanos, &b.currency)
                ),
                budget_id: Some(b.id.clone()),
                since: now,
                until: Some(s.period_end),
            });
            let event = NewEvent {
                id: new_id(),
                kind: "budget.threshold".into(),
                project: Some(b.project.clone()),
                subject: Some(budget_subject(b)),
                data: json!({
                    "budget": b.id, "project": b.project, "service": b.service, "period": b.period,
                    "threshold": threshold, "crossed": s.crossed, "percent": percent(s.spent_nanos, b.amount_nanos),
                    "limit": format_amount(b.amount_nanos), "spent": format_amount(s.spent_nanos),
                    "forecast": format_amount(s.forecast_nanos), "currency": b.currency, "paused": pause.is_some(),
                })
                .to_string(),
                at: now,
            };
            if !self.store.mark_budget(&b.id, s.period_start, &s.crossed, &event, pause.as_ref()).await? {
                continue;
            }
            if pause.is_some() {
                tracing::warn!(project = %b.project, "paused by its budget");
                self.schedules_touched();
            }
            self.raise(budget_alert(&s, threshold, pause.is_some(), true)).await?;
        }
        Ok(())
    }

    /// The pause in force for a project, if any (an expired one is lifted on the way).
    pub async fn pause_of(&self, project: &str) -> Result<Option<PauseRecord>, EngineError> {
        match self.store.get_pause(project).await? {
            Some(p) if p.until.is_some_and(|u| u <= self.now()) => {
                self.store.clear_pause(project).await?;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    /// Refuses spending for a paused project, saying why and how to resume.
    pub async fn refuse_if_paused(&self, project: &str) -> Result<(), EngineError> {
        let Some(p) = self.pause_of(project).await? else { return Ok(()) };
        let until = p.until.map(|u| format!(" until {}", jiff::Timestamp::from_millisecond(u).unwrap_or_default()));
        Err(EngineError::Conflict(format!(
            "project {project:?} is paused: {}; it stays paused{} or until `agent-os budget resume {project}`",
            p.reason,
            until.unwrap_or_default()
        )))
    }

    /// Lifts a project's pause.
    pub async fn resume_project(&self, project: &str) -> Result<(), EngineError> {
        self.project(project).await?;
        if !self.store.clear_pause(project).await? {
            return Err(EngineError::NotFound(format!("project {project:?} is not paused")));
        }
        self.schedules_touched();
        // The open budget incidents said "paused until resumed": they now say what holds.
        let open = self.store.list_incidents(true, Some(project), 100).await?;
        for s in self.budget_status(Some(project)).await? {
            let subject = format!("{}/{}", s.budget.project, budget_subject(&s.budget));
            if let Some(&threshold) = s.crossed.last()
                && open.iter().any(|i| i.source == IncidentSource::Budget && i.subject == subject)
            {
                self.raise(budget_alert(&s, threshold, false, false)).await?;
            }
        }
        Ok(())
    }
}

/// A budget incident's subject within its project: `PERIOD[:SERVICE]`.
fn budget_subject(b: &BudgetRecord) -> String {
    if b.service.is_empty() { b.period.to_string() } else { format!("{}:{}", b.period, b.service) }
}

fn scope(b: &BudgetRecord) -> String {
    if b.service.is_empty() { String::new() } else { format!(" for {}", b.service) }
}

fn money(nanos: i64, currency: &str) -> String {
    format!("{} {currency}", format_amount(nanos))
}

/// How much of `limit` is spent, in whole percent (rounded down, so 99.9 % is not "100 %").
fn percent(spent: i64, limit: i64) -> i64 {
    if limit <= 0 {
        return 0;
    }
    i64::try_from(i128::from(spent) * 100 / i128::from(limit)).unwrap_or(i64::MAX)
}

/// The incident of a budget that has crossed `threshold`, worded from its state now: whether it
/// pauses the project is said only while it does. `worse` tells the channels of a higher
/// threshold than the open incident's.
fn budget_alert(s: &BudgetStatus, threshold: i64, paused: bool, worse: bool) -> Alert {
    let b = &s.budget;
    let after = if paused {
        "; the project is paused until the period ends or `agent-os budget resume`".to_string()
    } else if threshold >= 100 && b.on_exceed == OnExceed::Pause {
        "; the project was resumed by hand and runs again".to_string()
    } else {
        String::new()
    };
    Alert {
        source: IncidentSource::Budget,
        subject: format!("{}/{}", b.project, budget_subject(b)),
        project: Some(b.project.clone()),
        severity: if threshold >= 100 { Severity::Critical } else { Severity::Warning },
        title: format!("{} has used {threshold}% of its {} budget{}", b.project, b.period, scope(b)),
        reason: format!(
            "{} of {} spent ({} %); forecast {}{after}",
            money(s.spent_nanos, &b.currency),
            money(b.amount_nanos, &b.currency),
            percent(s.spent_nanos, b.amount_nanos),
            money(s.forecast_nanos, &b.currency),
        ),
        tags: Vec::new(),
        worse,
    }
}

fn crossed(spent: i64, limit: i64, threshold: i64) -> bool {
    i128::from(spent) * 100 >= i128::from(limit) * i128::from(threshold)
}
