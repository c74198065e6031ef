//! Every closed set of values stored or sent as text: each value goes to its text and back
//! (`as_str`/`FromStr`, `Display`, serde), its spelling is one of the set's, and a text that
//! names no value is refused with an error naming it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests: a failed assumption is the test failing

use std::fmt::{Debug, Display};
use std::str::FromStr;

use agent_os_core::text::UnknownValue;
use agent_os_core::{alerting, budget, check, config, cost, health, manifest, resource, run, token, workflow};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trips<T>(what: &str, all: &[T], spellings: &[&str])
where
    T: Copy + Debug + PartialEq + Display + FromStr<Err = UnknownValue> + Serialize + DeserializeOwned,
{
    assert_eq!(all.len(), spellings.len(), "{what}: one spelling per value");
    for (&value, &text) in all.iter().zip(spellings) {
        assert_eq!(value.to_string(), text, "{what}");
        assert_eq!(text.parse::<T>(), Ok(value), "{what}");
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(json, serde_json::to_string(text).unwrap(), "{what}: the wire form is the text");
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), value, "{what}");
    }
    let mut seen: Vec<&str> = spellings.to_vec();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), spellings.len(), "{what}: two values spelled alike");
    for bad in ["", "Unknown", "no such value", &format!(" {}", spellings[0]), &spellings[0].to_uppercase()] {
        if spellings.contains(&bad) {
            continue;
        }
        let e = bad.parse::<T>().unwrap_err();
        assert_eq!(e.value, bad);
        let message = e.to_string();
        assert!(message.starts_with(&format!("unknown {} {bad:?}; ", e.what)), "{message}");
        assert!(spellings.iter().all(|s| message.contains(s)), "{message} lists every value");
        let from_json = serde_json::from_str::<T>(&serde_json::to_string(bad).unwrap()).unwrap_err().to_string();
        assert!(from_json.contains(&message), "{from_json}");
    }
}

macro_rules! every {
    ($($ty:path),+ $(,)?) => {
        $( { use $ty as T; round_trips(stringify!($ty), T::ALL, T::SPELLINGS); } )+
    };
}

#[test]
fn every_closed_set_round_trips_through_its_text() {
    every!(
        run::RunStatus,
        run::LogStream,
        check::CheckState,
        check::CheckKind,
        alerting::Severity,
        alerting::IncidentSource,
        alerting::NotificationSource,
        alerting::IncidentStatus,
        alerting::DeliveryStatus,
        alerting::HoldReason,
        budget::Period,
        budget::OnExceed,
        budget::BudgetSource,
        config::Durability,
        cost::CostSource,
        cost::GroupBy,
        health::HealthState,
        health::HealthSource,
        manifest::ManagedBy,
        manifest::ScheduleSource,
        manifest::ScheduleStatus,
        manifest::ProbeKind,
        manifest::ProbeStatus,
        manifest::TransportKind,
        manifest::CatchUp,
        manifest::Overlap,
        resource::HolderKind,
        token::TokenKind,
        token::LoginVia,
        workflow::WorkflowRunStatus,
        workflow::StepStatus,
        workflow::TriggerKind,
        workflow::ActionKind,
        workflow::InputType,
    );
}

#[test]
fn the_wire_spellings_stay_what_they_were() {
    // Stored rows and API answers already hold these: changing one is a data migration.
    assert_eq!(run::RunStatus::TimedOut.as_str(), "timed_out");
    assert_eq!(manifest::ManagedBy::AgentOs.as_str(), "agent-os");
    assert_eq!(alerting::HoldReason::QuietHours.as_str(), "quiet hours");
    assert_eq!(alerting::Severity::parse("loud").unwrap_err(), "unknown severity \"loud\"; info, warning or critical");
    assert_eq!(budget::Period::parse("weekly").unwrap_err(), "unknown period \"weekly\"; daily or monthly");
    assert!(
        alerting::Severity::Info < alerting::Severity::Warning
            && alerting::Severity::Warning < alerting::Severity::Critical
    );
    assert!(
        health::HealthState::Unknown < health::HealthState::Ok
            && health::HealthState::Degraded < health::HealthState::Down
    );
}

#[test]
fn ping_kinds_round_trip_through_their_stored_text() {
    let all = [check::PingKind::Success, check::PingKind::Start, check::PingKind::Fail, check::PingKind::Log]
        .into_iter()
        .chain((0..=255).map(check::PingKind::Exit));
    for kind in all {
        let text = kind.to_string();
        assert_eq!(text.parse::<check::PingKind>(), Ok(kind), "{text}");
        assert_eq!(serde_json::from_str::<check::PingKind>(&serde_json::to_string(&kind).unwrap()).unwrap(), kind);
    }
    assert_eq!(check::PingKind::Exit(3).as_str(), "exit 3");
    for bad in ["exit", "exit 256", "exit 03", "exit -1", "exit  3", "EXIT 3", ""] {
        let e = bad.parse::<check::PingKind>().unwrap_err();
        assert!(e.to_string().starts_with(&format!("unknown ping kind {bad:?}; ")), "{e}");
    }
}

#[test]
fn a_notification_source_covers_every_incident_source() {
    for &s in alerting::IncidentSource::ALL {
        assert_eq!(alerting::NotificationSource::from(s).as_str(), s.as_str());
    }
}

#[test]
fn a_check_state_is_the_same_word_as_a_schedule_state() {
    for &s in check::CheckState::ALL {
        assert_eq!(manifest::ScheduleStatus::from(s).as_str(), s.as_str());
    }
}
