//! Bad input end to end: malformed and hostile Broker and MeshSync CRs against kube-sim (with the
//! CRD schemas installed) and the operator running in-process.
//!
//! Every case is either refused by the CRD schema with a 422 naming the field, or accepted and given
//! `InvalidSpec` with a message naming the field. Cases applied over the existing valid CRs must not
//! write to their children; new CRs get no children at all; the operator never panics and never
//! loops (writes are counted per case and after the suite).

mod harness;

use std::time::{Duration, Instant};

use harness::{Cluster, test_settings};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use meshery_operator::api::{Broker, MeshSync, Phase};
use meshery_operator::cli::parse_documents;
use meshery_operator::controller::BrokerProbeMode;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);
const NS: &str = "meshery";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Broker,
    MeshSync,
}

/// What must happen to a case.
#[derive(Clone, Debug)]
enum Expect {
    /// Refused by the CRD schema: 422 whose message names this field path.
    Schema(&'static str),
    /// Accepted; status `InvalidSpec` whose message names this field path.
    Invalid(&'static str),
}

struct Case {
    what: String,
    kind: Kind,
    /// The CR as sent (a full object: name, namespace, spec).
    body: Value,
    expect: Expect,
}

fn broker(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "meshery.io/v1alpha1", "kind": "Broker",
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

fn meshsync(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "meshery.io/v1alpha1", "kind": "MeshSync",
           "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

/// A MeshSync spec publishing to the valid Broker, with `watch` as its `watch-list.data`.
fn meshsync_watch(data: Value) -> Value {
    json!({"broker": {"native": {"name": "meshery-broker"}}, "watch-list": {"data": data}})
}

fn cases() -> Vec<Case> {
    use Expect::{Invalid, Schema};
    let b = |what: &str, spec: Value, expect| Case {
        what: what.into(),
        kind: Kind::Broker,
        body: broker("meshery-broker", spec),
        expect,
    };
    let m = |what: &str, spec: Value, expect| Case {
        what: what.into(),
        kind: Kind::MeshSync,
        body: meshsync("meshery-meshsync", spec),
        expect,
    };
    let huge = "x".repeat(100_000);
    let long_name_53 = format!("b{}", "r".repeat(52));
    let long_meshsync_64 = format!("m{}", "s".repeat(63));
    vec![
        // Out-of-range sizes.
        b("size 0", json!({"size": 0}), Schema("spec.size")),
        b("size 11", json!({"size": 11}), Schema("spec.size")),
        b("size -5", json!({"size": -5}), Schema("spec.size")),
        b(
            "size 2^40",
            json!({"size": 1_099_511_627_776_i64}),
            Schema("spec.size"),
        ),
        m(
            "meshsync size 100",
            json!({"size": 100, "broker": {"native": {"name": "meshery-broker"}}}),
            Schema("spec.size"),
        ),
        // Wrong types.
        b(
            "size as a string",
            json!({"size": "three"}),
            Schema("spec.size"),
        ),
        b("size as a float", json!({"size": 1.5}), Schema("spec.size")),
        b(
            "service as a list",
            json!({"size": 1, "service": ["LoadBalancer"]}),
            Schema("spec.service"),
        ),
        b(
            "tls.enabled as a string",
            json!({"size": 1, "tls": {"enabled": "yes"}}),
            Schema("spec.tls.enabled"),
        ),
        m(
            "whitelist as a number",
            meshsync_watch(json!({"whitelist": 5})),
            Schema("spec.watch-list.data.whitelist"),
        ),
        // Unknown enums.
        b(
            "service type Foo",
            json!({"size": 1, "service": {"type": "Foo"}}),
            Schema("spec.service.type"),
        ),
        b(
            "service type lower-case",
            json!({"size": 1, "service": {"type": "clusterip"}}),
            Schema("spec.service.type"),
        ),
        // Out-of-range numbers and malformed quantities.
        b(
            "maxConnections 0",
            json!({"size": 1, "config": {"maxConnections": 0}}),
            Schema("spec.config.maxConnections"),
        ),
        b(
            "maxPayload not a quantity",
            json!({"size": 1, "config": {"maxPayload": "lots"}}),
            Schema("spec.config.maxPayload"),
        ),
        b(
            "maxPayload above 64Mi",
            json!({"size": 1, "config": {"maxPayload": "1Ti"}}),
            Invalid("spec.config.maxPayload"),
        ),
        b(
            "storageSize zero",
            json!({"size": 1, "jetstream": {"enabled": true, "storageSize": "0"}}),
            Invalid("spec.jetstream.storageSize"),
        ),
        b(
            "requests above limits",
            json!({"size": 1, "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}),
            Invalid("spec.resources.requests.cpu"),
        ),
        b(
            "CIDR with a /99 prefix",
            json!({"size": 1, "networkPolicy": {"enabled": true, "allowedCIDRs": ["10.0.0.0/99"]}}),
            Invalid("spec.networkPolicy.allowedCIDRs[0]"),
        ),
        b(
            "CIDR that is a word",
            json!({"size": 1, "networkPolicy": {"enabled": true, "allowedCIDRs": ["everyone"]}}),
            Schema("spec.networkPolicy.allowedCIDRs[0]"),
        ),
        // Cross-field rules.
        b(
            "clustering off with size 3",
            json!({"size": 3, "clustering": {"enabled": false}}),
            Invalid("spec.clustering.enabled"),
        ),
        b(
            "loadBalancerClass on ClusterIP",
            json!({"size": 1, "service": {"type": "ClusterIP", "loadBalancerClass": "example.com/lb"}}),
            Invalid("spec.service.loadBalancerClass"),
        ),
        b(
            "loadBalancerSourceRanges on NodePort",
            json!({"size": 1, "service": {"type": "NodePort", "loadBalancerSourceRanges": ["10.0.0.0/8"]}}),
            Invalid("spec.service.loadBalancerSourceRanges"),
        ),
        b(
            "tls enabled without a Secret",
            json!({"size": 1, "tls": {"enabled": true}}),
            Invalid("spec.tls.secretName"),
        ),
        // Image, version, names of referenced objects.
        b(
            "image with a tag",
            json!({"size": 1, "image": "nats:latest"}),
            Invalid("spec.image"),
        ),
        b(
            "image in upper case",
            json!({"size": 1, "image": "Registry/NATS"}),
            Invalid("spec.image"),
        ),
        b(
            "version with a space",
            json!({"size": 1, "version": "2.10 alpine"}),
            Schema("spec.version"),
        ),
        b(
            "auth Secret name with '_'",
            json!({"size": 1, "auth": {"secretRef": {"name": "my_secret"}}}),
            Invalid("spec.auth.secretRef.name"),
        ),
        b(
            "externalEndpointOverride without a port",
            json!({"size": 1, "service": {"externalEndpointOverride": "nats.example.com"}}),
            Schema("spec.service.externalEndpointOverride"),
        ),
        b(
            "externalEndpointOverride port 0",
            json!({"size": 1, "service": {"externalEndpointOverride": "nats.example.com:0"}}),
            Invalid("spec.service.externalEndpointOverride"),
        ),
        // Huge strings.
        b(
            "100 kB image",
            json!({"size": 1, "image": huge.clone()}),
            Schema("spec.image"),
        ),
        b(
            "100 kB version",
            json!({"size": 1, "version": huge.clone()}),
            Schema("spec.version"),
        ),
        b(
            "1000-character annotation key",
            json!({"size": 1, "service": {"annotations": {"k".repeat(1000): "v"}}}),
            Invalid("spec.service.annotations"),
        ),
        m(
            "100 kB whitelist",
            meshsync_watch(json!({"whitelist": huge.clone()})),
            Invalid("spec.watch-list.data.whitelist"),
        ),
        // Unicode.
        b(
            "Unicode version",
            json!({"size": 1, "version": "2.10-\u{3b2}"}),
            Schema("spec.version"),
        ),
        b(
            "Unicode image",
            json!({"size": 1, "image": "n\u{e4}ts"}),
            Invalid("spec.image"),
        ),
        b(
            "Unicode annotation key",
            json!({"size": 1, "service": {"annotations": {"\u{1f600}": "x"}}}),
            Invalid("spec.service.annotations"),
        ),
        m(
            "Unicode resource in the whitelist",
            meshsync_watch(
                json!({"whitelist": "[{\"Resource\":\"p\u{f6}ds.v1.\",\"Events\":[\"ADDED\"]}]"}),
            ),
            Invalid("spec.watch-list.data.whitelist[0].Resource"),
        ),
        // MeshSync brokers.
        m(
            "neither broker kind",
            json!({"size": 1}),
            Invalid("spec.broker"),
        ),
        m(
            "both broker kinds",
            json!({"broker": {"native": {"name": "meshery-broker"}, "custom": {"url": "nats://n:4222"}}}),
            Invalid("spec.broker"),
        ),
        m(
            "custom URL with http://",
            json!({"broker": {"custom": {"url": "http://nats.example.com:4222"}}}),
            Schema("spec.broker.custom.url"),
        ),
        m(
            "custom URL with javascript:",
            json!({"broker": {"custom": {"url": "javascript:alert(1)"}}}),
            Schema("spec.broker.custom.url"),
        ),
        m(
            "custom URL without a host",
            json!({"broker": {"custom": {"url": "nats://"}}}),
            Schema("spec.broker.custom.url"),
        ),
        m(
            "custom URL with a path",
            json!({"broker": {"custom": {"url": "nats://n:4222/x?y=1"}}}),
            Schema("spec.broker.custom.url"),
        ),
        m(
            "custom URL not a URL",
            json!({"broker": {"custom": {"url": "::::"}}}),
            Schema("spec.broker.custom.url"),
        ),
        m(
            "native broker name in upper case",
            json!({"broker": {"native": {"name": "Meshery"}}}),
            Invalid("spec.broker.native.name"),
        ),
        m(
            "native broker namespace with '_'",
            json!({"broker": {"native": {"name": "meshery-broker", "namespace": "a_b"}}}),
            Invalid("spec.broker.native.namespace"),
        ),
        // Watch-lists.
        m(
            "whitelist truncated JSON",
            meshsync_watch(json!({"whitelist": "[{\"Resource\":"})),
            Invalid("spec.watch-list.data.whitelist"),
        ),
        m(
            "whitelist an object",
            meshsync_watch(json!({"whitelist": "{\"Resource\":\"pods.v1.\"}"})),
            Invalid("spec.watch-list.data.whitelist"),
        ),
        m(
            "whitelist singular resource",
            meshsync_watch(
                json!({"whitelist": "[{\"Resource\":\"pod.v1.\",\"Events\":[\"ADDED\"]}]"}),
            ),
            Invalid("spec.watch-list.data.whitelist[0].Resource"),
        ),
        m(
            "whitelist made-up resource",
            meshsync_watch(
                json!({"whitelist": "[{\"Resource\":\"gizmos.v1.\",\"Events\":[\"ADDED\"]}]"}),
            ),
            Invalid("spec.watch-list.data.whitelist[0].Resource"),
        ),
        m(
            "whitelist unknown event",
            meshsync_watch(
                json!({"whitelist": "[{\"Resource\":\"pods.v1.\",\"Events\":[\"EXPLODED\"]}]"}),
            ),
            Invalid("spec.watch-list.data.whitelist[0].Events"),
        ),
        m(
            "blacklist not JSON",
            meshsync_watch(json!({"blacklist": "secrets.v1."})),
            Invalid("spec.watch-list.data.blacklist"),
        ),
        m(
            "blacklist singular resource",
            meshsync_watch(json!({"blacklist": "[\"secret.v1.\"]"})),
            Invalid("spec.watch-list.data.blacklist[0]"),
        ),
        m(
            "blacklist of numbers",
            meshsync_watch(json!({"blacklist": "[1, 2]"})),
            Invalid("spec.watch-list.data.blacklist[0]"),
        ),
        m(
            "both whitelist and blacklist",
            meshsync_watch(
                json!({"whitelist": "[{\"Resource\":\"pods.v1.\",\"Events\":[\"ADDED\"]}]", "blacklist": "[\"secrets.v1.\"]"}),
            ),
            Invalid("spec.watch-list.data"),
        ),
        // New CRs with hostile names.
        Case {
            what: "Broker name of 53 characters (derived pod names pass 63)".into(),
            kind: Kind::Broker,
            body: broker(&long_name_53, json!({"size": 1})),
            expect: Invalid("metadata.name"),
        },
        Case {
            what: "MeshSync name of 64 characters".into(),
            kind: Kind::MeshSync,
            body: meshsync(
                &long_meshsync_64,
                json!({"broker": {"native": {"name": "meshery-broker"}}}),
            ),
            expect: Invalid("metadata.name"),
        },
        Case {
            what: "Broker named *-headless".into(),
            kind: Kind::Broker,
            body: broker("meshery-broker-headless", json!({"size": 1})),
            expect: Invalid("metadata.name"),
        },
        Case {
            what: "Broker name starting with a digit".into(),
            kind: Kind::Broker,
            body: broker("1broker", json!({"size": 1})),
            expect: Invalid("metadata.name"),
        },
        Case {
            what: "Unicode Broker name".into(),
            kind: Kind::Broker,
            body: broker("br\u{f6}ker", json!({"size": 1})),
            expect: Schema("metadata.name"),
        },
        Case {
            what: "Broker name of 300 characters".into(),
            kind: Kind::Broker,
            body: broker(&"a".repeat(300), json!({"size": 1})),
            expect: Schema("metadata.name"),
        },
    ]
}

fn api(cluster: &Cluster, kind: Kind) -> Api<DynamicObject> {
    let resource = match kind {
        Kind::Broker => ApiResource::erase::<Broker>(&()),
        Kind::MeshSync => ApiResource::erase::<MeshSync>(&()),
    };
    Api::namespaced_with(cluster.client.clone(), NS, &resource)
}

/// The Ready condition's (reason, message) and whether status reflects the object's generation.
fn ready_of(object: &DynamicObject) -> Option<(String, String, bool)> {
    let status = object.data.get("status")?;
    let observed = status.get("observedGeneration").and_then(Value::as_i64);
    let current = observed == object.metadata.generation;
    let ready = status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?;
    Some((
        ready["reason"].as_str()?.to_string(),
        ready["message"].as_str()?.to_string(),
        current,
    ))
}

/// The children's resourceVersions, keyed `kind/name`, as listed with our managed-by label.
async fn children_versions(cluster: &Cluster) -> Vec<String> {
    let mut out = Vec::new();
    for (api_version, plural) in [
        ("v1", "secrets"),
        ("v1", "configmaps"),
        ("v1", "services"),
        ("v1", "serviceaccounts"),
        ("apps/v1", "statefulsets"),
        ("apps/v1", "deployments"),
        ("rbac.authorization.k8s.io/v1", "clusterroles"),
        ("rbac.authorization.k8s.io/v1", "clusterrolebindings"),
    ] {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let resource = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: api_version.into(),
            kind: String::new(),
            plural: plural.into(),
        };
        let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &resource);
        let list = api
            .list(
                &kube::api::ListParams::default()
                    .labels("app.kubernetes.io/managed-by=meshery-operator"),
            )
            .await
            .expect("listing children");
        for item in list {
            out.push(format!(
                "{plural}/{}/{}@{}",
                item.metadata.namespace.clone().unwrap_or_default(),
                item.metadata.name.clone().unwrap_or_default(),
                item.metadata.resource_version.clone().unwrap_or_default()
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_cr_is_refused_by_the_schema_or_marked_invalid_and_changes_no_child() {
    let mut cluster = Cluster::start().await;
    cluster.create_namespace(NS).await;
    // Something that is not ours, which must stay untouched.
    let unrelated: Api<k8s_openapi::api::core::v1::ConfigMap> = cluster.api(NS);
    let unrelated_cm = unrelated
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "unrelated"}, "data": {"a": "b"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    let mut settings = test_settings();
    settings.broker_probe = BrokerProbeMode::Off;
    cluster.start_operator(settings);
    let valid_broker = broker("meshery-broker", json!({"size": 1}));
    let valid_meshsync = meshsync(
        "meshery-meshsync",
        json!({"broker": {"native": {"name": "meshery-broker"}}}),
    );
    let params = PatchParams::apply("kubectl").force();
    api(&cluster, Kind::Broker)
        .patch("meshery-broker", &params, &Patch::Apply(&valid_broker))
        .await
        .unwrap();
    api(&cluster, Kind::MeshSync)
        .patch("meshery-meshsync", &params, &Patch::Apply(&valid_meshsync))
        .await
        .unwrap();
    cluster
        .wait_for_broker_phase(NS, "meshery-broker", Phase::Ready, WAIT)
        .await;
    cluster
        .wait_for_meshsync_phase(NS, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = children_versions(&cluster).await;
    assert!(before.len() >= 8, "children: {before:#?}");

    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let (mut schema, mut invalid, mut max_writes) = (0, 0, 0usize);
    let started = Instant::now();
    for case in &cases {
        cluster.sim.reset_stats();
        let name = case.body["metadata"]["name"].as_str().unwrap().to_string();
        let existing = matches!(name.as_str(), "meshery-broker" | "meshery-meshsync");
        let api = api(&cluster, case.kind);
        let result = api.patch(&name, &params, &Patch::Apply(&case.body)).await;
        let path = match case.expect {
            Expect::Schema(path) | Expect::Invalid(path) => path,
        };
        let outcome = match result {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{}: {status:?}", case.what);
                assert!(
                    status.message.contains(path),
                    "{}: the 422 does not name {path}: {}",
                    case.what,
                    status.message
                );
                schema += 1;
                "422"
            }
            Err(e) => panic!(
                "{}: expected a 422 or InvalidSpec naming {path}, got {e}",
                case.what
            ),
            Ok(applied) => {
                let generation = applied.metadata.generation;
                let deadline = Instant::now() + WAIT;
                let (reason, message) = loop {
                    let current = api.get(&name).await.unwrap();
                    if current.metadata.generation == generation
                        && let Some((reason, message, true)) = ready_of(&current)
                    {
                        break (reason, message);
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{}: no status for generation {generation:?}: {:?}",
                        case.what,
                        current.data.get("status")
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                };
                assert_eq!(reason, "InvalidSpec", "{}: {message}", case.what);
                assert!(
                    message.contains(path),
                    "{}: the message does not name {path}: {message}",
                    case.what
                );
                assert!(
                    message.len() < 40_000,
                    "{}: a {}-byte status message",
                    case.what,
                    message.len()
                );
                invalid += 1;
                "InvalidSpec"
            }
        };
        if !matches!(
            (&case.expect, outcome),
            (Expect::Schema(_), "422") | (Expect::Invalid(_), "InvalidSpec")
        ) {
            println!(
                "BAD-INPUT| note: {} expected {:?}, got {outcome}",
                case.what, case.expect
            );
        }
        // Give a hot loop a chance to show, then check what was written.
        tokio::time::sleep(Duration::from_millis(400)).await;
        // The operator's writes: the user's own apply of the CR (field manager kubectl) left out.
        let writes: Vec<String> = cluster
            .sim
            .stats()
            .writes
            .iter()
            .filter(|w| !w.dry_run && w.field_manager.as_deref() != Some("kubectl"))
            .map(|w| {
                format!(
                    "{} {} {}/{}",
                    w.verb,
                    w.resource,
                    w.namespace.as_deref().unwrap_or(""),
                    w.name.as_deref().unwrap_or("")
                )
            })
            .collect();
        let stray: Vec<&String> = writes
            .iter()
            .filter(|w| {
                !(w.contains("brokers.meshery.io/status")
                    || w.contains("meshsyncs.meshery.io/status")
                    || w.contains("events.events.k8s.io")
                    // Deleting a new bad CR after its case is the test's own doing.
                    || w.starts_with("delete brokers.meshery.io ")
                    || w.starts_with("delete meshsyncs.meshery.io "))
            })
            .collect();
        assert!(
            stray.is_empty(),
            "{}: writes to children: {stray:#?}",
            case.what
        );
        max_writes = max_writes.max(writes.len());
        assert!(
            writes.len() <= 6,
            "{}: {} writes: {writes:#?}",
            case.what,
            writes.len()
        );
        if !existing && let Ok(created) = api.get(&name).await {
            // A new CR with a bad name gets no children; remove it for the next case.
            let _ = created;
            api.delete(&name, &Default::default()).await.unwrap();
        }
        println!(
            "BAD-INPUT| {:<55} | {:<11} | {}",
            case.what,
            outcome,
            writes.len()
        );
    }
    println!(
        "BAD-INPUT| total {} cases: {schema} refused by the schema, {invalid} InvalidSpec; at most {max_writes} writes per case; {:.1} s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );

    // Left invalid, the CRs cost nothing: no writes across several resyncs.
    cluster.sim.reset_stats();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let idle = harness::writes(&cluster.sim);
    assert!(idle.is_empty(), "writes while invalid and idle: {idle:#?}");
    let after = children_versions(&cluster).await;
    assert_eq!(before, after, "children changed while the CRs were invalid");
    assert_eq!(
        unrelated
            .get("unrelated")
            .await
            .unwrap()
            .metadata
            .resource_version,
        unrelated_cm.metadata.resource_version
    );

    // And valid again, they converge with the same children.
    api(&cluster, Kind::Broker)
        .patch("meshery-broker", &params, &Patch::Apply(&valid_broker))
        .await
        .unwrap();
    api(&cluster, Kind::MeshSync)
        .patch("meshery-meshsync", &params, &Patch::Apply(&valid_meshsync))
        .await
        .unwrap();
    cluster
        .wait_for_broker_phase(NS, "meshery-broker", Phase::Ready, WAIT)
        .await;
    cluster
        .wait_for_meshsync_phase(NS, "meshery-meshsync", Phase::Ready, WAIT)
        .await;
    cluster.stop_operator().await;
}

/// YAML with duplicate keys never reaches the operator: `kubectl apply --server-side` refuses it,
/// and so does the operator's own reader (`plan`, `render`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_with_duplicate_keys_is_refused_by_kubectl_and_by_plan() {
    let yaml = "apiVersion: meshery.io/v1alpha1\nkind: Broker\nmetadata:\n  name: dup\n  namespace: meshery\nspec:\n  size: 1\n  size: 3\n";
    let error = parse_documents("dup.yaml", yaml).unwrap_err().to_string();
    assert!(error.contains("duplicate"), "{error}");

    let cluster = Cluster::start().await;
    cluster.create_namespace(NS).await;
    let mut child = std::process::Command::new("kubectl")
        .args(["apply", "--server-side", "-f", "-"])
        .env("KUBECONFIG", cluster.sim.kubeconfig_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "BAD-INPUT| kubectl apply --server-side on duplicate keys: exit {:?}, {}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).trim(),
        stderr.trim()
    );
    let brokers: Api<Broker> = cluster.api(NS);
    if output.status.success() {
        // kubectl's YAML-to-JSON conversion keeps the last value: the API server never sees the
        // duplicate, and what it stores is an ordinary, schema-checked CR.
        let stored = brokers.get("dup").await.unwrap();
        println!("BAD-INPUT| kubectl kept spec.size = {}", stored.spec.size);
        assert!(stored.spec.size == 3 || stored.spec.size == 1);
    } else {
        assert!(
            stderr.contains("already defined") || stderr.contains("duplicate"),
            "{stderr}"
        );
        assert!(brokers.get_opt("dup").await.unwrap().is_none());
    }
    // The same document through the plan binary: exit 2, one line naming the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dup.yaml");
    std::fs::write(&path, yaml).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_meshery-operator"))
        .args(["plan", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("dup.yaml") && stderr.contains("duplicate"),
        "{stderr}"
    );
}
