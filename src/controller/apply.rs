//! Carrying out a plan: server-side apply of what drifted and deletion of what is pruned, in plan
//! order — or, in dry-run mode, logging both and writing nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use super::kinds::ChildKind;
use super::metrics::WriteVerb;
use crate::diff::{Action, Entry, Plan, mask};
use crate::object::{Object, ObjectKey, without_server_bookkeeping};
use crate::render::labels::FIELD_MANAGER;

/// The resourceVersions the operator itself produced, per object UID, so the watch events its own
/// writes cause do not trigger another reconcile.
#[derive(Debug, Default)]
pub struct OwnWrites {
    versions: Mutex<HashMap<String, String>>,
}

impl OwnWrites {
    fn record(&self, object: &DynamicObject) {
        if let (Some(uid), Some(version)) = (object.uid(), object.resource_version()) {
            self.lock().insert(uid, version);
        }
    }

    /// Whether this exact version of the object is one the operator wrote.
    pub fn is_own(&self, uid: &str, resource_version: &str) -> bool {
        self.lock().get(uid).is_some_and(|v| v == resource_version)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How to carry out a plan.
#[derive(Clone, Copy, Debug)]
pub struct ApplyOptions {
    /// Log every planned write instead of sending it.
    pub dry_run: bool,
    /// The CR allows deleting and recreating a child whose immutable fields must change.
    pub recreate_on_immutable_change: bool,
    /// Before each apply, GET the live object and server-side dry-run the apply; send the real
    /// apply only when the dry-run result differs (`--apply-strategy dry-run-diff`).
    pub verify_with_dry_run: bool,
}

/// What carrying out a plan did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// The API server's answer for every object written (applied or recreated).
    pub applied: Vec<Object>,
    /// Objects deleted (pruned, or deleted to be recreated).
    pub deleted: Vec<ObjectKey>,
    /// The first failure; the objects after it in apply order were not attempted.
    pub failure: Option<ApplyFailure>,
}

/// Why a plan could not be carried out completely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyFailure {
    /// The API server refused a write.
    Api { object: ObjectKey, message: String },
    /// Fields the API server cannot change in place differ, and the CR does not allow recreation.
    Immutable {
        object: ObjectKey,
        paths: Vec<String>,
    },
}

impl std::fmt::Display for ApplyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyFailure::Api { object, message } => write!(f, "applying {object}: {message}"),
            ApplyFailure::Immutable { object, paths } => write!(
                f,
                "{object} needs a change to immutable field(s) {}; set spec.recreateOnImmutableChange: true to let the operator recreate it",
                paths.join(", ")
            ),
        }
    }
}

/// A write the controller is about to send, counted for the API-writes metric.
pub trait WriteObserver: Sync {
    fn observe_write(&self, kind: &str, verb: WriteVerb);
}

/// Applies every Create/Update and deletes every Prune in plan order; stops at the first failure so
/// later objects (workloads) are not rolled out on top of a missing dependency (their config).
pub async fn apply_plan(
    client: &Client,
    plan: &Plan,
    options: ApplyOptions,
    own_writes: &OwnWrites,
    observer: &dyn WriteObserver,
) -> ApplyReport {
    let mut report = ApplyReport::default();
    for entry in &plan.entries {
        let Some(api) = api_for(client, &entry.key) else {
            report.failure = Some(ApplyFailure::Api {
                object: entry.key.clone(),
                message: "the operator does not manage this kind".into(),
            });
            return report;
        };
        let result = match &entry.action {
            Action::Unchanged { .. } => continue,
            Action::Create { object } => {
                if options.dry_run {
                    info!(object = %entry.key, manifest = %mask::mask_object(&object.0), "dry-run: would create");
                    continue;
                }
                apply(&api, &entry.key, object, options, own_writes, observer).await
            }
            Action::Update {
                apply_body,
                json_patch,
                changed_paths,
                immutable_paths,
                ..
            } => {
                let paths = |list: &[crate::diff::FieldPath]| {
                    list.iter().map(ToString::to_string).collect::<Vec<_>>()
                };
                if options.dry_run {
                    info!(
                        object = %entry.key,
                        changed = ?paths(changed_paths),
                        patch = %mask::mask_patch(json_patch),
                        "dry-run: would apply"
                    );
                    continue;
                }
                if !immutable_paths.is_empty() {
                    if !options.recreate_on_immutable_change {
                        report.failure = Some(ApplyFailure::Immutable {
                            object: entry.key.clone(),
                            paths: paths(immutable_paths),
                        });
                        return report;
                    }
                    warn!(object = %entry.key, fields = ?paths(immutable_paths), "recreating to change immutable fields");
                    if let Err(failure) = delete(&api, &entry.key, observer).await {
                        report.failure = Some(failure);
                        return report;
                    }
                    report.deleted.push(entry.key.clone());
                }
                apply(&api, &entry.key, apply_body, options, own_writes, observer).await
            }
            Action::Prune => {
                if options.dry_run {
                    info!(object = %entry.key, "dry-run: would prune");
                    continue;
                }
                match delete(&api, &entry.key, observer).await {
                    Ok(()) => {
                        report.deleted.push(entry.key.clone());
                        continue;
                    }
                    Err(failure) => Err(failure),
                }
            }
        };
        match result {
            Ok(object) => report.applied.push(object),
            Err(failure) => {
                report.failure = Some(failure);
                return report;
            }
        }
    }
    report
}

