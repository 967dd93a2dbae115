//! Conformance with the real `kubectl` (a client nobody here wrote), against the server under test
//! (a kube-sim, or the real API server of `KUBE_SIM_REFERENCE_KUBECONFIG`).

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// On the reference server the tests share the cluster-scoped fixture CRDs, which
/// `kubectl_conformance` deletes at its end: they take turns.
static CRDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Kubectl {
    kubeconfig: PathBuf,
    namespace: String,
    cache: tempfile::TempDir,
}

impl Kubectl {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--namespace", &self.namespace, "--cache-dir"])
            .arg(self.cache.path())
            .args(args);
        c
    }
    /// Run, returning (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.cmd(args).output().expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }
    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "kubectl {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl json")
    }
}

fn kubectl_available() -> bool {
    let found = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok();
    if !found {
        eprintln!(
            "\n\n!!!!! kubectl NOT FOUND: skipping the kubectl conformance test (CI installs kubectl) !!!!!\n\n"
        );
    }
    found
}

/// kubectl's human-readable table as rows of cells (columns are two or more spaces apart), with
/// ages (`5s`, `2m3s`, …) shown as `<age>`.
fn table(out: &str) -> Vec<Vec<String>> {
    let age = regex::Regex::new(r"^([0-9]+[smhd])+$").unwrap();
    out.lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(|cell| {
                    if age.is_match(cell) {
                        "<age>".to_string()
                    } else {
                        cell.to_string()
                    }
                })
                .collect()
        })
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into()
}

