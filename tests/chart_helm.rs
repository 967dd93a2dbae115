//! The Helm chart at the repository root, linted and rendered by real Helm (v4's Go SDK through
//! helm-python-sdk): metadata, kinds, names, labels, security contexts, RBAC without `*`, the
//! default CRs, the values toggles, the package contents and the kubectl manifest.

mod chart_support;

use std::collections::BTreeSet;

use chart_support::{get, helm, kinds_and_names, read, render, render_yaml, repo, rules};
use meshery_operator::api::{Broker, MeshSync, validate_broker, validate_meshsync};
use serde_json::{Value, json};

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn chart_version_and_app_version_equal_the_crate_version() {
    let chart = yaml("Chart.yaml");
    let crate_version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "meshery-operator");
    assert_eq!(chart["version"], crate_version);
    assert_eq!(chart["appVersion"], crate_version);
    let values = yaml("values.yaml");
    assert_eq!(
        values["image"]["tag"],
        format!("v{crate_version}"),
        "the default image is the release of this crate"
    );
}

#[test]
fn lint_strict_passes_with_default_and_non_default_values() {
    for values in [None, Some(non_default_values())] {
        let values = values.map(|v| v.to_string());
        let mut args = vec!["lint"];
        args.extend(values.as_deref());
        let output = helm(&args);
        assert!(
            output.status.success(),
            "helm lint --strict with {values:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn default_render_has_the_operator_its_rbac_and_the_default_crs() {
    let objects = render(None);
    let kinds: BTreeSet<String> = kinds_and_names(&objects).into_iter().collect();
    let expected: BTreeSet<String> = [
        "ServiceAccount/meshery-operator",
        "ClusterRole/meshery-operator",
        "ClusterRoleBinding/meshery-operator",
        "Role/meshery-operator-leader-election",
        "RoleBinding/meshery-operator-leader-election",
        "Role/meshery-operator-go-operator-lease",
        "RoleBinding/meshery-operator-go-operator-lease",
        "Service/meshery-operator-metrics",
        "Deployment/meshery-operator",
        "Broker/meshery-broker",
        "MeshSync/meshery-meshsync",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(kinds, expected);
    for object in &objects {
        let kind = object["kind"].as_str().unwrap();
        if !kind.starts_with("Cluster") {
            assert_eq!(object["metadata"]["namespace"], "meshery", "{kind}");
        }
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "Helm"
        );
    }

    let deployment = get(&objects, "Deployment", "meshery-operator");
    // `kubectl get pods -n meshery -l name=meshery-operator` finds the pods.
    assert_eq!(deployment["metadata"]["labels"]["name"], "meshery-operator");
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"]["name"],
        "meshery-operator"
    );
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["name"], "meshery-operator");
    let spec = &pod["spec"];
    assert_eq!(spec["serviceAccountName"], "meshery-operator");
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    // `kubectl logs -n meshery deployment/meshery-operator -c manager` reads its logs.
    let manager = &containers[0];
    assert_eq!(manager["name"], "manager");
    let image = manager["image"].as_str().unwrap();
    assert_eq!(
        image,
        format!("meshery/meshery-operator:v{}", env!("CARGO_PKG_VERSION"))
    );
    assert!(!image.ends_with(":latest"));
    let args: Vec<&str> = manager["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "run");
    assert!(args.contains(&"--leader-elect"), "{args:?}");
    assert!(args.contains(&"--metrics-addr=0.0.0.0:8080"), "{args:?}");
    assert!(args.contains(&"--health-addr=0.0.0.0:8081"), "{args:?}");
    // The args parse with the operator's own CLI.
    let mut argv = vec!["meshery-operator"];
    argv.extend(&args);
    let parsed = <meshery_operator::cli::Cli as clap::Parser>::try_parse_from(&argv);
    assert!(parsed.is_ok(), "{argv:?}: {parsed:?}");

    let env = manager["env"].as_array().unwrap();
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], path);
    }
    assert_eq!(manager["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(manager["readinessProbe"]["httpGet"]["path"], "/readyz");
    let ports = manager["ports"].as_array().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "health" && p["containerPort"] == 8081)
    );
    assert!(
        ports
            .iter()
            .any(|p| p["name"] == "metrics" && p["containerPort"] == 8080)
    );
    assert!(manager["resources"]["requests"]["cpu"].is_string());
    assert!(manager["resources"]["limits"]["memory"].is_string());

    let pod_security = &spec["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true);
    assert!(pod_security["runAsUser"].as_u64().unwrap() > 0);
    assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault");
    let security = &manager["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert!(security["runAsUser"].as_u64().unwrap() > 0);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");

    let service = get(&objects, "Service", "meshery-operator-metrics");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &pod["metadata"]["labels"][key], value,
            "the metrics Service selects the operator pods"
        );
    }
    for (binding, name) in [
        ("ClusterRoleBinding", "meshery-operator"),
        ("RoleBinding", "meshery-operator-leader-election"),
        ("RoleBinding", "meshery-operator-go-operator-lease"),
    ] {
        let subject = &get(&objects, binding, name)["subjects"][0];
        assert_eq!(subject["name"], "meshery-operator");
        assert_eq!(subject["namespace"], "meshery");
    }
    let lease_rules: Vec<_> = rules(&objects)
        .into_iter()
        .filter(|r| r.namespace.is_some())
        .collect();
    assert!(
        lease_rules
            .iter()
            .all(|r| r.groups == ["coordination.k8s.io"] && r.resources == ["leases"])
    );
}

