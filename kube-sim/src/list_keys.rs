//! How each list field merges (atomic, set, or map keyed by fields), per kind, from the Kubernetes OpenAPI.