/// Applying the CRDs the server was started with (`kube-sim --crds`, or on the reference server
/// applied by another manager) is no conflict: identical values never conflict. The fixture writes
/// `maximum: 10.0`, as schemars does; it reads back as `10`, as Go encodes a whole float64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapplying_the_installed_crds_is_no_conflict() {
    let _crds = CRDS.lock().await;
    if !kubectl_available() {
        return;
    }
    let server = common::server("kubectl-crds", common::Crds::Installed).await;
    let k = Kubectl {
        kubeconfig: server.kubeconfig_path().to_path_buf(),
        namespace: server.namespace().to_string(),
        cache: tempfile::tempdir().unwrap(),
    };
    let fixtures = common::fixtures();
    let out = k.ok(&["apply", "--server-side", "-f", fixtures.to_str().unwrap()]);
    assert_eq!(out.matches("serverside-applied").count(), 2, "{out}");
    let maximum = k.ok(&[
        "get",
        "crd",
        "widgets.example.com",
        "-o",
        "jsonpath={.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.size.maximum}",
    ]);
    assert_eq!(maximum, "10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_conformance() {
    let _crds = CRDS.lock().await;
    if !kubectl_available() {
        return;
    }
    // The CRDs are applied with kubectl itself.
    let server = common::server("kubectl", common::Crds::Absent).await;
    let client = server.client();
    let k = Kubectl {
        kubeconfig: server.kubeconfig_path().to_path_buf(),
        namespace: server.namespace().to_string(),
        cache: tempfile::tempdir().unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let fixtures = common::fixtures();

    // apply --server-side of the CRDs, then wait for Established.
    for f in ["widgets.example.com.yaml", "gadgets.example.com.yaml"] {
        let out = k.ok(&[
            "apply",
            "--server-side",
            "-f",
            fixtures.join(f).to_str().unwrap(),
        ]);
        assert!(out.contains("serverside-applied"), "{out}");
    }
    let out = k.ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=120s",
        "crd/widgets.example.com",
        "crd/gadgets.example.com",
    ]);
    assert_eq!(out.matches("condition met").count(), 2, "{out}");

    // api-resources lists CRD resources with short names and categories.
    let out = k.ok(&["api-resources", "--api-group=example.com", "-o", "wide"]);
    let line = out.lines().find(|l| l.starts_with("widgets")).expect(&out);
    assert!(
        line.contains("wd")
            && line.contains("toys")
            && line.contains("Widget")
            && line.contains("true"),
        "{line}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("gadgets") && l.contains("false")),
        "{out}"
    );
    let out = k.ok(&["api-resources", "--categories=toys", "-o", "name"]);
    assert_eq!(out.trim(), "widgets.example.com");

    // apply --server-side create, then update.
    let w = write(
        dir.path(),
        "w.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  version: 2.10.0\n  size: 3\n",
    );
    assert!(
        k.ok(&["apply", "--server-side", "-f", &w])
            .contains("widget.example.com/w1 serverside-applied")
    );
    let obj = k.json(&["get", "widget", "w1"]);
    assert_eq!(obj["spec"]["size"], 3);
    assert_eq!(
        obj["spec"]["serviceType"], "LoadBalancer",
        "schema default applied"
    );
    assert_eq!(obj["metadata"]["generation"], 1);
    let rv1: u64 = obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let w2 = write(
        dir.path(),
        "w2.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  version: 2.10.0\n  size: 5\n",
    );
    k.ok(&["apply", "--server-side", "-f", &w2]);
    let obj = k.json(&["get", "wd", "w1"]);
    assert_eq!(obj["spec"]["size"], 5);
    assert_eq!(obj["metadata"]["generation"], 2);
    let rv2: u64 = obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);
    // The same apply again is a no-op: the resourceVersion does not move.
    k.ok(&["apply", "--server-side", "-f", &w2]);
    let obj = k.json(&["get", "wd", "w1", "--show-managed-fields"]);
    assert_eq!(
        obj["metadata"]["resourceVersion"].as_str().unwrap(),
        rv2.to_string()
    );
    let mf = obj["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    assert!(
        mf.iter()
            .any(|e| e["manager"] == "kubectl" && e["operation"] == "Apply"),
        "{mf:?}"
    );

    // apply --server-side --dry-run=server: response as if created, nothing stored.
    let w3 = write(
        dir.path(),
        "w3.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w3\nspec:\n  version: '1'\n",
    );
    let out = k.ok(&["apply", "--server-side", "--dry-run=server", "-f", &w3]);
    assert!(out.contains("(server dry run)"), "{out}");
    let (ok, _, err) = k.run(&["get", "wd", "w3"]);
    assert!(
        !ok && (err.contains("NotFound") || err.contains("not found")),
        "{err}"
    );

    // A bad object is rejected by the server with the field path.
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: bad\nspec:\n  version: '1'\n  size: 11\n",
    );
    let (ok, _, err) = k.run(&["apply", "--server-side", "-f", &bad]);
    assert!(!ok, "size 11 must be rejected");
    assert!(
        err.contains("spec.size") && err.contains("less than or equal to 10"),
        "{err}"
    );
    // Unknown fields: an apply patch with a field its schema does not declare is refused (whatever
    // the field validation) when the server converts it to a typed object.
    let unk = write(
        dir.path(),
        "unk.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: unk\nspec:\n  version: '1'\n  bogus: 1\n",
    );
    let (ok, _, err) = k.run(&["apply", "--server-side", "-f", &unk]);
    assert!(
        !ok && err.contains(&format!(
            "failed to create typed patch object ({}/unk; example.com/v1, Kind=Widget): .spec.bogus: field not declared in schema",
            server.namespace()
        )),
        "{err}"
    );

    // get with printer columns (server-side Table), hyphenated JSONPath included.
    sim_status(&client, "w1", "Ready", "nats://b.ns.svc.cluster.local:4222").await;
    let out = k.ok(&["get", "widgets"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SIZE", "PHASE", "PUBLISHING-TO", "AGE"],
        "{out}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..4],
        ["w1", "5", "Ready", "nats://b.ns.svc.cluster.local:4222"],
        "{out}"
    );

    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=120s",
        "widget/w1",
    ]);
    k.ok(&[
        "wait",
        "--for=jsonpath={.status.phase}=Ready",
        "--timeout=120s",
        "widget/w1",
    ]);
    // Protobuf bodies (typed kubectl generators) are refused loudly by kube-sim, not misread;
    // the real server decodes them (README.md, "Deliberate divergences").
    let (ok, _, err) = k.run(&["create", "configmap", "pb", "--from-literal=a=b"]);
    if server.is_reference() {
        assert!(ok, "{err}");
    } else {
        assert!(!ok && err.contains("kube-sim does not implement"), "{err}");
    }

    // get --watch sees a few events.
    let mut child = k
        .cmd(&["get", "widgets", "--watch", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Stop `kubectl get --watch` even when an assertion below fails.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let watcher = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let mut wait_line = |pred: &dyn Fn(&str) -> bool, what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !lines.iter().any(|l| pred(l)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => lines.push(l),
                Err(_) => panic!("kubectl get --watch never printed {what}: {lines:?}"),
            }
        }
    };
    wait_line(&|l| l.starts_with("ADDED") && l.contains("w1"), "ADDED w1");
    let w4 = write(
        dir.path(),
        "w4.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w4\nspec:\n  version: '4'\n",
    );
    k.ok(&["apply", "--server-side", "-f", &w4]);
    wait_line(&|l| l.starts_with("ADDED") && l.contains("w4"), "ADDED w4");
    k.ok(&["delete", "widget", "w4"]);
    wait_line(
        &|l| l.starts_with("DELETED") && l.contains("w4"),
        "DELETED w4",
    );
    drop(watcher);

    // Built-ins: a Deployment and Service apply, defaulting visible to kubectl, kubectl wait on the rollout.
    let dep = write(
        dir.path(),
        "dep.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d1\nspec:\n  selector:\n    matchLabels: {app: d1}\n  template:\n    metadata:\n      labels: {app: d1}\n    spec:\n      containers:\n      - name: c\n        image: nats:2.10\n        resources:\n          requests: {cpu: 1000m, memory: 1024Mi}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s1\nspec:\n  selector: {app: d1}\n  ports:\n  - {name: nats, port: 4222}\n",
    );
    k.ok(&["apply", "--server-side", "-f", &dep]);
    k.ok(&[
        "wait",
        "--for=condition=Available",
        "--timeout=120s",
        "deployment/d1",
    ]);
    k.ok(&["rollout", "status", "deployment/d1", "--timeout=120s"]);
    let d = k.json(&["get", "deploy", "d1"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "1"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"],
        "1Gi"
    );
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    // built-in printer columns
    let out = k.ok(&["get", "deploy", "d1"]);
    let head: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{out}"
    );
    assert!(
        out.lines().nth(1).unwrap().split_whitespace().nth(1) == Some("1/1"),
        "{out}"
    );
    let out = k.ok(&["get", "svc", "s1"]);
    let head: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        head,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ],
        "{out}"
    );
    assert!(out.contains("4222/TCP"), "{out}");
    let s = k.json(&["get", "svc", "s1"]);
    assert_eq!(s["spec"]["ports"][0]["targetPort"], 4222);
    assert!(
        s["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10.96.")
    );

    // Wide printer columns of workloads and Services, and the columns of the other kinds the
    // operator renders.
    let out = k.ok(&["get", "deploy", "d1", "-o", "wide"]);
    assert_eq!(
        table(&out),
        [
            [
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ],
            ["d1", "1/1", "1", "1", "<age>", "c", "nats:2.10", "app=d1"]
        ],
        "{out}"
    );
    let out = k.ok(&["get", "svc", "s1", "-o", "wide"]);
    assert_eq!(
        table(&out)[0].last().map(String::as_str),
        Some("SELECTOR"),
        "{out}"
    );
    assert_eq!(
        table(&out)[1].last().map(String::as_str),
        Some("app=d1"),
        "{out}"
    );
    let others = write(
        dir.path(),
        "others.yaml",
        &format!(
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: p1}}\nspec: {{maxUnavailable: '50%', selector: {{matchLabels: {{app: d1}}}}}}\n---\n\
             apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: n1}}\nspec:\n  podSelector:\n    matchLabels: {{z: '1'}}\n    matchExpressions: [{{key: b, operator: In, values: ['y', 'x']}}, {{key: a, operator: Exists}}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: rb1}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}}\n\
             subjects: [{{kind: User, name: u, apiGroup: rbac.authorization.k8s.io}}, {{kind: Group, name: g, apiGroup: rbac.authorization.k8s.io}}, {{kind: ServiceAccount, name: s, namespace: {ns}}}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: r1}}\nrules: []\n",
            ns = k.namespace
        ),
    );
    k.ok(&["apply", "--server-side", "-f", &others]);
    let out = k.ok(&["get", "pdb", "p1"]);
    assert_eq!(
        table(&out)[0],
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ],
        "{out}"
    );
    assert_eq!(table(&out)[1][..3], ["p1", "N/A", "50%"], "{out}");
    let out = k.ok(&["get", "netpol", "n1"]);
    assert_eq!(
        table(&out),
        [
            ["NAME", "POD-SELECTOR", "AGE"],
            ["n1", "a,b in (x,y),z=1", "<age>"]
        ],
        "{out}"
    );
    let out = k.ok(&["get", "rolebinding", "rb1", "-o", "wide"]);
    assert_eq!(
        table(&out),
        [
            ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"],
            [
                "rb1",
                "ClusterRole/view",
                "<age>",
                "u",
                "g",
                &format!("{}/s", k.namespace)
            ]
        ],
        "{out}"
    );
    let out = k.ok(&["get", "role", "r1"]);
    assert_eq!(table(&out)[0], ["NAME", "CREATED AT"], "{out}");
    // kube-sim prints a ServiceAccount as v1.33 does, with the SECRETS count v1.35 dropped
    // (README.md, "Deliberate divergences").
    let out = k.ok(&["get", "serviceaccount", "default"]);
    if server.is_reference() {
        assert_eq!(table(&out)[0], ["NAME", "AGE"], "{out}");
    } else {
        assert_eq!(table(&out)[0], ["NAME", "SECRETS", "AGE"], "{out}");
    }

    // delete, and cascade: the CRD's custom resources go with it.
    assert!(k.ok(&["delete", "widget", "w1"]).contains("deleted"));
    k.ok(&["apply", "--server-side", "-f", &w]);
    k.ok(&["delete", "crd", "widgets.example.com", "--timeout=120s"]);
    let (ok, _, _) = k.run(&["get", "crd", "widgets.example.com"]);
    assert!(!ok);
    let out = k.ok(&["api-resources", "--api-group=example.com"]);
    assert!(!out.contains("widgets"), "{out}");
    let _ = k.run(&["delete", "-f", &dep, "--ignore-not-found", "--wait=false"]);
    let _ = k.run(&["delete", "crd", "gadgets.example.com", "--ignore-not-found"]);
}

