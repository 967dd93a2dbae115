//! Pure-core micro benchmark: render + plan of one Broker + MeshSync pair, in µs.
//!
//! The observed side is realistic: the rendered objects are server-side applied once to an
//! in-process kube-sim (as the operator's field manager, owners created first) and the API
//! server's answers — defaulted, with managedFields — are what `plan` compares against. That is the
//! steady-state reconcile (every entry Unchanged, the full comparison walked). A cold plan (nothing
//! observed yet, every entry Create) is reported as well.
//!
//! Run: `cargo bench --bench render_plan` (or scripts/bench.sh). Not a test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube_sim::{Sim, SimOptions};
use meshery_operator::api::{Broker, MeshSync};
use meshery_operator::controller::api_for;
use meshery_operator::diff::{Owner, managed_entries, plan};
use meshery_operator::object::Object;
use meshery_operator::render::labels::FIELD_MANAGER;
use meshery_operator::render::{
    BrokerAuthInput, BrokerCredential, BrokerInputs, MeshSyncInputs, ResolvedBroker,
    desired_broker, desired_meshsync,
};
use serde_json::json;

const NAMESPACE: &str = "bench";

struct Pair {
    broker: Broker,
    broker_inputs: BrokerInputs,
    broker_owner: Owner,
    broker_observed: Vec<Object>,
    meshsync: MeshSync,
    meshsync_inputs: MeshSyncInputs,
    meshsync_owner: Owner,
    meshsync_observed: Vec<Object>,
}

fn owner(kind: &str, meta: &kube::api::ObjectMeta) -> Owner {
    Owner {
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
    }
}

/// Creates the CRs in kube-sim, applies what they render, and keeps the server's answers.
async fn setup() -> Pair {
    let crds = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds");
    let sim = Sim::start(SimOptions {
        crds_dir: Some(crds),
        ..SimOptions::default()
    })
    .await
    .expect("kube-sim starts");
    let client = sim.client();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap(),
        )
        .await
        .expect("namespace");
    let brokers: Api<Broker> = Api::namespaced(client.clone(), NAMESPACE);
    let broker: Broker = serde_json::from_value(json!({
        "apiVersion": "meshery.io/v1alpha1", "kind": "Broker",
        "metadata": {"name": "broker", "namespace": NAMESPACE},
        "spec": {"size": 1},
    }))
    .unwrap();
    let broker = brokers
        .create(&PostParams::default(), &broker)
        .await
        .expect("Broker");
    let meshsyncs: Api<MeshSync> = Api::namespaced(client.clone(), NAMESPACE);
    let meshsync: MeshSync = serde_json::from_value(json!({
        "apiVersion": "meshery.io/v1alpha1", "kind": "MeshSync",
        "metadata": {"name": "meshsync", "namespace": NAMESPACE},
        "spec": {"size": 1, "broker": {"native": {"name": "broker", "namespace": NAMESPACE}}},
    }))
    .unwrap();
    let meshsync = meshsyncs
        .create(&PostParams::default(), &meshsync)
        .await
        .expect("MeshSync");
    let crd_uid = Api::<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    >::all(client.clone())
    .get("meshsyncs.meshery.io")
    .await
    .expect("the MeshSync CRD")
    .metadata
    .uid;
    let broker_inputs = BrokerInputs {
        default_version: "2.10.24-alpine".into(),
        auth: BrokerAuthInput::Generated {
            token: "0123456789abcdef0123456789abcdef".into(),
        },
    };
    let meshsync_inputs = MeshSyncInputs {
        default_version: "v1.0.3".into(),
        broker: ResolvedBroker {
            scheme: "nats".into(),
            address: format!("broker.{NAMESPACE}.svc.cluster.local:4222"),
            credential: BrokerCredential::SecretKey {
                secret: "broker-auth".into(),
                key: "token".into(),
            },
            credential_revision: "00000000-0000-0000-0000-000000000000/1".into(),
            tls_ca: None,
        },
        crd_uid,
    };
    let mut applied = Vec::new();
    for object in desired_broker(&broker, &broker_inputs)
        .into_iter()
        .chain(desired_meshsync(&meshsync, &meshsync_inputs))
    {
        let key = object.key();
        let api = api_for(&client, &key).expect("a managed kind");
        let written = api
            .patch(
                &key.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object.0),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {key}: {e}"));
        applied.push(Object(serde_json::to_value(written).unwrap()));
    }
    let broker_owner = owner("Broker", &broker.metadata);
    let meshsync_owner = owner("MeshSync", &meshsync.metadata);
    let (broker_observed, meshsync_observed) = applied.into_iter().partition(|o: &Object| {
        o.0["metadata"]["labels"]["app.kubernetes.io/instance"] == "broker"
    });
    sim.stop();
    Pair {
        broker,
        broker_inputs,
        broker_owner,
        broker_observed,
        meshsync,
        meshsync_inputs,
        meshsync_owner,
        meshsync_observed,
    }
}

