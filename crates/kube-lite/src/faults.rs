//! Fault injection for tests: failing requests, added latency, dropped watch connections.

use std::sync::Mutex;
use std::time::Duration;

use crate::error::ApiError;

/// A rule that makes the next `remaining` matching requests fail.
#[derive(Debug, Clone)]
struct FailRule {
    verb: String,
    resource: String,
    remaining: u32,
    code: u16,
}

/// Fault controls of a running server; cheap to call from tests at any time.
#[derive(Debug)]
pub struct Faults {
    rules: Mutex<Vec<FailRule>>,
    latency: Mutex<Duration>,
    drop_watches: tokio::sync::watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            rules: Mutex::default(),
            latency: Mutex::default(),
            drop_watches: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Faults {
    /// Makes the next `count` requests with this verb (`get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection`, or `*`) on this resource (plural such as `configmaps`, or `*`) fail with
    /// `code` and a Status carrying the conventional reason.
    pub fn fail_next(&self, verb: &str, resource: &str, count: u32, code: u16) {
        let rule = FailRule {
            verb: verb.into(),
            resource: resource.into(),
            remaining: count,
            code,
        };
        self.rules.lock().expect("fault rules lock").push(rule);
    }

    /// Adds a delay before every request is handled (zero removes it).
    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().expect("latency lock") = latency;
    }

    /// Closes every open watch connection; clients see the stream end and must re-watch.
    pub fn drop_watches(&self) {
        self.drop_watches.send_modify(|generation| *generation += 1);
    }

    /// Removes all failure rules and latency.
    pub fn clear(&self) {
        self.rules.lock().expect("fault rules lock").clear();
        self.set_latency(Duration::ZERO);
    }

    pub(crate) fn latency(&self) -> Duration {
        *self.latency.lock().expect("latency lock")
    }

    pub(crate) fn drop_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.drop_watches.subscribe()
    }

    /// Consumes one matching rule, returning the error to answer with.
    pub(crate) fn take(&self, verb: &str, resource: &str) -> Option<ApiError> {
        let mut rules = self.rules.lock().expect("fault rules lock");
        let index = rules.iter().position(|r| {
            (r.verb == "*" || r.verb == verb)
                && (r.resource == "*" || r.resource == resource)
                && r.remaining > 0
        })?;
        let rule = &mut rules[index];
        rule.remaining -= 1;
        let code = rule.code;
        if rule.remaining == 0 {
            rules.remove(index);
        }
        Some(ApiError::from_code(
            code,
            format!("injected fault: {verb} {resource} failed with {code}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_verb_and_resource_and_run_out() {
        let faults = Faults::default();
        faults.fail_next("create", "configmaps", 2, 503);
        assert!(faults.take("get", "configmaps").is_none());
        assert_eq!(
            faults.take("create", "configmaps").unwrap().reason,
            "ServiceUnavailable"
        );
        assert!(faults.take("create", "configmaps").is_some());
        assert!(faults.take("create", "configmaps").is_none());
    }
}