/// Set a Widget's status through the status subresource (as the operator would).
async fn sim_status(client: &kube::Client, name: &str, phase: &str, to: &str) {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    use kube::discovery::ApiResource;
    let ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let api: Api<DynamicObject> = Api::default_namespaced_with(client.clone(), &ar);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"status": {"phase": phase, "publishing-to": to,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Up", "message": "ok", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})),
    )
    .await
    .unwrap();
}

/// `kubectl explain` reads the group-version's OpenAPI v3 document: a CRD's schema is served as the
/// `com.example.v1.Widget` component, so its fields and their types are explained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_reads_the_crd_schema() {
    let _crds = CRDS.lock().await;
    if !kubectl_available() {
        return;
    }
    let server = common::server("kubectl-explain", common::Crds::Installed).await;
    let k = Kubectl {
        kubeconfig: server.kubeconfig_path().to_path_buf(),
        namespace: server.namespace().to_string(),
        cache: tempfile::tempdir().unwrap(),
    };
    // The real server publishes a (re)created CRD's OpenAPI a moment after it is Established.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let out = loop {
        match k.run(&["explain", "widgets.spec"]) {
            (true, out, _) => break out,
            (false, out, err) => assert!(
                std::time::Instant::now() < deadline,
                "kubectl explain widgets.spec:\n{out}{err}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(out.contains("KIND:       Widget"), "{out}");
    assert!(out.contains("FIELD: spec <Object>"), "{out}");
    let fields: Vec<(String, String)> = out
        .lines()
        .filter_map(|line| {
            let field = line.strip_prefix("  ")?;
            let (name, kind) = field.split_once('\t')?;
            Some((name.to_string(), kind.to_string()))
        })
        .collect();
    for (name, kind) in [
        ("cidrs", "<[]string>"),
        ("extra", "<Object>"),
        ("ports", "<[]Object>"),
        ("serviceType", "<string>"),
        ("size", "<integer>"),
        ("version", "<string> -required-"),
    ] {
        assert!(
            fields.contains(&(name.to_string(), kind.to_string())),
            "{name} {kind} in {fields:?}\n{out}"
        );
    }
    let out = k.ok(&["explain", "widgets.spec.size"]);
    assert!(out.contains("FIELD: size <integer>"), "{out}");
    let out = k.ok(&["explain", "widgets.spec.ports"]);
    assert!(out.contains("FIELD: ports <[]Object>"), "{out}");
    assert!(out.contains("name\t<string> -required-"), "{out}");
    let out = k.ok(&["explain", "widgets.metadata.name"]);
    assert!(out.contains("FIELD: name <string>"), "{out}");
}
