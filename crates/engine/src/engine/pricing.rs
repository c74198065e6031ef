//! Tokens without a price. A cost record of a model the price table does not know is stored
//! with its tokens and counted as unpriced; the first one of each model opens a warning incident
//! (source `pricing`, subject the model) that tells the channels once. When config.yaml later
//! gives the model a price, the records are priced at start, their amounts join the totals and
//! budgets, and the incident resolves.

use agent_os_core::alerting::{IncidentSource, Severity};
use agent_os_store::NewCost;

use super::incidents::Alert;
use super::{Engine, EngineError};
use crate::costs::price_json;

/// Unpriced records priced per transaction at start.
const PRICE_PAGE: i64 = 1000;

impl Engine {
    /// Warns once per model about records just stored without a price.
    pub(crate) async fn warn_unpriced(&self, project: &str, records: &[NewCost]) -> Result<(), EngineError> {
        let mut models: Vec<&str> = records.iter().filter(|c| c.unpriced).filter_map(|c| c.model.as_deref()).collect();
        models.sort_unstable();
        models.dedup();
        for model in models {
            if self.store.find_open_incident(IncidentSource::Pricing, model).await?.is_some() {
                continue;
            }
            tracing::warn!(model, project, "cost records of a model without a price are stored as unpriced");
            self.raise(Alert {
                source: IncidentSource::Pricing,
                subject: model.to_string(),
                project: None,
                severity: Severity::Warning,
                title: format!("Costs of model {model} have no price"),
                reason: format!(
                    "{project} reported tokens of {model}, which has no price: they are stored and shown as unpriced, \
                     and counted in no total or budget until prices: in config.yaml gives {model} a price \
                     (input, output and cached_input in USD per million tokens) and Agent OS restarts"
                ),
                tags: vec!["pricing".into()],
                worse: false,
            })
            .await?;
        }
        Ok(())
    }

    /// Prices the records stored without a price whose model now has one, and resolves the
    /// model's incident. Returns how many records were priced.
    pub async fn price_unpriced_costs(&self) -> Result<i64, EngineError> {
        let mut total = 0;
        let cfg = self.cfg();
        for model in self.store.unpriced_models().await? {
            let Some(price) = cfg.prices.lookup(&model) else { continue };
            let stamp = price_json(price);
            let mut projects = std::collections::BTreeSet::new();
            let mut priced_model = 0;
            loop {
                let page = self.store.unpriced_costs(&model, PRICE_PAGE).await?;
                if page.is_empty() {
                    break;
                }
                let mut priced = Vec::with_capacity(page.len());
                let mut skipped = 0;
                for c in &page {
                    match price.amount(
                        c.tokens_in.unwrap_or(0),
                        c.tokens_out.unwrap_or(0),
                        c.tokens_cached_in.unwrap_or(0),
                    ) {
                        Ok(amount) => {
                            priced.push((c.id.clone(), amount));
                            projects.insert(c.project.clone());
                        }
                        Err(e) => {
                            skipped += 1;
                            tracing::warn!(record = %c.id, error = %e, "an unpriced cost record stays unpriced");
                        }
                    }
                }
                let done = self.store.price_costs(&priced, &stamp).await?;
                priced_model += done;
                // A page of records that cannot be priced would be read again forever.
                if done == 0 || skipped > 0 {
                    break;
                }
            }
            total += priced_model;
            if priced_model > 0 {
                tracing::info!(model, records = priced_model, "unpriced cost records priced");
            }
            let why = format!("{model} has a price ({}); {priced_model} records priced", price.origin());
            self.resolve(IncidentSource::Pricing, &model, &why).await?;
            for p in projects {
                self.check_budgets(&p).await?;
            }
        }
        if total > 0 {
            self.touch();
        }
        Ok(total)
    }
}