fn render_pair(pair: &Pair) -> (Vec<Object>, Vec<Object>) {
    (
        desired_broker(black_box(&pair.broker), black_box(&pair.broker_inputs)),
        desired_meshsync(black_box(&pair.meshsync), black_box(&pair.meshsync_inputs)),
    )
}

fn plan_pair(pair: &Pair, desired: &(Vec<Object>, Vec<Object>), cold: bool) -> usize {
    let none = Vec::new();
    let (bo, mo) = if cold {
        (&none, &none)
    } else {
        (&pair.broker_observed, &pair.meshsync_observed)
    };
    let b = plan(&desired.0, bo, &pair.broker_owner, FIELD_MANAGER);
    let m = plan(&desired.1, mo, &pair.meshsync_owner, FIELD_MANAGER);
    b.entries.len() + m.entries.len()
}

/// Runs `f` for `iterations` after a warm-up, returning per-iteration durations, sorted.
fn measure(iterations: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..iterations / 10 {
        f();
    }
    let mut times: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn report(name: &str, times: &[Duration]) {
    let at = |q: f64| times[((q * times.len() as f64) as usize).min(times.len() - 1)];
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} |",
        times.len(),
        micros(at(0.5)),
        micros(at(0.99)),
        micros(times[0]),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing useful: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("render_plan: run with `cargo bench --bench render_plan`");
        return;
    }
    let iterations: usize = std::env::var("RENDER_PLAN_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let pair = runtime.block_on(setup());
    drop(runtime);

    let desired = render_pair(&pair);
    let steady = plan(
        &desired.0,
        &pair.broker_observed,
        &pair.broker_owner,
        FIELD_MANAGER,
    )
    .counts();
    let steady_ms = plan(
        &desired.1,
        &pair.meshsync_observed,
        &pair.meshsync_owner,
        FIELD_MANAGER,
    )
    .counts();
    println!(
        "Broker: {} objects rendered, observed plan {}; MeshSync: {} objects rendered, observed plan {}",
        desired.0.len(),
        steady.summary(),
        desired.1.len(),
        steady_ms.summary()
    );
    assert!(
        steady.create
            + steady.update
            + steady.prune
            + steady_ms.create
            + steady_ms.update
            + steady_ms.prune
            == 0,
        "the observed side must be the applied render"
    );
    let observed_bytes: usize = pair
        .broker_observed
        .iter()
        .chain(&pair.meshsync_observed)
        .map(|o| o.0.to_string().len())
        .sum();
    println!("observed side: {observed_bytes} bytes of JSON, managedFields included\n");
    println!("| step (one Broker + one MeshSync) | iterations | median µs | p99 µs | min µs |");
    println!("|---|---:|---:|---:|---:|");
    report(
        "render + plan, steady state (observed = applied render)",
        &measure(iterations, || {
            let desired = render_pair(&pair);
            black_box(plan_pair(&pair, &desired, false));
        }),
    );
    report(
        "render only",
        &measure(iterations, || {
            black_box(render_pair(&pair));
        }),
    );
    report(
        "plan only, steady state",
        &measure(iterations, || {
            black_box(plan_pair(&pair, &desired, false));
        }),
    );
    report(
        "of which: decoding the observed managedFields (fieldsV1)",
        &measure(iterations, || {
            for object in pair.broker_observed.iter().chain(&pair.meshsync_observed) {
                black_box(managed_entries(black_box(&object.0)));
            }
        }),
    );
    report(
        "render + plan, cold (nothing observed)",
        &measure(iterations, || {
            let desired = render_pair(&pair);
            black_box(plan_pair(&pair, &desired, true));
        }),
    );
}
