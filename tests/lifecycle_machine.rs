//! Property tests for the lifecycle state machine.
//!
//! The generator picks which check should decide (a "layer") and shapes random observations so that
//! check is the first to hold; a test-side oracle then recomputes the situation from the raw
//! observations on its own, and the expected phase and reason come from the transition table in
//! `docs/lifecycle.md`, parsed here. So the code is checked against the documented table, not against
//! itself, and the run asserts that every row of that table was reached.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use meshery_operator::api::{BrokerEndpoint, BrokerStatus, FieldError, MeshSyncStatus, Phase};
use meshery_operator::lifecycle::{
    self, ApplyOutcome, BrokerConnection, BrokerFacts, MeshSyncFacts, NatsProbe, Observations,
    Readiness, Reason, ResolvedBroker, WatchListSource,
};
use meshery_operator::object::ObjectKey;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, TestRng, TestRunner};

const GRACE_SECS: i64 = 30;
const BASE: i64 = 1_800_000_000;

// ---------------------------------------------------------------------------------------------
// Scenarios

#[derive(Clone, Copy, Debug, PartialEq)]
enum Child {
    Current,
    LoadBalancerPending,
    InProgress,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Apply {
    NotAttempted,
    Applied,
    Failed,
    Immutable,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Probe {
    Ok,
    Skipped,
    /// Failing since this many seconds before `now`.
    Failing(i64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Dependency {
    Custom,
    NotFound,
    Found(Option<Phase>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Broker(Probe),
    MeshSync(Dependency),
}

/// A previous status: its phase, the generation it described relative to the current one, and for
/// each owned condition type either nothing or a status with the second it last moved.
#[derive(Clone, Debug)]
struct Prev {
    phase: Option<Phase>,
    generation_behind: Option<i64>,
    conditions: [Option<(bool, i64)>; 5],
    foreign_condition: bool,
}

#[derive(Clone, Debug)]
struct Scenario {
    prev: Option<Prev>,
    generation: i64,
    spec_errors: usize,
    apply: Apply,
    children: Vec<Child>,
    kind: Kind,
    /// A MeshSync's connection on its broker: `Ok` connected, `Skipped` not known, `Failing(ago)`
    /// missing since `ago` seconds before `now`. Ignored for a Broker.
    link: Probe,
    /// Seconds after `BASE`.
    now: i64,
}

fn phase() -> impl Strategy<Value = Phase> {
    prop::sample::select(Phase::ALL.to_vec())
}

fn prev() -> impl Strategy<Value = Option<Prev>> {
    let condition = prop::option::of((any::<bool>(), 0..1_000i64));
    let prev = (
        prop::option::weighted(0.9, phase()),
        prop::option::weighted(0.9, 0..2i64),
        [
            condition.clone(),
            condition.clone(),
            condition.clone(),
            condition.clone(),
            condition,
        ],
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(phase, generation_behind, conditions, foreign_condition)| Prev {
                phase,
                generation_behind,
                conditions,
                foreign_condition,
            },
        );
    prop::option::weighted(0.85, prev)
}

fn child() -> impl Strategy<Value = Child> {
    prop_oneof![
        6 => Just(Child::Current),
        1 => Just(Child::LoadBalancerPending),
        2 => Just(Child::InProgress),
        1 => Just(Child::Failed),
    ]
}

fn probe() -> impl Strategy<Value = Probe> {
    prop_oneof![
        Just(Probe::Ok),
        Just(Probe::Skipped),
        (0..2 * GRACE_SECS).prop_map(Probe::Failing)
    ]
}

fn dependency() -> impl Strategy<Value = Dependency> {
    prop_oneof![
        Just(Dependency::Custom),
        Just(Dependency::NotFound),
        prop::option::of(phase()).prop_map(Dependency::Found),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        probe().prop_map(Kind::Broker),
        dependency().prop_map(Kind::MeshSync)
    ]
}

fn apply() -> impl Strategy<Value = Apply> {
    prop_oneof![
        Just(Apply::NotAttempted),
        Just(Apply::Applied),
        Just(Apply::Failed),
        Just(Apply::Immutable)
    ]
}

/// The checks of `docs/lifecycle.md` in order; the generator makes layer `n` the first that holds.
const LAYERS: usize = 10;

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        0..LAYERS,
        prev(),
        1..5i64,
        1..4usize,
        apply(),
        prop::collection::vec(child(), 0..5),
        kind(),
        0..100i64,
        1..5usize,
        probe(),
    )
        .prop_map(
            |(layer, prev, generation, spec_errors, apply, children, kind, now, n, link)| {
                shape(
                    layer,
                    Scenario {
                        prev,
                        generation,
                        spec_errors,
                        apply,
                        children,
                        kind,
                        link,
                        now,
                    },
                    n,
                )
            },
        )
}

/// Adjusts random observations so the check numbered `layer` is the first to hold; `n` is a spare
/// random number for the adjustments.
fn shape(layer: usize, mut s: Scenario, n: usize) -> Scenario {
    if layer == 0 {
        return s;
    }
    s.spec_errors = 0;
    if layer == 1 {
        s.kind = Kind::MeshSync(match n % 3 {
            0 => Dependency::NotFound,
            1 => Dependency::Found(None),
            _ => Dependency::Found(Some(Phase::ALL[n % 4]).filter(|p| *p != Phase::Ready)),
        });
        return s;
    }
    if let Kind::MeshSync(Dependency::NotFound | Dependency::Found(_)) = s.kind {
        s.kind = Kind::MeshSync(if n.is_multiple_of(2) {
            Dependency::Custom
        } else {
            Dependency::Found(Some(Phase::Ready))
        });
    }
    s.apply = match layer {
        2 => {
            return Scenario {
                apply: Apply::Immutable,
                ..s
            };
        }
        3 => {
            return Scenario {
                apply: Apply::Failed,
                ..s
            };
        }
        4 => {
            return Scenario {
                apply: Apply::NotAttempted,
                ..s
            };
        }
        _ => Apply::Applied,
    };
    if layer == 5 {
        s.children.push(Child::Failed);
        return s;
    }
    s.children.retain(|c| *c != Child::Failed);
    if layer == 6 {
        if !n.is_multiple_of(4) {
            s.children.push(Child::InProgress);
        } else {
            s.children.clear();
        }
        return s;
    }
    s.children.retain(|c| *c != Child::InProgress);
    if s.children.is_empty() {
        s.children.push(if n.is_multiple_of(2) {
            Child::Current
        } else {
            Child::LoadBalancerPending
        });
    }
    match (layer, s.kind) {
        (7, _) => s.kind = Kind::Broker(Probe::Failing((n as i64 * 17) % (2 * GRACE_SECS))),
        (_, Kind::Broker(Probe::Failing(_))) => {
            s.kind = Kind::Broker(if n.is_multiple_of(2) {
                Probe::Ok
            } else {
                Probe::Skipped
            })
        }
        _ => {}
    }
    if layer == 8 {
        if let Kind::Broker(_) = s.kind {
            s.kind = Kind::MeshSync(if n.is_multiple_of(2) {
                Dependency::Custom
            } else {
                Dependency::Found(Some(Phase::Ready))
            });
        }
        s.link = Probe::Failing((n as i64 * 13) % (2 * GRACE_SECS));
    } else if layer > 8 && matches!(s.link, Probe::Failing(_)) {
        s.link = if n.is_multiple_of(2) {
            Probe::Ok
        } else {
            Probe::Skipped
        };
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Building observations and statuses

fn time(seconds: i64) -> Time {
    Time(Timestamp::from_second(BASE + seconds).unwrap())
}

fn now(s: &Scenario) -> Time {
    // Sub-second noise: the status must still be stored at whole seconds.
    Time(Timestamp::from_second(BASE + s.now).unwrap() + SignedDuration::from_millis(250))
}

fn spec_errors(s: &Scenario) -> Vec<FieldError> {
    (0..s.spec_errors)
        .map(|i| FieldError::new(format!("spec.field{i}"), format!("problem {i}")))
        .collect()
}

fn children(s: &Scenario) -> BTreeMap<ObjectKey, Readiness> {
    s.children
        .iter()
        .enumerate()
        .map(|(i, child)| {
            let key = ObjectKey {
                group: "apps".into(),
                kind: "StatefulSet".into(),
                namespace: Some("meshery".into()),
                name: format!("child-{i}"),
            };
            let readiness = match child {
                Child::Current => Readiness::Current,
                Child::LoadBalancerPending => Readiness::LoadBalancerPending {
                    message: "no ingress yet".into(),
                },
                Child::InProgress => Readiness::InProgress {
                    reason: "LessReady",
                    message: "2/3 replicas ready".into(),
                },
                Child::Failed => Readiness::Failed {
                    reason: "ProgressDeadlineExceeded",
                    message: "progress deadline exceeded".into(),
                },
            };
            (key, readiness)
        })
        .collect()
}

fn observations<K>(s: &Scenario, kind: K) -> Observations<K> {
    Observations {
        generation: s.generation,
        spec_errors: spec_errors(s),
        apply: match s.apply {
            Apply::NotAttempted => ApplyOutcome::NotAttempted,
            Apply::Applied => ApplyOutcome::Applied,
            Apply::Failed => ApplyOutcome::Failed {
                message: "admission webhook denied the request".into(),
            },
            Apply::Immutable => ApplyOutcome::ImmutableFieldChanged {
                paths: vec!["StatefulSet x: spec.selector".into()],
            },
        },
        children: children(s),
        kind,
    }
}

fn broker_facts(s: &Scenario, probe: Probe) -> BrokerFacts {
    BrokerFacts {
        probe: match probe {
            Probe::Ok => NatsProbe::Ok,
            Probe::Skipped => NatsProbe::Skipped {
                reason: "--broker-probe off".into(),
            },
            Probe::Failing(ago) => NatsProbe::Failing {
                since: time(s.now - ago),
                message: "connection refused".into(),
            },
        },
        grace: SignedDuration::from_secs(GRACE_SECS),
        endpoint: Some(BrokerEndpoint {
            internal: "b.meshery.svc.cluster.local:4222".into(),
            external: String::new(),
        }),
    }
}

fn meshsync_facts(dependency: Dependency, link: Probe, now: i64) -> MeshSyncFacts {
    let (namespace, name) = ("meshery".to_string(), "meshery-broker".to_string());
    MeshSyncFacts {
        watch_list: WatchListSource::ThisCr,
        broker: match dependency {
            Dependency::Custom => ResolvedBroker::Custom,
            Dependency::NotFound => ResolvedBroker::NotFound { namespace, name },
            Dependency::Found(phase) => ResolvedBroker::Found {
                namespace,
                name,
                phase,
            },
        },
        publishing_to: Some("nats://b.meshery.svc.cluster.local:4222".into()),
        connection: match link {
            Probe::Ok => BrokerConnection::Connected,
            Probe::Skipped => BrokerConnection::Unknown {
                reason: "not checked: --broker-probe off".into(),
            },
            Probe::Failing(ago) => BrokerConnection::Missing {
                since: time(now - ago),
                message: "the broker shows no MeshSync connection".into(),
            },
        },
        grace: SignedDuration::from_secs(GRACE_SECS),
    }
}

/// The previous status's common parts.
fn prev_parts(s: &Scenario) -> Option<(Option<Phase>, Option<i64>, Vec<Condition>)> {
    let prev = s.prev.as_ref()?;
    let mut conditions: Vec<Condition> = lifecycle::TYPES
        .iter()
        .zip(prev.conditions)
        .filter_map(|(type_, c)| {
            let (status, ago) = c?;
            Some(Condition {
                type_: type_.to_string(),
                status: if status { "True" } else { "False" }.into(),
                reason: "Whatever".into(),
                message: "old".into(),
                observed_generation: Some(1),
                last_transition_time: time(-ago),
            })
        })
        .collect();
    if prev.foreign_condition {
        conditions.push(Condition {
            type_: "Processing".into(),
            status: "True".into(),
            reason: "Processing".into(),
            message: "from the Go operator".into(),
            observed_generation: None,
            last_transition_time: time(-5),
        });
    }
    Some((
        prev.phase,
        prev.generation_behind.map(|behind| s.generation - behind),
        conditions,
    ))
}

/// What `next` produced, in kind-independent form.
#[derive(Clone, Debug, PartialEq)]
struct Outcome {
    phase: Option<Phase>,
    observed_generation: Option<i64>,
    conditions: Vec<Condition>,
    json: Vec<u8>,
}

/// Runs `next` once from the scenario's previous status, then again from its own result.
fn run_twice(s: &Scenario) -> (Outcome, Outcome) {
    let now = now(s);
    let prev = prev_parts(s);
    match s.kind {
        Kind::Broker(probe) => {
            let obs = observations(s, broker_facts(s, probe));
            let prev = prev.map(|(phase, observed_generation, conditions)| BrokerStatus {
                phase,
                observed_generation,
                conditions,
                endpoint: None,
            });
            let first = lifecycle::next(prev.as_ref(), &obs, now.clone());
            let second = lifecycle::next(Some(&first), &obs, now);
            assert!(lifecycle::status_equal_ignoring_time(&first, &second));
            (broker_outcome(&first), broker_outcome(&second))
        }
        Kind::MeshSync(dependency) => {
            let obs = observations(s, meshsync_facts(dependency, s.link, s.now));
            let prev = prev.map(|(phase, observed_generation, conditions)| MeshSyncStatus {
                phase,
                observed_generation,
                conditions,
                publishing_to: None,
            });
            let first = lifecycle::next(prev.as_ref(), &obs, now.clone());
            let second = lifecycle::next(Some(&first), &obs, now);
            assert!(lifecycle::status_equal_ignoring_time(&first, &second));
            (meshsync_outcome(&first), meshsync_outcome(&second))
        }
    }
}

fn broker_outcome(status: &BrokerStatus) -> Outcome {
    Outcome {
        phase: status.phase,
        observed_generation: status.observed_generation,
        conditions: status.conditions.clone(),
        json: serde_json::to_vec(status).unwrap(),
    }
}

fn meshsync_outcome(status: &MeshSyncStatus) -> Outcome {
    Outcome {
        phase: status.phase,
        observed_generation: status.observed_generation,
        conditions: status.conditions.clone(),
        json: serde_json::to_vec(status).unwrap(),
    }
}

fn condition<'a>(outcome: &'a Outcome, type_: &str) -> &'a Condition {
    outcome
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("{type_} missing"))
}

fn is_true(outcome: &Outcome, type_: &str) -> bool {
    condition(outcome, type_).status == "True"
}

// ---------------------------------------------------------------------------------------------
// The oracle: the documented situations, recomputed from the scenario alone

fn from_phase(s: &Scenario) -> Phase {
    s.prev
        .as_ref()
        .and_then(|p| p.phase)
        .unwrap_or(Phase::Pending)
}

fn broker_ready(s: &Scenario) -> bool {
    !matches!(
        s.kind,
        Kind::MeshSync(Dependency::NotFound | Dependency::Found(None))
    ) && !matches!(s.kind, Kind::MeshSync(Dependency::Found(Some(p))) if p != Phase::Ready)
}

fn situation(s: &Scenario) -> &'static str {
    let deployed = !s.children.is_empty();
    if s.spec_errors > 0 {
        return if deployed {
            "InvalidSpec(children)"
        } else {
            "InvalidSpec(no children)"
        };
    }
    if !broker_ready(s) {
        return "WaitingForBroker";
    }
    match s.apply {
        Apply::Immutable => return "ImmutableFieldChanged",
        Apply::Failed => {
            return if deployed {
                "ApplyFailed(children)"
            } else {
                "ApplyFailed(no children)"
            };
        }
        Apply::NotAttempted => return "NotApplied",
        Apply::Applied => {}
    }
    if s.children.contains(&Child::Failed) {
        return "ProgressDeadlineExceeded";
    }
    if !deployed || s.children.contains(&Child::InProgress) {
        let same_generation = s.prev.as_ref().and_then(|p| p.generation_behind) == Some(0);
        return match from_phase(s) {
            Phase::Pending | Phase::Deploying => "RollingOut",
            _ if same_generation => "RollingOut(same generation)",
            _ => "RollingOut(new generation)",
        };
    }
    if let Kind::Broker(Probe::Failing(ago)) = s.kind {
        return if ago >= GRACE_SECS {
            "NatsFailing(past grace)"
        } else {
            "NatsFailing(within grace)"
        };
    }
    if let (Kind::MeshSync(_), Probe::Failing(ago)) = (s.kind, s.link) {
        return if ago >= GRACE_SECS {
            "Disconnected(past grace)"
        } else {
            "Disconnected(within grace)"
        };
    }
    if s.children.contains(&Child::LoadBalancerPending) {
        "Current(LoadBalancer pending)"
    } else {
        "Current"
    }
}

// ---------------------------------------------------------------------------------------------
// The documented table

const DOC: &str = include_str!("../docs/lifecycle.md");

#[derive(Debug)]
struct Row {
    from: Vec<Phase>,
    situation: String,
    to: Phase,
    reason: String,
}

fn parse_phase(text: &str) -> Phase {
    *Phase::ALL
        .iter()
        .find(|p| p.as_str() == text)
        .unwrap_or_else(|| panic!("unknown phase {text:?}"))
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().replace('`', ""))
        .collect()
}