#[test]
fn rbac_never_uses_wildcards() {
    for values in [
        None,
        Some(non_default_values()),
        Some(json!({"rbac": {"meshsyncGrants": "escalate"}})),
    ] {
        let rules = rules(&render(values.as_ref()));
        assert!(!rules.is_empty());
        for rule in rules {
            for word in rule
                .groups
                .iter()
                .chain(&rule.resources)
                .chain(&rule.verbs)
                .chain(&rule.names)
            {
                assert!(!word.contains('*'), "wildcard in {rule:?}");
            }
            assert!(
                !rule.verbs.iter().any(|v| v == "escalate" || v == "bind")
                    || rule.resources == ["clusterroles"],
                "escalate/bind only on ClusterRoles: {rule:?}"
            );
        }
    }
}

#[test]
fn default_crs_are_the_meshery_defaults_and_pass_the_operators_validation() {
    let objects = render(None);
    let broker: Broker =
        serde_json::from_value(get(&objects, "Broker", "meshery-broker").clone()).unwrap();
    assert_eq!(broker.spec.size, 1);
    assert!(
        validate_broker(&broker).is_empty(),
        "{:?}",
        validate_broker(&broker)
    );
    let meshsync_value = get(&objects, "MeshSync", "meshery-meshsync");
    assert_eq!(
        meshsync_value["spec"]["broker"]["native"],
        json!({"name": "meshery-broker", "namespace": "meshery"})
    );
    let meshsync: MeshSync = serde_json::from_value(meshsync_value.clone()).unwrap();
    assert!(
        validate_meshsync(&meshsync).is_empty(),
        "{:?}",
        validate_meshsync(&meshsync)
    );
    let whitelist: Vec<Value> = serde_json::from_str(
        meshsync_value["spec"]["watch-list"]["data"]["whitelist"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        whitelist.len(),
        21,
        "the default whitelist of the Meshery chart"
    );
    assert!(
        whitelist
            .iter()
            .all(|e| e["Events"] == json!(["ADDED", "MODIFIED", "DELETED"]))
    );
}

/// Broker and MeshSync off, leader election off, a custom image, a ServiceMonitor.
fn non_default_values() -> Value {
    json!({
        "image": {"repository": "registry.example.com/meshery/operator", "tag": "v9.8.7", "pullPolicy": "Always"},
        "leaderElection": {"enabled": false},
        "operator": {"watchNamespace": "team-a", "logFormat": "text", "brokerProbe": "off"},
        "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}},
        "meshery-broker": {"enabled": false},
        "meshery-meshsync": {"enabled": false},
    })
}

#[test]
fn non_default_values_toggle_the_crs_leader_election_and_the_image() {
    let objects = render(Some(&non_default_values()));
    let names: BTreeSet<String> = kinds_and_names(&objects).into_iter().collect();
    for absent in [
        "Broker/meshery-broker",
        "MeshSync/meshery-meshsync",
        "Role/meshery-operator-leader-election",
        "RoleBinding/meshery-operator-leader-election",
    ] {
        assert!(!names.contains(absent), "{absent} rendered: {names:?}");
    }
    assert!(
        names.contains("ServiceMonitor/meshery-operator"),
        "{names:?}"
    );
    let manager = &get(&objects, "Deployment", "meshery-operator")["spec"]["template"]["spec"]["containers"]
        [0];
    assert_eq!(
        manager["image"],
        "registry.example.com/meshery/operator:v9.8.7"
    );
    assert_eq!(manager["imagePullPolicy"], "Always");
    let args: Vec<&str> = manager["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(!args.contains(&"--leader-elect"), "{args:?}");
    for arg in [
        "--namespace=team-a",
        "--log-format=text",
        "--broker-probe=off",
    ] {
        assert!(args.contains(&arg), "{arg} in {args:?}");
    }
    let monitor = get(&objects, "ServiceMonitor", "meshery-operator");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
}

#[test]
fn nodeport_broker_and_a_broker_in_another_namespace() {
    let values = json!({
        "meshery-broker": {"service": {"type": "NodePort"}, "size": 3},
        "meshery-meshsync": {"broker": {"name": "shared-broker", "namespace": "nats"}},
    });
    let objects = render(Some(&values));
    let broker = get(&objects, "Broker", "meshery-broker");
    assert_eq!(broker["spec"]["service"]["type"], "NodePort");
    assert_eq!(broker["spec"]["size"], 3);
    let broker: Broker = serde_json::from_value(broker.clone()).unwrap();
    assert!(validate_broker(&broker).is_empty());
    assert_eq!(
        get(&objects, "MeshSync", "meshery-meshsync")["spec"]["broker"]["native"],
        json!({"name": "shared-broker", "namespace": "nats"})
    );
}

#[test]
fn escalate_mode_trades_held_read_permissions_for_escalate_and_bind() {
    let held = rules(&render(None));
    let escalate = rules(&render(Some(
        &json!({"rbac": {"meshsyncGrants": "escalate"}}),
    )));
    let reads_pods = |rules: &[chart_support::Rule]| {
        chart_support::allowed(rules, "list", "", "pods", None).is_some()
    };
    assert!(reads_pods(&held));
    assert!(!reads_pods(&escalate));
    for verb in ["escalate", "bind"] {
        assert!(
            chart_support::allowed(
                &held,
                verb,
                "rbac.authorization.k8s.io",
                "clusterroles",
                None
            )
            .is_none()
        );
        assert!(
            chart_support::allowed(
                &escalate,
                verb,
                "rbac.authorization.k8s.io",
                "clusterroles",
                None
            )
            .is_some()
        );
    }
}

#[test]
fn the_schema_rejects_floating_tags_and_unknown_values() {
    for values in [
        json!({"image": {"tag": "latest"}}),
        json!({"image": {"tag": "stable-latest"}}),
        json!({"meshery-broker": {"service": {"type": "Ingress"}}}),
        json!({"rbac": {"meshsyncGrants": "everything"}}),
        json!({"operator": {"concurrency": 0}}),
        json!({"mesheryOperator": {"image": {"repository": "x"}}}),
    ] {
        let output = helm(&["render", &values.to_string()]);
        assert!(!output.status.success(), "{values} rendered");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("schema") || stderr.contains("values"),
            "{values}: {stderr}"
        );
    }
}

#[test]
fn the_package_holds_only_the_chart() {
    let dir = tempfile::tempdir().unwrap();
    let output = helm(&["package", dir.path().to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let archive = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let listing = std::process::Command::new("tar")
        .args(["tzf", &archive])
        .output()
        .unwrap();
    assert!(listing.status.success());
    let files: BTreeSet<String> = String::from_utf8(listing.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("meshery-operator/").to_string())
        .collect();
    for file in &files {
        assert!(
            [
                "Chart.yaml",
                "values.yaml",
                "values.schema.json",
                "README.md",
                "LICENSE"
            ]
            .contains(&file.as_str())
                || file.starts_with("templates/")
                || file.starts_with("crds/"),
            "{file} is not chart: {files:?}"
        );
    }
    for file in [
        "Chart.yaml",
        "values.yaml",
        "values.schema.json",
        "crds/crds.yaml",
        "templates/deployment.yaml",
        "templates/NOTES.txt",
    ] {
        assert!(files.contains(file), "{file} missing: {files:?}");
    }
}

#[test]
fn the_kubectl_manifest_is_the_default_render() {
    let output = helm(&["manifest"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated = String::from_utf8(output.stdout).unwrap();
    let path = repo().join("deploy/meshery-operator.yaml");
    if std::env::var_os("UPDATE_MANIFESTS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = read("deploy/meshery-operator.yaml");
    assert!(
        committed == generated,
        "deploy/meshery-operator.yaml is out of date: regenerate with \
         `.venv/bin/python scripts/helm-render.py manifest > deploy/meshery-operator.yaml` \
         (or UPDATE_MANIFESTS=1 cargo test --test chart_helm)"
    );
    // It is the default render behind a Namespace.
    let objects = chart_support::parse_stream(&committed);
    assert_eq!(objects[0]["kind"], "Namespace");
    assert_eq!(objects[1..], render(None)[..]);
    assert_eq!(
        render_yaml(None),
        render_yaml(None),
        "rendering is deterministic"
    );
}

#[test]
fn the_dockerfile_builds_locked_and_runs_only_the_binary_as_non_root() {
    let dockerfile = read("Dockerfile");
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(dockerfile.contains("cargo build --release --locked"));
    for from in &froms {
        assert!(!from.contains(":latest"), "pinned base images: {from}");
    }
    let user = dockerfile
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER");
    let uid = user.trim_start_matches("USER ").split(':').next().unwrap();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u > 0),
        "numeric non-root USER: {user}"
    );
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    let copies: Vec<&str> = runtime.lines().filter(|l| l.starts_with("COPY ")).collect();
    assert_eq!(copies.len(), 1, "only the binary: {copies:?}");
    assert!(copies[0].contains("meshery-operator"));
    assert!(dockerfile.contains("org.opencontainers.image.source"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/meshery-operator\"]"));
}

#[test]
fn readme_documents_install_upgrade_and_uninstall() {
    let readme = read("README.md");
    for text in [
        "helm install meshery-operator . -n meshery --create-namespace",
        "helm upgrade meshery-operator . -n meshery",
        "helm uninstall meshery-operator -n meshery",
        "kubectl apply --server-side -f crds/",
        "kubectl apply --server-side -f deploy/meshery-operator.yaml",
        "Helm installs `crds/` on the first install only and never upgrades CRDs",
        "kubectl get pods -n meshery -l name=meshery-operator",
        "kubectl logs -n meshery deployment/meshery-operator -c manager",
        "rbac.meshsyncGrants",
    ] {
        assert!(readme.contains(text), "README.md does not say {text:?}");
    }
}

#[test]
fn notes_show_the_troubleshooting_commands_and_the_crd_upgrade() {
    let notes = |values: &str| {
        let output = helm(&["notes", values]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let default = notes("{}");
    for text in [
        "kubectl get pods -n meshery -l name=meshery-operator",
        "kubectl logs -n meshery deployment/meshery-operator -c manager",
        "kubectl wait --for=condition=Ready broker/meshery-broker -n meshery",
        "kubectl apply --server-side -f crds/",
    ] {
        assert!(
            default.contains(text),
            "NOTES.txt lacks {text:?}:\n{default}"
        );
    }
    let without_crs =
        notes(r#"{"meshery-broker":{"enabled":false},"meshery-meshsync":{"enabled":false}}"#);
    assert!(!without_crs.contains("kubectl wait"), "{without_crs}");
}
