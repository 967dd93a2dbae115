//! Fault injection rules and request accounting.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What an injected fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultAction {
    /// Answer with an error `Status` of this HTTP code (500, 429, 409, 503, …) instead of serving.
    Status(u16),
    /// Delay the request by this many milliseconds, then serve it normally.
    DelayMs(u64),
}

/// A fault rule: requests matching `verb` (get, list, watch, create, update, patch, delete; None = any)
/// and whose path contains `path_contains` are counted; the `nth` matching request (1-based) and the
/// `count - 1` matching requests after it get `action`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    #[serde(default)]
    pub verb: Option<String>,
    #[serde(default)]
    pub path_contains: Option<String>,
    #[serde(default = "one")]
    pub nth: u64,
    #[serde(default = "one")]
    pub count: u64,
    pub action: FaultAction,
}

fn one() -> u64 {
    1
}

impl Fault {
    /// The next request matching verb/path fails with `code`.
    pub fn status(verb: Option<&str>, path_contains: &str, code: u16) -> Fault {
        Fault {
            verb: verb.map(String::from),
            path_contains: Some(path_contains.to_string()),
            nth: 1,
            count: 1,
            action: FaultAction::Status(code),
        }
    }
    /// The next request matching verb/path is delayed by `delay`.
    pub fn delay(verb: Option<&str>, path_contains: &str, delay: Duration) -> Fault {
        Fault {
            verb: verb.map(String::from),
            path_contains: Some(path_contains.to_string()),
            nth: 1,
            count: 1,
            action: FaultAction::DelayMs(delay.as_millis() as u64),
        }
    }
    /// Hit the `nth` matching request (1-based) instead of the next one.
    pub fn nth(mut self, nth: u64) -> Fault {
        self.nth = nth.max(1);
        self
    }
    /// Hit `count` consecutive matching requests.
    pub fn times(mut self, count: u64) -> Fault {
        self.count = count.max(1);
        self
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ActiveFault {
    pub id: u64,
    pub fault: Fault,
    pub seen: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub next_id: u64,
    pub rules: Vec<ActiveFault>,
}

impl Faults {
    /// The action for this request, if a rule hits it (and bookkeeping of matches).
    pub fn check(&mut self, verb: &str, path: &str) -> Option<FaultAction> {
        let mut hit = None;
        for r in self.rules.iter_mut() {
            let verb_ok = r.fault.verb.as_deref().is_none_or(|v| v == verb);
            let path_ok = r
                .fault
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p));
            if verb_ok && path_ok {
                r.seen += 1;
                if hit.is_none() && r.seen >= r.fault.nth && r.seen < r.fault.nth + r.fault.count {
                    hit = Some(r.fault.action.clone());
                }
            }
        }
        self.rules
            .retain(|r| r.seen < r.fault.nth + r.fault.count - 1);
        hit
    }
}

/// One write request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteRecord {
    /// create, update, patch, apply, delete
    pub verb: String,
    /// `plural` (core) or `plural.group`, with `/status` for the status subresource.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub field_manager: Option<String>,
    pub dry_run: bool,
}

/// Request counts and the write log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestStats {
    /// `"<verb> <resource>"` → count. Verbs: get, list, watch, create, update, patch, delete, discovery.
    pub counts: BTreeMap<String, u64>,
    pub writes: Vec<WriteRecord>,
}

impl RequestStats {
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.counts
            .get(&format!("{verb} {resource}"))
            .copied()
            .unwrap_or(0)
    }
    /// Total requests of a verb over every resource.
    pub fn verb_total(&self, verb: &str) -> u64 {
        self.counts
            .iter()
            .filter(|(k, _)| k.split(' ').next() == Some(verb))
            .map(|(_, v)| v)
            .sum()
    }
    /// Writes that were not dry-run.
    pub fn real_writes(&self) -> Vec<&WriteRecord> {
        self.writes.iter().filter(|w| !w.dry_run).collect()
    }
}
