//! `doctor`'s checks as a table: facts in, verdicts and fixes out, no cluster needed.

use meshery_operator::doctor::{
    CrFacts, CrdFacts, Dial, Facts, Finding, LeaseFacts, Link, OperatorDeployment, PendingPod,
    PermissionFacts, Verdict, diagnose, exit_code, format_text,
};

fn crd(name: &str, present: bool, established: bool, storage: &str) -> CrdFacts {
    CrdFacts {
        name: name.into(),
        present,
        established,
        served: vec!["v1alpha1".into(), "v1alpha2".into()],
        storage: Some(storage.into()),
    }
}

fn operator(available: i32, leader_elect: bool) -> OperatorDeployment {
    OperatorDeployment {
        namespace: "meshery".into(),
        name: "meshery-operator".into(),
        desired: 1,
        available,
        leader_elect,
        service_account: "meshery-operator".into(),
    }
}

fn lease(holder: Option<&str>, ago: i64) -> LeaseFacts {
    LeaseFacts {
        namespace: "meshery".into(),
        holder: holder.map(String::from),
        renewed_seconds_ago: Some(ago),
        duration_seconds: Some(15),
    }
}

fn ready_broker() -> CrFacts {
    CrFacts {
        kind: "Broker",
        namespace: "meshery".into(),
        name: "meshery-broker".into(),
        phase: Some("Ready".into()),
        ..CrFacts::default()
    }
}

fn healthy() -> Facts {
    Facts {
        crds: vec![
            crd("brokers.meshery.io", true, true, "v1alpha1"),
            crd("meshsyncs.meshery.io", true, true, "v1alpha1"),
        ],
        operators: vec![operator(1, true)],
        leases: vec![lease(Some("meshery-operator-7d9f-x2"), 3)],
        resources: vec![ready_broker()],
        ..Facts::default()
    }
}

/// The problem lines: `check subject: message`.
fn problems(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.verdict == Verdict::Problem)
        .map(|f| format!("{} {}: {}", f.check, f.subject, f.message))
        .collect()
}

#[test]
fn a_healthy_install_is_all_ok_and_exit_zero() {
    let findings = diagnose(&healthy());
    assert_eq!(problems(&findings), Vec::<String>::new());
    assert_eq!(exit_code(&findings), 0);
    let text = format_text(&findings);
    assert!(text.contains("meshery-operator-7d9f-x2 leads"), "{text}");
    assert!(
        text.ends_with("4 checks: 4 ok, 0 problems, 0 could not be checked\n"),
        "{text}"
    );
}

#[test]
fn each_broken_state_is_one_problem_with_its_fix() {
    type Break = fn(&mut Facts);
    let table: [(&str, Break, &str, &str); 10] = [
        (
            "CRD missing",
            |f| f.crds[0].present = false,
            "not installed",
            "kubectl apply --server-side -f crds/",
        ),
        (
            "CRD not established",
            |f| f.crds[1].established = false,
            "not Established",
            "kubectl wait --for=condition=Established",
        ),
        (
            "old storage version",
            |f| f.crds[0].storage = Some("v1alpha2".into()),
            "stores v1alpha2",
            "--force-conflicts -f crds/",
        ),
        (
            "operator not available",
            |f| f.operators[0].available = 0,
            "0 of 1 replicas available",
            "kubectl logs -n meshery deployment/meshery-operator -c manager",
        ),
        (
            "lease expired",
            |f| f.leases[0] = lease(Some("old-pod"), 120),
            "old-pod last renewed 120 s ago",
            "leader election",
        ),
        (
            "no lease",
            |f| f.leases.clear(),
            "no replica has become the leader",
            "leader election",
        ),
        (
            "LoadBalancer pending",
            |f| f.resources[0].load_balancer_pending_seconds = Some(300),
            "no address for 300 s",
            "NodePort",
        ),
        (
            "Go finalizer",
            |f| f.resources[0].go_finalizers = vec!["broker.meshery.io/finalizer".into()],
            "finalizer broker.meshery.io/finalizer",
            "/metadata/finalizers",
        ),
        (
            "Go operator running",
            |f| {
                f.go_operator_running
                    .push(("meshery".into(), "manager-7c9d_3f1e".into()))
            },
            "the Go Meshery Operator (manager-7c9d_3f1e) is running",
            "stop the Go operator",
        ),
        (
            "pod unschedulable",
            |f| {
                f.pending_pods.push(PendingPod {
                    namespace: "meshery".into(),
                    name: "meshery-broker-0".into(),
                    reason:
                        "0/3 nodes are available: 3 node(s) had untolerated taint {dedicated: db}"
                            .into(),
                })
            },
            "untolerated taint",
            "spec.pod.tolerations",
        ),
    ];
    for (state, break_it, message, fix) in table {
        let mut facts = healthy();
        break_it(&mut facts);
        let findings = diagnose(&facts);
        let found: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.verdict == Verdict::Problem)
            .collect();
        assert_eq!(found.len(), 1, "{state}: {:#?}", problems(&findings));
        assert!(
            found[0].message.contains(message),
            "{state}: {:?}",
            found[0]
        );
        assert!(
            found[0].fix.as_deref().is_some_and(|f| f.contains(fix)),
            "{state}: {:?}",
            found[0]
        );
        assert_eq!(exit_code(&findings), 1, "{state}");
    }
}

#[test]
fn a_load_balancer_gets_a_minute_before_it_is_a_problem() {
    let mut facts = healthy();
    facts.resources[0].load_balancer_pending_seconds = Some(20);
    assert_eq!(problems(&diagnose(&facts)), Vec::<String>::new());
}

