//! Transports: how frames reach a [`Session`](crate::session::Session). Shared handshake
//! rules (check_origin, vsn, the authToken subprotocol) live here so WebSocket and LongPoll
//! apply them identically.

mod driver;
pub mod handshake;
pub mod longpoll;
pub mod origin;
pub mod websocket;

use base64::Engine;
use phx_protocol::{Serializer, VsnError};
use serde_json::Value;

use crate::socket::Params;

/// The subprotocol prefix that carries the 1.8 `authToken`.
pub const AUTH_TOKEN_PREFIX: &str = "base64url.bearer.phx.";

/// Negotiates the serializer from `params["vsn"]` (missing → V1; non-string → refused).
pub fn negotiate(params: &Params) -> Result<Serializer, VsnError> {
    match params.get("vsn") {
        None => Serializer::negotiate(None),
        Some(Value::String(v)) => Serializer::negotiate(Some(v)),
        Some(other) => Err(VsnError(other.to_string())),
    }
}

/// The result of looking at `Sec-WebSocket-Protocol` (spec §1.5).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Subprotocols {
    /// The decoded auth token, when exactly one `base64url.bearer.phx.` element was sent.
    pub auth_token: Option<String>,
    /// The remaining offered subprotocols.
    pub offered: Vec<String>,
}

/// Why the subprotocol header was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubprotocolError {
    /// The token element is not valid base64 (Phoenix raises, i.e. HTTP 500; we answer 400).
    #[error("auth token subprotocol is not valid base64")]
    BadToken,
}

/// Splits the header on commas, extracts the auth token (standard base64, padding optional).
pub fn parse_subprotocols(header: Option<&str>) -> Result<Subprotocols, SubprotocolError> {
    let Some(header) = header else {
        return Ok(Subprotocols::default());
    };
    let items: Vec<&str> = header
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let tokens: Vec<&&str> = items
        .iter()
        .filter(|s| s.starts_with(AUTH_TOKEN_PREFIX))
        .collect();
    if tokens.len() != 1 {
        return Ok(Subprotocols {
            auth_token: None,
            offered: items.iter().map(|s| s.to_string()).collect(),
        });
    }
    let encoded = &tokens[0][AUTH_TOKEN_PREFIX.len()..];
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine
        .decode(encoded)
        .map_err(|_| SubprotocolError::BadToken)?;
    let token = String::from_utf8(bytes).map_err(|_| SubprotocolError::BadToken)?;
    Ok(Subprotocols {
        auth_token: Some(token),
        offered: items
            .iter()
            .filter(|s| !s.starts_with(AUTH_TOKEN_PREFIX))
            .map(|s| s.to_string())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_token_padded_and_unpadded() {
        for h in [
            "phoenix, base64url.bearer.phx.bXktdG9rZW4",
            "phoenix, base64url.bearer.phx.bXktdG9rZW4=",
        ] {
            let s = parse_subprotocols(Some(h)).expect("valid");
            assert_eq!(s.auth_token.as_deref(), Some("my-token"));
            assert_eq!(s.offered, vec!["phoenix".to_string()]);
        }
    }

    #[test]
    fn two_tokens_are_left_alone() {
        let s = parse_subprotocols(Some("base64url.bearer.phx.YQ, base64url.bearer.phx.Yg"))
            .expect("ok");
        assert_eq!(s.auth_token, None);
        assert_eq!(s.offered.len(), 2);
    }

    #[test]
    fn bad_base64_is_an_error_not_a_panic() {
        assert_eq!(
            parse_subprotocols(Some("phoenix, base64url.bearer.phx.!!!")),
            Err(SubprotocolError::BadToken)
        );
    }
}
