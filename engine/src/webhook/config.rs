//! A tenant's webhooks and the events they hear; [`Webhooks::deliveries`]
//! decides which of a write's events become deliveries.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::ids::{RunId, TenantId};
use crate::run::model::{EventKind, NewEvent};
use crate::store::NewDelivery;

/// An event a webhook can hear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    RunCompleted,
    /// Paused for an operator.
    RunFailed,
    RunCompensated,
    RunCancelled,
    RunTerminated,
    RunCompensationFailed,
    /// A step waits for a signal.
    StepWaiting,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 7] = [
        WebhookEvent::RunCompleted,
        WebhookEvent::RunFailed,
        WebhookEvent::RunCompensated,
        WebhookEvent::RunCancelled,
        WebhookEvent::RunTerminated,
        WebhookEvent::RunCompensationFailed,
        WebhookEvent::StepWaiting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::RunCompleted => "run_completed",
            WebhookEvent::RunFailed => "run_failed",
            WebhookEvent::RunCompensated => "run_compensated",
            WebhookEvent::RunCancelled => "run_cancelled",
            WebhookEvent::RunTerminated => "run_terminated",
            WebhookEvent::RunCompensationFailed => "run_compensation_failed",
            WebhookEvent::StepWaiting => "step_waiting",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The webhook event a run event is, if any. A run that waited too
    /// long in its queue ended CANCELLED: `run_cancelled`. `step_waiting`
    /// is only a wait for a signal (see [`WebhookEvent::of_write`]).
    pub fn of(kind: EventKind) -> Option<Self> {
        Some(match kind {
            EventKind::RunCompleted => WebhookEvent::RunCompleted,
            EventKind::RunFailed => WebhookEvent::RunFailed,
            EventKind::RunCompensated => WebhookEvent::RunCompensated,
            EventKind::RunCancelled | EventKind::RunQueueExpired => WebhookEvent::RunCancelled,
            EventKind::RunTerminated => WebhookEvent::RunTerminated,
            EventKind::RunCompensationFailed => WebhookEvent::RunCompensationFailed,
            EventKind::StepWaiting => WebhookEvent::StepWaiting,
            _ => return None,
        })
    }

    /// The webhook event the `i`th of a write's events is, if any: a
    /// step's wait is one only when it waits for a signal and was not
    /// ended in the same write (its signal was already there).
    fn of_write(events: &[NewEvent], i: usize) -> Option<Self> {
        let e = &events[i];
        let event = Self::of(e.kind)?;
        if event == WebhookEvent::StepWaiting {
            let woken_at_once = events[i + 1..]
                .iter()
                .any(|later| later.kind == EventKind::StepWoken && later.step == e.step);
            if !crate::run::wait::is_signal_wait(e) || woken_at_once {
                return None;
            }
        }
        Some(event)
    }
}

/// One `[[webhooks]]` entry: where a tenant's run outcomes are POSTed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub tenant: String,
    pub url: String,
    /// The HMAC-SHA256 key of `X-Sagaflow-Signature`.
    pub secret: String,
    pub events: Vec<WebhookEvent>,
    /// Only runs of these workflows; none: every workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflows: Option<Vec<String>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("tenant", &self.tenant)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("workflows", &self.workflows)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Whether it hears `event` of a run of `workflow`.
    fn hears(&self, event: WebhookEvent, workflow: &str) -> bool {
        self.events.contains(&event)
            && self
                .workflows
                .as_ref()
                .is_none_or(|w| w.iter().any(|n| n == workflow))
    }

    /// What is wrong with it, if anything (the message names the fix).
    pub fn check(&self) -> Result<(), String> {
        if self.tenant.is_empty() {
            return Err("tenant must not be empty".into());
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!(
                "url {:?} must start with http:// or https://",
                self.url
            ));
        }
        if self.secret.len() < 16 {
            return Err("secret must be at least 16 characters".into());
        }
        if self.events.is_empty() {
            return Err("events must name at least one event".into());
        }
        Ok(())
    }
}

/// Every configured webhook.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    hooks: Vec<Webhook>,
    tenants: HashSet<String>,
}

