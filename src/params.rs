//! Query-string decoding as Plug does it, so `connect` sees the same params as in Phoenix.
//!
//! `a=1&user[id]=7&ids[]=1&ids[]=2` → `{"a":"1","user":{"id":"7"},"ids":["1","2"]}`. The last
//! value of a repeated key wins (LongPoll depends on this: the client appends its session
//! `token` after the user's). Keys are percent-decoded with `+` as space.

use serde_json::{Map, Value};

/// Decodes a raw query string into a params map.
pub fn decode_query(query: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key.is_empty() {
            continue;
        }
        insert(&mut out, &key, Value::String(value.into_owned()));
    }
    out
}

/// Splits `user[info][name]` into `["user", "info", "name"]`; `ids[]` gives `["ids", ""]`.
fn split_key(key: &str) -> Vec<&str> {
    let Some(open) = key.find('[') else {
        return vec![key];
    };
    if open == 0 {
        return vec![key];
    }
    let mut parts = vec![&key[..open]];
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        match stripped.find(']') {
            Some(close) => {
                parts.push(&stripped[..close]);
                rest = &stripped[close + 1..];
            }
            None => {
                // Unbalanced bracket: Plug keeps the remainder as part of the last key.
                return vec![key];
            }
        }
    }
    parts
}

fn insert(map: &mut Map<String, Value>, key: &str, value: Value) {
    let parts = split_key(key);
    insert_path(map, &parts, value);
}

fn insert_path(map: &mut Map<String, Value>, parts: &[&str], value: Value) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    if rest.is_empty() {
        map.insert((*first).to_string(), value);
        return;
    }
    if rest[0].is_empty() {
        // `key[]=v`: a list; Plug appends. `key[][x]` is treated as a list of one map.
        let entry = map
            .entry((*first).to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if !entry.is_array() {
            *entry = Value::Array(Vec::new());
        }
        if let Value::Array(items) = entry {
            if rest.len() == 1 {
                items.push(value);
            } else {
                let mut inner = Map::new();
                insert_path(&mut inner, &rest[1..], value);
                items.push(Value::Object(inner));
            }
        }
        return;
    }
    let entry = map
        .entry((*first).to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Value::Object(inner) = entry {
        insert_path(inner, rest, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flat_and_last_wins() {
        let p = decode_query("token=a&vsn=2.0.0&token=b");
        assert_eq!(Value::Object(p), json!({"token": "b", "vsn": "2.0.0"}));
    }

    #[test]
    fn brackets_nest_like_plug() {
        let p = decode_query("user%5Bid%5D=1&ids%5B0%5D=7&ids%5B1%5D=8&l[]=x&l[]=y");
        assert_eq!(
            Value::Object(p),
            json!({"user": {"id": "1"}, "ids": {"0": "7", "1": "8"}, "l": ["x", "y"]})
        );
    }

    #[test]
    fn empty_segments_and_plus() {
        let p = decode_query("a=1&&b=x+y&vsn=2.0.0&");
        assert_eq!(
            Value::Object(p),
            json!({"a": "1", "b": "x y", "vsn": "2.0.0"})
        );
    }

    #[test]
    fn non_string_vsn() {
        let p = decode_query("vsn[x]=1");
        assert_eq!(Value::Object(p), json!({"vsn": {"x": "1"}}));
    }
}
