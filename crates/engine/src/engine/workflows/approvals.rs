//! Approval steps: a step that waits for a person. Starting it renders its message into the
//! step's outputs (`{"message": …}`) and tells the channels, with approve and reject links when
//! the server has a public URL. A decision (the API, the CLI, the dashboard, a signed link, or
//! the step's timeout) is one row in `workflow_approvals`, stored once: the first stands, a
//! later one is refused with who decided. The workflow pass that next looks at the step reads
//! that row and settles the step from it, so a decision taken while the engine is down, or on
//! another node, is acted on the same way.

use agent_os_core::alerting::{NotificationSource, Severity};
use agent_os_core::expr::render_value;
use agent_os_core::workflow::{Action, Approval, Decision, Step, StepStatus, WorkflowRunStatus};
use agent_os_store::{ApprovalRecord, StepRecord, WorkflowRunRecord};
use serde_json::{Value, json};

use super::super::links::{LinkAction, LinkClaims, LinkRefusal, approval_subject};
use super::super::notify::NotifyInput;
use super::{Engine, EngineError, Pass};

/// Who decided an approval its timeout decided.
pub const DECIDED_BY_TIMEOUT: &str = "timeout";
/// Who decided an approval decided through a signed link.
pub const DECIDED_BY_LINK: &str = "signed link";

/// A person's decision on an approval step.
#[derive(Clone, Debug)]
pub struct Decide {
    pub decision: Decision,
    /// Who decides, as recorded on the step.
    pub by: String,
    pub comment: Option<String>,
    /// The form's answers (a JSON object, or null).
    pub inputs: Value,
}

/// An approval step as a page shows it: what it asks, its form, and where it stands.
#[derive(Clone, Debug)]
pub struct ApprovalState {
    pub run: WorkflowRunRecord,
    pub approval: Approval,
    /// The step's row, once it has started.
    pub step: Option<StepRecord>,
    /// The message as rendered when it started waiting.
    pub message: Option<String>,
    pub decided: Option<ApprovalRecord>,
}

impl ApprovalState {
    /// True while a decision is wanted.
    pub fn waiting(&self) -> bool {
        self.decided.is_none()
            && self.run.status == WorkflowRunStatus::Running
            && self.step.as_ref().is_some_and(|s| s.status == StepStatus::Waiting)
    }
}

fn time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

/// Why a decision cannot be taken: the step was decided already.
fn already(d: &ApprovalRecord) -> EngineError {
    EngineError::Conflict(format!(
        "step {} of workflow run {} was already {} by {} at {}; nothing was changed",
        d.step_id,
        d.run_id,
        d.decision,
        d.decided_by,
        time(d.decided_at)
    ))
}