async fn apply(
    api: &Api<DynamicObject>,
    key: &ObjectKey,
    body: &Object,
    options: ApplyOptions,
    own_writes: &OwnWrites,
    observer: &dyn WriteObserver,
) -> Result<Object, ApplyFailure> {
    let failure = |message: String| ApplyFailure::Api {
        object: key.clone(),
        message,
    };
    let to_object = |written: &DynamicObject| {
        serde_json::to_value(written)
            .map(Object)
            .map_err(|e| failure(format!("reading the API server's answer: {e}")))
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    if options.verify_with_dry_run {
        let live = api
            .get_opt(&key.name)
            .await
            .map_err(|e| failure(e.to_string()))?;
        let dry_run = api
            .patch(&key.name, &params.clone().dry_run(), &Patch::Apply(&body.0))
            .await
            .map_err(|e| failure(e.to_string()))?;
        if let Some(live) = live {
            let live = to_object(&live)?;
            if same_ignoring_bookkeeping(&live, &to_object(&dry_run)?) {
                return Ok(live);
            }
        }
    }
    observer.observe_write(&key.kind, WriteVerb::Apply);
    match api.patch(&key.name, &params, &Patch::Apply(&body.0)).await {
        Ok(written) => {
            own_writes.record(&written);
            info!(object = %key, "applied");
            to_object(&written)
        }
        Err(e) => Err(failure(e.to_string())),
    }
}

/// Whether a dry-run apply's result equals the live object, apart from the server's bookkeeping
/// and `status`, which an apply of the main resource never changes (it could only differ by a
/// controller's update in between).
fn same_ignoring_bookkeeping(live: &Object, dry_run: &Object) -> bool {
    let content = |object: &Object| {
        let mut value = without_server_bookkeeping(&object.0);
        if let Some(map) = value.as_object_mut() {
            map.remove("status");
        }
        value
    };
    content(live) == content(dry_run)
}

/// The plan `--apply-strategy always-apply` and `dry-run-diff` carry out: every desired object
/// the diff engine found unchanged is applied anyway (whole, as rendered).
pub fn apply_every_desired(plan: Plan, desired: &[Object]) -> Plan {
    let by_key: HashMap<ObjectKey, &Object> = desired.iter().map(|o| (o.key(), o)).collect();
    let entries = plan
        .entries
        .into_iter()
        .map(|entry| match (&entry.action, by_key.get(&entry.key)) {
            (Action::Unchanged { yielded_paths }, Some(object)) => Entry {
                action: Action::Update {
                    apply_body: (*object).clone(),
                    json_patch: json_patch::Patch(Vec::new()),
                    changed_paths: Vec::new(),
                    immutable_paths: Vec::new(),
                    yielded_paths: yielded_paths.clone(),
                },
                key: entry.key,
            },
            _ => entry,
        })
        .collect();
    Plan { entries }
}

async fn delete(
    api: &Api<DynamicObject>,
    key: &ObjectKey,
    observer: &dyn WriteObserver,
) -> Result<(), ApplyFailure> {
    observer.observe_write(&key.kind, WriteVerb::Delete);
    match api.delete(&key.name, &DeleteParams::background()).await {
        Ok(_) => {
            info!(object = %key, "deleted");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(ApplyFailure::Api {
            object: key.clone(),
            message: e.to_string(),
        }),
    }
}

/// The dynamic API for a child object's kind; `None` for kinds the operator does not manage.
pub fn api_for(client: &Client, key: &ObjectKey) -> Option<Api<DynamicObject>> {
    let kind = ChildKind::find(&key.group, &key.kind)?;
    let resource = kind.api_resource();
    Some(match (&key.namespace, kind.namespaced) {
        (Some(namespace), true) => Api::namespaced_with(client.clone(), namespace, &resource),
        _ => Api::all_with(client.clone(), &resource),
    })
}