/// The table under `### Transition table` in `docs/lifecycle.md`.
fn table() -> Vec<Row> {
    let section = DOC
        .split("### Transition table")
        .nth(1)
        .expect("docs/lifecycle.md has a transition table");
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|line| {
            let cells = cells(line);
            let from = if cells[0] == "any" {
                Phase::ALL.to_vec()
            } else {
                cells[0].split(", ").map(parse_phase).collect()
            };
            Row {
                from,
                situation: cells[1].clone(),
                to: parse_phase(&cells[2]),
                reason: cells[3].clone(),
            }
        })
        .collect()
}

/// The one documented row for this scenario (its index and the row).
fn documented(rows: &[Row], s: &Scenario) -> usize {
    let from = from_phase(s);
    let situation = situation(s);
    let matching: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].situation == situation && rows[i].from.contains(&from))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "exactly one documented row for ({from}, {situation}): {matching:?}"
    );
    matching[0]
}

// ---------------------------------------------------------------------------------------------
// Properties

#[test]
fn every_transition_is_a_documented_row_and_every_row_is_reached() {
    let rows = table();
    assert_eq!(
        rows.len(),
        22,
        "the table has as many rows as the match in transition() has arms"
    );
    let hits = Mutex::new(vec![0usize; rows.len()]);
    // A fixed seed: the coverage assertion below must not depend on luck.
    let config = Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    runner
        .run(&scenario(), |s| {
            let row = &rows[documented(&rows, &s)];
            let (first, _) = run_twice(&s);
            prop_assert_eq!(first.phase, Some(row.to), "{:?}", row);
            prop_assert_eq!(&condition(&first, "Ready").reason, &row.reason, "{:?}", row);
            hits.lock().unwrap()[documented(&rows, &s)] += 1;
            Ok(())
        })
        .unwrap();
    let hits = hits.into_inner().unwrap();
    eprintln!("rows reached: {hits:?}");
    let missed: Vec<_> = rows
        .iter()
        .zip(&hits)
        .filter(|(_, n)| **n == 0)
        .map(|(row, _)| row)
        .collect();
    assert!(missed.is_empty(), "rows never reached: {missed:#?}");
}