impl Webhooks {
    pub fn new(hooks: Vec<Webhook>) -> Self {
        let tenants = hooks.iter().map(|h| h.tenant.clone()).collect();
        Self { hooks, tenants }
    }

    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// The webhook of `tenant` at `url`, if configured.
    pub fn get(&self, tenant: &str, url: &str) -> Option<&Webhook> {
        self.hooks
            .iter()
            .find(|h| h.tenant == tenant && h.url == url)
    }

    /// The deliveries `events` of a run cause: one per event a webhook of
    /// the run's tenant hears. None (and no work) for a tenant without
    /// webhooks.
    pub fn deliveries(
        &self,
        tenant: &TenantId,
        run: RunId,
        workflow: &str,
        events: &[NewEvent],
    ) -> Vec<NewDelivery> {
        if !self.tenants.contains(tenant.as_str()) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let Some(event) = WebhookEvent::of_write(events, i) else {
                continue;
            };
            for hook in self
                .hooks
                .iter()
                .filter(|h| h.tenant == tenant.as_str() && h.hears(event, workflow))
            {
                out.push(NewDelivery::new(tenant, run, &hook.url, event, e.at));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::state::RunState;
    use chrono::Utc;

    fn event(kind: EventKind) -> NewEvent {
        NewEvent {
            kind,
            step: None,
            attempt: 0,
            run_state: RunState::Completed,
            message: None,
            actor: "engine".into(),
            at: Utc::now(),
        }
    }

    fn hook(tenant: &str, events: &[WebhookEvent], workflows: Option<&[&str]>) -> Webhook {
        Webhook {
            tenant: tenant.into(),
            url: format!("http://crm.example/{tenant}"),
            secret: "0123456789abcdef".into(),
            events: events.to_vec(),
            workflows: workflows.map(|w| w.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn only_outcomes_a_tenants_webhook_hears_become_deliveries() {
        let hooks = Webhooks::new(vec![
            hook("acme", &[WebhookEvent::RunCompleted], None),
            hook("acme2", &WebhookEvent::ALL, Some(&["provision"])),
        ]);
        let run = RunId::new();
        let evs = [
            event(EventKind::StepSucceeded),
            event(EventKind::RunCompleted),
        ];
        let d = hooks.deliveries(&TenantId::new("acme"), run, "any", &evs);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].event, WebhookEvent::RunCompleted);
        assert!(
            hooks
                .deliveries(&TenantId::new("other"), run, "any", &evs)
                .is_empty()
        );
        assert!(
            hooks
                .deliveries(&TenantId::new("acme2"), run, "other", &evs)
                .is_empty()
        );
        assert_eq!(
            hooks
                .deliveries(&TenantId::new("acme2"), run, "provision", &evs)
                .len(),
            1
        );
        let failed = [event(EventKind::RunFailed)];
        assert!(
            hooks
                .deliveries(&TenantId::new("acme"), run, "any", &failed)
                .is_empty()
        );
    }

    #[test]
    fn only_a_wait_for_a_signal_that_goes_on_is_step_waiting() {
        let hooks = Webhooks::new(vec![hook("acme", &WebhookEvent::ALL, None)]);
        let waiting = |message: &str| NewEvent {
            step: Some("approve".into()),
            message: Some(message.into()),
            ..event(EventKind::StepWaiting)
        };
        let woken = NewEvent {
            step: Some("approve".into()),
            ..event(EventKind::StepWoken)
        };
        let of = |evs: &[NewEvent]| {
            hooks
                .deliveries(&TenantId::new("acme"), RunId::new(), "any", evs)
                .into_iter()
                .map(|d| d.event)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            of(&[waiting("waiting for signal approve")]),
            [WebhookEvent::StepWaiting]
        );
        assert!(of(&[waiting("waiting for signal approve"), woken]).is_empty());
        assert!(of(&[waiting("sleeping until 2026-12-02T10:00:00Z")]).is_empty());
        assert!(of(&[waiting("not ready: modem offline; looking again at …")]).is_empty());
        assert_eq!(
            of(&[event(EventKind::RunQueueExpired)]),
            [WebhookEvent::RunCancelled]
        );
    }

    #[test]
    fn every_event_has_one_name() {
        for e in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(e));
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
        }
    }
}