#[test]
fn what_could_not_be_checked_is_exit_two_unless_a_problem_was_found() {
    let mut findings = diagnose(&healthy());
    findings.push(Finding::unknown(
        "operator",
        "Lease meshery/meshery-operator",
        "forbidden (403)",
    ));
    assert_eq!(exit_code(&findings), 2);
    let mut facts = healthy();
    facts.operators.clear();
    let mut findings = diagnose(&facts);
    findings.push(Finding::unknown(
        "crds",
        "brokers.meshery.io",
        "forbidden (403)",
    ));
    assert_eq!(exit_code(&findings), 1);
}

/// The NATS handshake and MeshSync's connection: each outcome with its verdict, what the message
/// says, and for a problem the fix.
#[test]
fn nats_handshake_and_meshsync_connection_verdicts() {
    let address = "127.0.0.5:4222".to_string();
    let monitoring = "127.0.0.5:8222".to_string();
    let meshsync = |link: Link| CrFacts {
        kind: "MeshSync",
        namespace: "meshery".into(),
        name: "meshery-meshsync".into(),
        phase: Some("Ready".into()),
        link: Some(link),
        ..CrFacts::default()
    };
    let broker = |dial: Dial| CrFacts {
        nats: Some(dial),
        ..ready_broker()
    };
    let cases: Vec<(CrFacts, &str, Verdict, &str, Option<&str>)> = vec![
        (
            broker(Dial::Answered {
                address: address.clone(),
                server_version: "2.10.24".into(),
            }),
            "nats",
            Verdict::Ok,
            "succeeded (nats-server 2.10.24)",
            None,
        ),
        (
            broker(Dial::Skipped {
                why: "the Broker has no external endpoint".into(),
            }),
            "nats",
            Verdict::Ok,
            "not dialled from here: the Broker has no external endpoint",
            None,
        ),
        (
            broker(Dial::Failed {
                address: address.clone(),
                message: "cannot reach the broker at 127.0.0.5:4222: connection refused".into(),
            }),
            "nats",
            Verdict::Problem,
            "no NATS handshake from here: cannot reach",
            Some("kubectl get service meshery-broker -n meshery"),
        ),
        (
            meshsync(Link::Subscribed {
                address: monitoring.clone(),
            }),
            "connection",
            Verdict::Ok,
            "connected and subscribed to meshery.meshsync.request",
            None,
        ),
        (
            meshsync(Link::Absent {
                address: monitoring.clone(),
            }),
            "connection",
            Verdict::Problem,
            "shows no MeshSync connection",
            Some("kubectl rollout restart deployment/meshery-meshsync -n meshery"),
        ),
        (
            meshsync(Link::NotSubscribed {
                address: monitoring.clone(),
            }),
            "connection",
            Verdict::Problem,
            "not subscribed to meshery.meshsync.request",
            Some("--restart-disconnected-meshsync"),
        ),
        (
            meshsync(Link::Unreadable {
                address: monitoring.clone(),
                message: "connection refused".into(),
            }),
            "connection",
            Verdict::Unknown,
            "127.0.0.5:8222 could not be read: connection refused",
            None,
        ),
    ];
    for (resource, check, verdict, message, fix) in cases {
        let facts = Facts {
            resources: vec![resource],
            ..healthy()
        };
        let findings = diagnose(&facts);
        let finding = findings
            .iter()
            .find(|f| f.check == check)
            .unwrap_or_else(|| panic!("no {check} finding in {findings:#?}"));
        assert_eq!(finding.verdict, verdict, "{finding:#?}");
        assert!(finding.message.contains(message), "{finding:#?}");
        match fix {
            Some(fix) => assert!(
                finding.fix.as_deref().is_some_and(|f| f.contains(fix)),
                "{finding:#?}"
            ),
            None => assert_eq!(finding.fix, None, "{finding:#?}"),
        }
    }
}

/// The ServiceAccount's SubjectAccessReviews: all allowed is one ok line; each denied verb is named
/// in one problem, with the chart's RBAC as the fix.
#[test]
fn denied_verbs_are_named_with_the_charts_rbac_as_the_fix() {
    let allowed = PermissionFacts {
        namespace: "meshery".into(),
        service_account: "meshery-operator".into(),
        checked: 60,
        denied: vec![],
    };
    let findings = diagnose(&Facts {
        permissions: vec![allowed.clone()],
        ..healthy()
    });
    let ok = findings.iter().find(|f| f.check == "permissions").unwrap();
    assert_eq!(ok.verdict, Verdict::Ok);
    assert_eq!(
        ok.message, "allowed all 60 verbs the operator needs",
        "{ok:#?}"
    );

    let denied = PermissionFacts {
        denied: vec![
            "patch meshery.io/brokers/status".into(),
            "create coordination.k8s.io/leases in meshery".into(),
        ],
        ..allowed
    };
    let findings = diagnose(&Facts {
        permissions: vec![denied],
        ..healthy()
    });
    assert_eq!(
        problems(&findings),
        vec![
            "permissions ServiceAccount meshery/meshery-operator: denied 2 of 60 verbs the operator \
             needs: patch meshery.io/brokers/status, create coordination.k8s.io/leases in meshery"
                .to_string()
        ]
    );
    assert_eq!(exit_code(&findings), 1);
    let fix = findings
        .iter()
        .find(|f| f.check == "permissions")
        .and_then(|f| f.fix.clone())
        .unwrap();
    assert!(fix.contains("ClusterRole meshery-operator"), "{fix}");
}
