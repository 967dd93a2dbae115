//! The committed CRDs are exactly what the Rust types generate, and `meshery-operator crd` prints them.

use std::process::Command;

const COMMITTED: &str = include_str!("../crds/crds.yaml");

#[test]
fn committed_crds_match_the_types() {
    let generated = meshery_operator::api::crds_yaml();
    assert!(
        generated == COMMITTED,
        "crds/crds.yaml is stale: regenerate it with `cargo run -- crd > crds/crds.yaml` and commit it"
    );
}

#[test]
fn crd_command_prints_the_committed_file() {
    let output = Command::new(env!("CARGO_BIN_EXE_meshery-operator"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8(output.stdout).unwrap(), COMMITTED);
}

#[test]
fn crds_serve_both_versions_and_store_v1alpha1() {
    for crd in meshery_operator::api::crds() {
        let versions: Vec<_> = crd
            .spec
            .versions
            .iter()
            .map(|v| (v.name.as_str(), v.served, v.storage))
            .collect();
        assert_eq!(
            versions,
            [("v1alpha1", true, true), ("v1alpha2", true, false)],
            "{}",
            crd.metadata.name.unwrap()
        );
        assert!(
            crd.spec
                .versions
                .iter()
                .all(|v| v.subresources.as_ref().is_some_and(|s| s.status.is_some()))
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["meshery".to_string()][..])
        );
    }
}

#[test]
fn broker_short_name_and_printer_columns() {
    let crds = meshery_operator::api::crds();
    let broker = crds.iter().find(|c| c.spec.names.kind == "Broker").unwrap();
    assert_eq!(
        broker.spec.names.short_names.as_deref(),
        Some(&["br".to_string()][..])
    );
    let columns: Vec<_> = broker.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Size", "Phase", "Internal", "External", "Age"]);
    let meshsync = crds
        .iter()
        .find(|c| c.spec.names.kind == "MeshSync")
        .unwrap();
    let columns: Vec<_> = meshsync.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Size", ".spec.size"),
            ("Phase", ".status.phase"),
            ("Publishing-To", ".status.publishing-to"),
            ("Age", ".metadata.creationTimestamp")
        ]
    );
}
