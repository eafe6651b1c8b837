//! Annotation storage (placeholder; see issue 4).