proptest! {
    #![proptest_config(Config {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/lifecycle_machine.txt",
        ))),
        ..Config::default()
    })]

    /// Ready exactly when every input holds: spec valid, broker Ready (MeshSync), this generation
    /// applied, at least one child and all current, NATS handshake passed — or failing within the
    /// grace period on a Broker that was already Ready.
    #[test]
    fn ready_iff_every_readiness_input_holds(s in scenario()) {
        let (first, _) = run_twice(&s);
        let probe_ok = match (s.kind, s.link) {
            (Kind::Broker(Probe::Failing(ago)), _) | (Kind::MeshSync(_), Probe::Failing(ago)) => {
                ago < GRACE_SECS && from_phase(&s) == Phase::Ready
            }
            _ => true,
        };
        let inputs_hold = s.spec_errors == 0
            && broker_ready(&s)
            && s.apply == Apply::Applied
            && !s.children.is_empty()
            && s.children.iter().all(|c| matches!(c, Child::Current | Child::LoadBalancerPending))
            && probe_ok;
        prop_assert_eq!(first.phase == Some(Phase::Ready), inputs_hold);
        prop_assert_eq!(is_true(&first, "Ready"), inputs_hold);
        prop_assert_eq!(first.observed_generation, Some(s.generation));
        for c in &first.conditions {
            prop_assert_eq!(c.observed_generation, Some(s.generation));
        }
    }

    /// The same observations twice give the same status, byte for byte: the controller skips the write.
    #[test]
    fn next_is_idempotent(s in scenario()) {
        let (first, second) = run_twice(&s);
        prop_assert_eq!(&first.json, &second.json);
        prop_assert_eq!(first, second);
    }

    /// A condition's `lastTransitionTime` is kept when its status is unchanged and is `now` (to the
    /// second) when its status changed or it is new.
    #[test]
    fn last_transition_time_moves_iff_status_moves(s in scenario()) {
        let (first, _) = run_twice(&s);
        let previous = prev_parts(&s).map(|(_, _, conditions)| conditions).unwrap_or_default();
        let now = time(s.now);
        for c in &first.conditions {
            match previous.iter().find(|p| p.type_ == c.type_) {
                Some(p) if p.status == c.status => prop_assert_eq!(&c.last_transition_time, &p.last_transition_time),
                _ => prop_assert_eq!(&c.last_transition_time, &now),
            }
        }
    }

    /// Over a run of reconciles, each step moves a condition's time exactly when its status moves.
    #[test]
    fn last_transition_time_over_a_sequence(steps in prop::collection::vec(scenario(), 2..6)) {
        let mut previous: Option<BrokerStatus> = None;
        for (i, mut s) in steps.into_iter().enumerate() {
            s.now += 100 * i as i64;
            let probe = match s.kind { Kind::Broker(p) => p, Kind::MeshSync(_) => Probe::Ok };
            let obs = observations(&s, broker_facts(&s, probe));
            let status = lifecycle::next(previous.as_ref(), &obs, now(&s));
            for c in &status.conditions {
                let before = previous.as_ref().and_then(|p| p.conditions.iter().find(|b| b.type_ == c.type_));
                match before {
                    Some(b) if b.status == c.status => prop_assert_eq!(&c.last_transition_time, &b.last_transition_time),
                    _ => prop_assert_eq!(&c.last_transition_time, &time(s.now)),
                }
            }
            previous = Some(status);
        }
    }

    /// An invalid spec on a CR that has children is Degraded with `InvalidSpec`, Stalled, and the
    /// message names every field error.
    #[test]
    fn invalid_spec_with_children_is_degraded(mut s in scenario(), extra in child()) {
        s.spec_errors = s.spec_errors.max(1);
        s.children.push(extra);
        let (first, _) = run_twice(&s);
        prop_assert_eq!(first.phase, Some(Phase::Degraded));
        let ready = condition(&first, "Ready");
        prop_assert_eq!(ready.reason.as_str(), "InvalidSpec");
        for error in spec_errors(&s) {
            prop_assert!(ready.message.contains(&error.to_string()), "{}", ready.message);
        }
        prop_assert!(is_true(&first, "Stalled"));
    }

    /// `Stalled` only for causes retrying cannot fix; exactly one of Ready / Reconciling / Stalled is
    /// true (kstatus' Current / InProgress / Failed); all five conditions, in order, with a documented
    /// CamelCase reason shared by all of them; foreign condition types are gone.
    #[test]
    fn conditions_follow_kstatus(s in scenario()) {
        let (first, _) = run_twice(&s);
        let types: Vec<_> = first.conditions.iter().map(|c| c.type_.as_str()).collect();
        let mut expected = lifecycle::TYPES.to_vec();
        if let Kind::MeshSync(_) = s.kind {
            expected.push(lifecycle::BROKER_CONNECTED);
            expected.push(lifecycle::WATCH_LIST_APPLIED);
            prop_assert!(is_true(&first, lifecycle::WATCH_LIST_APPLIED));
            let connected = condition(&first, lifecycle::BROKER_CONNECTED);
            let status = match s.link {
                Probe::Ok => "True",
                Probe::Skipped => "Unknown",
                Probe::Failing(_) => "False",
            };
            prop_assert_eq!(connected.status.as_str(), status);
        }
        prop_assert_eq!(types, expected);
        let non_retryable = matches!(
            situation(&s),
            "InvalidSpec(children)" | "InvalidSpec(no children)" | "ImmutableFieldChanged" | "ProgressDeadlineExceeded"
        );
        prop_assert_eq!(is_true(&first, "Stalled"), non_retryable);
        let trues = ["Ready", "Reconciling", "Stalled"].iter().filter(|t| is_true(&first, t)).count();
        prop_assert_eq!(trues, 1);
        prop_assert_eq!(is_true(&first, "Progressing"), first.phase == Some(Phase::Deploying));
        prop_assert_eq!(is_true(&first, "Degraded"), first.phase == Some(Phase::Degraded));
        let reason = &condition(&first, "Ready").reason;
        prop_assert!(Reason::ALL.iter().any(|r| r.as_str() == reason), "{reason} undocumented");
        for c in first.conditions.iter().filter(|c| lifecycle::TYPES.contains(&c.type_.as_str())) {
            prop_assert_eq!(&c.reason, reason);
            prop_assert!(!c.message.is_empty());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Documentation stays in step with the code

#[test]
fn every_table_row_is_an_edge_of_the_diagram() {
    let edges: BTreeSet<(String, String, String)> = DOC
        .lines()
        .filter_map(|l| {
            let (edge, label) = l.trim().split_once(": ")?;
            let (from, to) = edge.split_once(" --> ")?;
            Some((from.to_string(), to.to_string(), label.to_string()))
        })
        .collect();
    for row in table() {
        for from in &row.from {
            let found = edges.iter().any(|(f, t, label)| {
                f == from.as_str() && t == row.to.as_str() && label.contains(&row.reason)
            });
            assert!(found, "diagram lacks {from} --> {}: {}", row.to, row.reason);
        }
    }
}

#[test]
fn every_reason_is_documented() {
    let section = DOC.split("### Reasons").nth(1).unwrap();
    let documented: BTreeSet<String> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| cells(l)[0].clone())
        .collect();
    let code: BTreeSet<String> = Reason::ALL.iter().map(|r| r.as_str().to_string()).collect();
    assert_eq!(documented, code);
    for reason in &code {
        assert!(
            reason.chars().next().unwrap().is_ascii_uppercase()
                && reason.chars().all(|c| c.is_ascii_alphanumeric())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Examples

fn ready_broker_obs() -> Observations<BrokerFacts> {
    let s = Scenario {
        prev: None,
        generation: 3,
        spec_errors: 0,
        apply: Apply::Applied,
        children: vec![Child::Current, Child::LoadBalancerPending],
        kind: Kind::Broker(Probe::Ok),
        link: Probe::Ok,
        now: 0,
    };
    observations(&s, broker_facts(&s, Probe::Ok))
}

#[test]
fn load_balancer_pending_is_ready_and_visible() {
    let status = lifecycle::next(None, &ready_broker_obs(), time(0));
    assert_eq!(status.phase, Some(Phase::Ready));
    let ready = &status.conditions[0];
    assert_eq!(
        (
            ready.type_.as_str(),
            ready.status.as_str(),
            ready.reason.as_str()
        ),
        ("Ready", "True", "LoadBalancerPending")
    );
    assert_eq!(
        ready.message,
        "all 2 children current; NATS handshake succeeded; StatefulSet child-1: no ingress yet"
    );
    assert_eq!(
        status.endpoint.unwrap().internal,
        "b.meshery.svc.cluster.local:4222"
    );
}

/// A rollout's progress (replica counts, which check is pending) does not rewrite a Deploying
/// status at every step; a workload that loses readiness after Ready says exactly how far it is.
#[test]
fn deploying_names_the_lagging_children_and_degraded_says_how_far_they_are() {
    let lagging = |message: &str| {
        let mut obs = ready_broker_obs();
        let statefulset = obs.children.keys().next().unwrap().clone();
        obs.children.insert(
            statefulset,
            Readiness::InProgress {
                reason: "LessReady",
                message: message.into(),
            },
        );
        obs
    };
    let first = lifecycle::next(
        None,
        &lagging("not yet observed by its controller"),
        time(0),
    );
    assert_eq!(first.phase, Some(Phase::Deploying));
    assert_eq!(
        first.conditions[0].message,
        "rolling out: StatefulSet child-0"
    );
    let later = lifecycle::next(Some(&first), &lagging("1/3 replicas ready"), time(5));
    assert!(lifecycle::status_equal_ignoring_time(&first, &later));

    let ready = lifecycle::next(Some(&later), &ready_broker_obs(), time(10));
    assert_eq!(ready.phase, Some(Phase::Ready));
    let lost = lifecycle::next(Some(&ready), &lagging("2/3 replicas ready"), time(20));
    assert_eq!(lost.phase, Some(Phase::Degraded));
    assert!(
        lost.conditions[0]
            .message
            .contains("StatefulSet child-0: 2/3 replicas ready"),
        "{}",
        lost.conditions[0].message
    );
}

#[test]
fn broker_unreachable_after_grace() {
    let mut obs = ready_broker_obs();
    let ready = lifecycle::next(None, &obs, time(0));
    obs.kind.probe = NatsProbe::Failing {
        since: time(10),
        message: "nats: authorization violation".into(),
    };
    let blip = lifecycle::next(Some(&ready), &obs, time(20));
    assert_eq!(blip.phase, Some(Phase::Ready), "within the grace period");
    assert_eq!(blip.conditions[0].last_transition_time, time(0));
    let down = lifecycle::next(Some(&blip), &obs, time(40));
    assert_eq!(down.phase, Some(Phase::Degraded));
    let degraded = &down.conditions[2];
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "BrokerUnreachable")
    );
    assert_eq!(
        degraded.message,
        "NATS handshake failing since 2027-01-15T08:00:10Z (grace period 30s): nats: authorization violation"
    );
    assert_eq!(degraded.last_transition_time, time(40));
    assert!(!lifecycle::status_equal_ignoring_time(&blip, &down));
}

#[test]
fn meshsync_waits_for_its_broker() {
    let s = Scenario {
        prev: None,
        generation: 1,
        spec_errors: 0,
        apply: Apply::NotAttempted,
        children: vec![],
        kind: Kind::MeshSync(Dependency::Found(Some(Phase::Deploying))),
        link: Probe::Ok,
        now: 0,
    };
    let status = lifecycle::next(
        None,
        &observations(
            &s,
            meshsync_facts(Dependency::Found(Some(Phase::Deploying)), Probe::Ok, 0),
        ),
        time(0),
    );
    assert_eq!(status.phase, Some(Phase::Pending));
    let reconciling = &status.conditions[3];
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", "WaitingForBroker")
    );
    assert_eq!(
        reconciling.message,
        "waiting for Broker meshery/meshery-broker to become Ready"
    );
}

/// MeshSync reads its watch-list from `meshery/meshery-meshsync` only: any other MeshSync is told
/// so on a condition of its own, whatever its phase.
#[test]
fn a_meshsync_whose_watch_list_meshsync_does_not_read_says_so() {
    assert_eq!(
        WatchListSource::for_cr("meshery", "meshery-meshsync"),
        WatchListSource::ThisCr
    );
    let elsewhere = WatchListSource::FixedCr;
    for (namespace, name) in [("meshery", "other"), ("team-a", "meshery-meshsync")] {
        assert_eq!(WatchListSource::for_cr(namespace, name), elsewhere);
    }
    let s = Scenario {
        prev: None,
        generation: 1,
        spec_errors: 0,
        apply: Apply::Applied,
        children: vec![],
        kind: Kind::MeshSync(Dependency::Found(Some(Phase::Ready))),
        link: Probe::Ok,
        now: 0,
    };
    let facts = meshsync_facts(Dependency::Found(Some(Phase::Ready)), Probe::Ok, 0);
    let here = lifecycle::next(None, &observations(&s, facts.clone()), time(0));
    let status = lifecycle::next(
        None,
        &observations(
            &s,
            MeshSyncFacts {
                watch_list: elsewhere,
                ..facts
            },
        ),
        time(0),
    );
    assert_eq!(status.phase, here.phase, "the phase does not depend on it");
    let applied = status
        .conditions
        .iter()
        .find(|c| c.type_ == lifecycle::WATCH_LIST_APPLIED)
        .unwrap();
    assert_eq!(
        (applied.status.as_str(), applied.reason.as_str()),
        ("False", "ReadFromAnotherCR")
    );
    assert!(
        applied
            .message
            .contains("only from the MeshSync meshery/meshery-meshsync"),
        "{}",
        applied.message
    );
}

/// A MeshSync created with its Broker writes `Pending` once, not again at each step of the
/// Broker's own rollout; only a failed Broker changes what it says.
#[test]
fn meshsync_waiting_status_does_not_follow_the_brokers_phase() {
    let waiting = |broker_phase| {
        let s = Scenario {
            prev: None,
            generation: 1,
            spec_errors: 0,
            apply: Apply::NotAttempted,
            children: vec![],
            kind: Kind::MeshSync(Dependency::Found(broker_phase)),
            link: Probe::Ok,
            now: 0,
        };
        lifecycle::next(
            None,
            &observations(
                &s,
                meshsync_facts(Dependency::Found(broker_phase), Probe::Ok, 0),
            ),
            time(0),
        )
    };
    let first = waiting(None);
    assert_eq!(first.phase, Some(Phase::Pending));
    for broker_phase in [Phase::Pending, Phase::Deploying] {
        assert!(lifecycle::status_equal_ignoring_time(
            &first,
            &waiting(Some(broker_phase))
        ));
    }
    let failed = waiting(Some(Phase::Degraded));
    assert!(failed.conditions[0].message.ends_with("(it is Degraded)"));
}

#[test]
fn equality_ignores_only_transition_times() {
    let a = lifecycle::next(None, &ready_broker_obs(), time(0));
    let b = lifecycle::next(None, &ready_broker_obs(), time(99));
    assert_ne!(a, b);
    assert!(lifecycle::status_equal_ignoring_time(&a, &b));
    let mut c = a.clone();
    c.conditions[0].message.push('!');
    assert!(!lifecycle::status_equal_ignoring_time(&a, &c));
}

#[test]
fn messages_stay_within_the_api_limit() {
    let mut obs = ready_broker_obs();
    obs.spec_errors = vec![FieldError::new("spec.x", "é".repeat(40_000))];
    let status = lifecycle::next(None, &obs, time(0));
    let message = &status.conditions[0].message;
    assert_eq!(message.chars().count(), 32768);
    assert!(message.starts_with("invalid spec (running children are left as they are): spec.x: é"));
    assert!(message.ends_with('…'));
}

// ---------------------------------------------------------------------------------------------
// A new MeshSync's first status while its Broker rolls out

#[test]
fn a_new_meshsyncs_first_status_waits_only_for_a_broker_still_rolling_out_and_only_so_long() {
    let hold = lifecycle::FIRST_STATUS_HOLD;
    let created = time(0);
    let never_written: Option<&MeshSyncStatus> = None;
    let written = MeshSyncStatus::default();
    let valid = |dependency, apply| Observations {
        generation: 1,
        spec_errors: vec![],
        apply,
        children: BTreeMap::new(),
        kind: meshsync_facts(dependency, Probe::Skipped, 5),
    };
    let rolling_out = valid(
        Dependency::Found(Some(Phase::Deploying)),
        ApplyOutcome::NotAttempted,
    );
    let held = |previous, obs: &_, at: i64| {
        lifecycle::first_status_held(previous, obs, Some(&created), &time(at), hold)
    };

    // Held: no status yet, a valid spec, the Broker there and rolling out, the CR young.
    assert_eq!(
        held(never_written, &rolling_out, 5),
        Some(hold - SignedDuration::from_secs(5))
    );
    for phase in [None, Some(Phase::Pending)] {
        let obs = valid(Dependency::Found(phase), ApplyOutcome::NotAttempted);
        assert!(held(never_written, &obs, 5).is_some(), "{phase:?}");
    }

    // Reported at once: a status written before, a missing or Degraded Broker, an invalid spec,
    // something applied, no creation time; and once the hold has passed.
    assert_eq!(held(Some(&written), &rolling_out, 5), None);
    for dependency in [
        Dependency::NotFound,
        Dependency::Found(Some(Phase::Degraded)),
        Dependency::Custom,
    ] {
        let obs = valid(dependency, ApplyOutcome::NotAttempted);
        assert_eq!(held(never_written, &obs, 5), None, "{dependency:?}");
    }
    let mut invalid = rolling_out.clone();
    invalid.spec_errors = vec![FieldError::new("spec.size", "must be at least 1")];
    assert_eq!(held(never_written, &invalid, 5), None);
    let failed = valid(
        Dependency::Found(Some(Phase::Deploying)),
        ApplyOutcome::Failed {
            message: "denied".into(),
        },
    );
    assert_eq!(held(never_written, &failed, 5), None);
    assert_eq!(
        lifecycle::first_status_held(never_written, &rolling_out, None, &time(5), hold),
        None
    );
    let past = hold.as_secs();
    assert_eq!(held(never_written, &rolling_out, past), None);
    assert_eq!(held(never_written, &rolling_out, past + 60), None);
}
