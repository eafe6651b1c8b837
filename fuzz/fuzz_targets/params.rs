//! Connect params: `decode_query` on any string never panics, and what it returns respects
//! the bounds (nesting ≤ MAX_DEPTH, ≤ MAX_PAIRS pairs in the query it accepted).
#![no_main]

use libfuzzer_sys::fuzz_target;
use phx_protocol::params::{decode_query, ParamsError, MAX_DEPTH, MAX_PAIRS};
use serde_json::Value;

/// The deepest container nesting in `v`, walked with an explicit stack.
fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(m) => stack.extend(m.values().map(|c| (c, d + 1))),
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            _ => max = max.max(d),
        }
        max = max.max(d);
    }
    max
}

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let pairs = query.split('&').filter(|s| !s.is_empty()).count();
    match decode_query(&query) {
        Ok(map) => {
            assert!(pairs <= MAX_PAIRS, "{pairs} pairs accepted");
            // `a` is level 1 and sits one container (the top map) deep.
            let d = depth(&Value::Object(map));
            assert!(d <= MAX_DEPTH, "nesting {d} accepted");
        }
        Err(ParamsError::TooManyPairs) => assert!(pairs > MAX_PAIRS, "{pairs} pairs refused"),
        Err(ParamsError::TooDeep) => assert!(query.contains('[')),
        // Only a percent-escape can make bytes that are not UTF-8 (the input is a &str).
        Err(ParamsError::InvalidUtf8) => assert!(query.contains('%')),
    }
});