impl Engine {
    /// Where approval step `step_id` of run `run_id` stands.
    pub async fn approval_state(&self, run_id: &str, step_id: &str) -> Result<ApprovalState, EngineError> {
        let run = self
            .store
            .get_workflow_run(run_id)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("no workflow run {run_id:?}")))?;
        let def = self.plan(&run).await.map_err(EngineError::Conflict)?;
        let step = def.step(step_id).ok_or_else(|| {
            let ids: Vec<&str> = def.steps.iter().map(|s| s.id.as_str()).collect();
            EngineError::NotFound(format!(
                "workflow run {run_id} has no step {step_id:?}; its steps are {}",
                ids.join(", ")
            ))
        })?;
        let Action::Approval(approval) = &step.action else {
            return Err(EngineError::Invalid {
                field: Some("step".into()),
                message: format!(
                    "step {step_id} is a {} step, not an approval; only approval steps are decided",
                    step.action.kind()
                ),
            });
        };
        let row = self
            .store
            .workflow_steps(run_id)
            .await?
            .into_iter()
            .find(|s| s.step_id == step_id && s.item == super::WHOLE);
        let message = row
            .as_ref()
            .and_then(|s| s.outputs.as_deref())
            .and_then(|o| serde_json::from_str::<Value>(o).ok())
            .and_then(|o| o["message"].as_str().map(str::to_string));
        let decided = self.store.workflow_approvals(run_id).await?.into_iter().find(|a| a.step_id == step_id);
        Ok(ApprovalState { run, approval: approval.clone(), step: row, message, decided })
    }

    /// Decides a waiting approval step, and moves its run on at once. `409` (Conflict) when the
    /// step is not waiting (decided, not started, or its run ended); `400` (Invalid, naming the
    /// field) for a form answer the form does not take; nothing is recorded then.
    pub async fn decide_approval(&self, run_id: &str, step_id: &str, d: Decide) -> Result<ApprovalRecord, EngineError> {
        match self.decide(run_id, step_id, d, None).await? {
            Ok(decided) => Ok(decided),
            Err(why) => Err(EngineError::Conflict(why.message())),
        }
    }

    /// The same through a signed link: the token is checked for `action` on this step and its
    /// use recorded just before the decision (an answer the form refuses leaves it unused).
    pub async fn decide_by_link(
        &self,
        run_id: &str,
        step_id: &str,
        action: LinkAction,
        token: &str,
        comment: Option<String>,
        inputs: Value,
    ) -> Result<Result<ApprovalRecord, LinkRefusal>, EngineError> {
        let decision = match action {
            LinkAction::Approve => Decision::Approved,
            LinkAction::Reject => Decision::Rejected,
            LinkAction::Ack => return Ok(Err(LinkRefusal::OtherSubject)),
        };
        let claims = match self.check_link(action, &approval_subject(run_id, step_id), token).await? {
            Ok(c) => c,
            Err(refused) => return Ok(Err(refused)),
        };
        let d = Decide { decision, by: DECIDED_BY_LINK.into(), comment, inputs };
        self.decide(run_id, step_id, d, Some(&claims)).await
    }

    async fn decide(
        &self,
        run_id: &str,
        step_id: &str,
        d: Decide,
        link: Option<&LinkClaims>,
    ) -> Result<Result<ApprovalRecord, LinkRefusal>, EngineError> {
        let comment = d.comment.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
        if comment.as_ref().is_some_and(|c| c.chars().count() > agent_os_core::workflow::MAX_COMMENT) {
            return Err(EngineError::Invalid {
                field: Some("comment".into()),
                message: format!(
                    "the comment is longer than {} characters; shorten it",
                    agent_os_core::workflow::MAX_COMMENT
                ),
            });
        }
        // One decision at a time, and never beside a pass over the run.
        let _turn = self.workflows.advancing.lock().await;
        let state = self.approval_state(run_id, step_id).await?;
        if let Some(decided) = &state.decided {
            return Err(already(decided));
        }
        if !state.waiting() {
            let why = match (&state.step, state.run.status) {
                (_, status) if status.is_terminal() => format!("workflow run {run_id} has ended ({status})"),
                (None, _) => format!("step {step_id} has not started yet (it waits for its needs)"),
                (Some(s), _) => format!("step {step_id} is {}", s.status),
            };
            return Err(EngineError::Conflict(format!("{why}; there is nothing to decide")));
        }
        let inputs = state
            .approval
            .check_answers(&d.inputs, d.decision == Decision::Approved)
            .map_err(|e| EngineError::Invalid { field: Some(e.field), message: e.message })?;
        if let Some(claims) = link
            && let Err(used) = self.use_link(claims, DECIDED_BY_LINK).await?
        {
            return Ok(Err(used));
        }
        let record = ApprovalRecord {
            run_id: run_id.into(),
            step_id: step_id.into(),
            decision: d.decision,
            decided_by: d.by,
            decided_at: self.now(),
            comment,
            inputs: inputs.to_string(),
        };
        if let Some(stands) = self.store.decide_approval(&record).await? {
            return Err(already(&stands));
        }
        self.touch();
        // Settled now, so the answer shows the step decided; a failure here leaves it to the loop.
        match self.advance(state.run, &mut Pass::default()).await {
            Ok(Some(_)) => self.step_runs_changed(),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(run = run_id, step = step_id, error = %e, "workflow run not advanced after a decision");
                self.step_runs_changed();
            }
        }
        Ok(Ok(record))
    }

    /// Starts an approval step: renders its message, waits, and tells the channels.
    pub(super) async fn start_approval(
        &self,
        pass: &mut Pass,
        run: &WorkflowRunRecord,
        step: &Step,
        a: &Approval,
        mut s: StepRecord,
        ctx: &Value,
    ) -> Result<StepRecord, EngineError> {
        let message = match render_value(&Value::String(a.message.clone()), ctx) {
            Ok(Value::String(m)) => m,
            Ok(v) => v.to_string(),
            Err(e) => return self.settle(pass, s, StepStatus::Failed, None, Some(format!("message: {e}"))).await,
        };
        let now = self.now();
        s.status = StepStatus::Waiting;
        s.wake_at = a.timeout.map(|t| now.saturating_add(t.as_millis() as i64));
        s.outputs = Some(json!({ "message": message }).to_string());
        pass.put(&s);
        let mut body = format!("Workflow {} (run {}), step {}.", run.workflow, run.id, step.id);
        if let Some(at) = s.wake_at {
            let then = if a.on_timeout == Decision::Approved { "approved" } else { "rejected" };
            body.push_str(&format!(" Without a decision by {} it is {then}.", time(at)));
        }
        match self.approval_links(&run.id, &step.id).await {
            Ok(Some((approve, reject))) => body.push_str(&format!("\n\nApprove: {approve}\nReject: {reject}")),
            Ok(None) => body.push_str(&format!(
                "\n\nDecide in the dashboard, or: agent-os workflows approve {} {} (or reject)",
                run.id, step.id
            )),
            Err(e) => tracing::warn!(run = %run.id, step = %step.id, error = %e, "approval links not made"),
        }
        let input = NotifyInput {
            title: format!("Approval wanted: {message}"),
            body,
            severity: Some(a.severity),
            tags: a.tags.clone(),
            dedup_key: Some(format!("workflow:{}:{}:approval", run.id, step.id)),
            source: Some(NotificationSource::Workflow),
            ..NotifyInput::default()
        };
        // The step waits whether or not a channel heard of it: the dashboard shows it.
        if let Err(e) = self.notify(None, input, None).await {
            tracing::warn!(run = %run.id, step = %step.id, error = %e, "approval request not sent");
        }
        Ok(s)
    }

    /// Looks at a waiting approval step: settles it from its decision, or decides it by its
    /// timeout once that has passed.
    pub(super) async fn poll_approval(
        &self,
        pass: &mut Pass,
        run: &WorkflowRunRecord,
        step: &Step,
        a: &Approval,
        s: StepRecord,
    ) -> Result<Option<StepRecord>, EngineError> {
        let now = self.now();
        let decided = match self.store.workflow_approvals(&run.id).await?.into_iter().find(|d| d.step_id == step.id) {
            Some(d) => d,
            None => {
                let due = a.timeout.zip(s.started_at).map(|(t, st)| st.saturating_add(t.as_millis() as i64));
                if due.is_none_or(|due| now < due) {
                    return Ok(None);
                }
                let defaults = a.check_answers(&Value::Null, false).unwrap_or_else(|_| json!({}));
                let d = ApprovalRecord {
                    run_id: run.id.clone(),
                    step_id: step.id.clone(),
                    decision: a.on_timeout,
                    decided_by: DECIDED_BY_TIMEOUT.into(),
                    decided_at: now,
                    comment: None,
                    inputs: defaults.to_string(),
                };
                self.store.decide_approval(&d).await?.unwrap_or(d)
            }
        };
        let message = s
            .outputs
            .as_deref()
            .and_then(|o| serde_json::from_str::<Value>(o).ok())
            .and_then(|o| o["message"].as_str().map(str::to_string))
            .unwrap_or_default();
        let approved = decided.decision == Decision::Approved;
        let outputs = json!({
            "approved": approved,
            "decision": decided.decision,
            "decided_by": decided.decided_by,
            "decided_at": time(decided.decided_at),
            "comment": decided.comment,
            "inputs": serde_json::from_str::<Value>(&decided.inputs).unwrap_or_else(|_| json!({})),
            "message": message,
        });
        let mut said = format!("{} by {}", decided.decision, decided.decided_by);
        if let Some(c) = &decided.comment {
            said.push_str(&format!(": {c}"));
        }
        let input = NotifyInput {
            title: format!("{}: {message}", if approved { "Approved" } else { "Rejected" }),
            body: format!("Workflow {} (run {}), step {}: {said}.", run.workflow, run.id, step.id),
            severity: Some(if approved { Severity::Info } else { a.severity }),
            tags: a.tags.clone(),
            dedup_key: Some(format!("workflow:{}:{}:decided", run.id, step.id)),
            source: Some(NotificationSource::Workflow),
            ..NotifyInput::default()
        };
        if let Err(e) = self.notify(None, input, None).await {
            tracing::warn!(run = %run.id, step = %step.id, error = %e, "approval decision not sent");
        }
        let settled = if approved {
            self.settle(pass, s, StepStatus::Succeeded, Some(outputs), None).await?
        } else {
            self.settle(pass, s, StepStatus::Failed, Some(outputs), Some(said)).await?
        };
        Ok(Some(settled))
    }
}
