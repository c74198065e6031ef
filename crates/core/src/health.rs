//! A project's health as the engine judges it and the API shows it: how well it is, and what
//! each part of the judgement came from.

use crate::text::text_enum;

text_enum! {
    /// How well a project is, worst last.
    #[derive(PartialOrd, Ord)]
    pub enum HealthState("health state") {
        /// Nothing to judge by yet.
        Unknown = "unknown",
        Ok = "ok",
        Degraded = "degraded",
        Down = "down",
    }
}

text_enum! {
    /// What one part of a project's health came from.
    pub enum HealthSource("health source") {
        /// The status probe.
        Status = "status",
        /// The HTTP health check.
        Health = "health",
        Check = "check",
        Run = "run",
        Budget = "budget",
        /// The project's own incident.
        Project = "project",
        /// Any other open incident of the project.
        Incident = "incident",
        /// Whether a worker serving the project is connected (worker projects).
        Worker = "worker",
    }
}
