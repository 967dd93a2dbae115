//! `metav1.Status` errors, as the real API server returns them.

use serde_json::{Value, json};

use crate::resources::ResourceInfo;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// One invalid field: `(field path, reason, message)`.
#[derive(Debug, Clone)]
pub struct Cause {
    pub field: String,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }
    /// Something the real API server does that kube-sim does not: a loud error, never a silent difference.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(
            501,
            "NotImplemented",
            format!("kube-sim does not implement this: {}", message.into()),
        )
    }
    pub fn not_found(ri: &ResourceInfo, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", ri.qualified(), name),
        )
        .with_details(details(ri, name))
    }
    pub fn already_exists(ri: &ResourceInfo, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", ri.qualified(), name),
        )
        .with_details(details(ri, name))
    }
    pub fn conflict(ri: &ResourceInfo, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
                ri.qualified(),
                name
            ),
        )
        .with_details(details(ri, name))
    }
    /// A write or delete whose UID precondition names another incarnation of the object.
    pub fn uid_precondition_failed(
        ri: &ResourceInfo,
        name: &str,
        wanted: &str,
        actual: &str,
    ) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": Precondition failed: UID in precondition: {}, UID in object meta: {}",
                ri.qualified(),
                name,
                wanted,
                actual
            ),
        )
    }
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    /// 422 Invalid with causes, message in the real format.
    pub fn invalid(ri: &ResourceInfo, name: &str, causes: Vec<Cause>) -> Self {
        let parts: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let joined = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        let mut d = json!({
            "name": name,
            "kind": ri.kind,
            "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
        });
        if !ri.group.is_empty() {
            d["group"] = json!(ri.group);
        }
        Self::new(
            422,
            "Invalid",
            format!(
                "{} \"{}\" is invalid: {}",
                ri.qualified_kind(),
                name,
                joined
            ),
        )
        .with_details(d)
    }

    /// An error the real server reports without a reason (a plain Go error turned into a 500).
    pub fn unclassified(message: impl Into<String>) -> Self {
        Self::new(500, "", message)
    }

    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        if !self.reason.is_empty() {
            s["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

fn details(ri: &ResourceInfo, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": ri.plural});
    if !ri.group.is_empty() {
        d["group"] = json!(ri.group);
    }
    d
}

impl Cause {
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        Cause {
            field: field.into(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {}: {}", value_repr(value), detail),
        }
    }
    pub fn required(field: &str, detail: &str) -> Self {
        Cause {
            field: field.into(),
            reason: "FieldValueRequired",
            message: if detail.is_empty() {
                "Required value".into()
            } else {
                format!("Required value: {detail}")
            },
        }
    }
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Cause {
            field: field.into(),
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
        }
    }
}

/// How the real server prints a value in field errors (strings quoted, others as JSON).
pub fn value_repr(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) | Value::Array(_) => {
            let t = if v.is_object() { "object" } else { "array" };
            format!("\"{t}\"")
        }
        other => other.to_string(),
    }
}
