//! Server-side apply: merging an applied configuration into a live object and tracking field ownership.
