//! The client's cursor, from its join params: `{"since": {"epoch": E, "offset": N}}`.

use phx_protocol::Payload;
use serde_json::Value;

/// Where a rejoining client says it is: the epoch it last saw and the offset of the last
/// broadcast it received (the join reply's `offset` plus the broadcasts counted since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    /// The epoch of the client's last position.
    pub epoch: String,
    /// The offset of the last broadcast it has.
    pub offset: u64,
}

impl Since {
    /// The cursor in a join payload, if it has a well-formed one. Anything else (no `since`, a
    /// non-string epoch, a negative or fractional offset, a binary payload) is no cursor: the
    /// join then answers `recovered: false`, as for a first join — never an error, because a
    /// client that cannot recover must still join and refetch.
    pub fn from_params(payload: &Payload) -> Option<Since> {
        let Payload::Json(Value::Object(params)) = payload else {
            return None;
        };
        let since = params.get("since")?.as_object()?;
        Some(Since {
            epoch: since.get("epoch")?.as_str()?.to_string(),
            offset: since.get("offset")?.as_u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Since;
    use phx_protocol::Payload;
    use serde_json::json;

    #[test]
    fn well_formed_cursor_only() {
        let ok = Payload::Json(json!({"since": {"epoch": "ab", "offset": 7}, "x": 1}));
        assert_eq!(
            Since::from_params(&ok),
            Some(Since {
                epoch: "ab".into(),
                offset: 7
            })
        );
        for bad in [
            json!({}),
            json!({"since": null}),
            json!({"since": {"epoch": 1, "offset": 7}}),
            json!({"since": {"epoch": "ab", "offset": -1}}),
            json!({"since": {"epoch": "ab", "offset": 1.5}}),
            json!({"since": {"epoch": "ab"}}),
        ] {
            assert_eq!(
                Since::from_params(&Payload::Json(bad.clone())),
                None,
                "{bad}"
            );
        }
    }
}
