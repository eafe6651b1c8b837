//! The Annotation changeset and views: what the book gets from Ecto (`cast`, `validate_required`)
//! and from `AnnotationView` / `UserView`, written out so the channel's replies have the same
//! shapes as Phoenix's.
//!
//! ```elixir
//! def changeset(annotation, params) do
//!   annotation
//!   |> cast(params, [:body, :at])
//!   |> validate_required([:body, :at])
//! end
//! ```
//!
//! Casting follows Ecto's rules for the column types (`body: :string`, `at: :integer`): only
//! `body` and `at` are read (every other key is ignored, as `cast/3` ignores fields it was not
//! given); an integer `at` may arrive as a JSON integer or as a string holding one (`"42"`,
//! like `Integer.parse/1` with nothing left over); a float, bool, list or map is `"is invalid"`;
//! an absent, `null`, empty or whitespace-only value is `"can't be blank"`.
//!
//! Two checks the book does not have: `body` is at most [`MAX_BODY_CHARS`] Unicode scalar
//! values (`validate_length`'s message), and `at` must fit the book's `integer` (int4) column and not
//! be negative (player time), reported with `validate_number`'s messages — Phoenix would
//! otherwise crash the channel on the database's out-of-range error.

use std::collections::BTreeMap;

use phx_protocol::Payload;
use serde_json::{json, Map, Value};

use super::store::{Annotation, User};

/// A valid `new_annotation` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAnnotation {
    /// The text, verbatim (not trimmed, not escaped: escaping is the renderer's job).
    pub body: String,
    /// Player time in milliseconds, `0..=i32::MAX`.
    pub at: i64,
}

/// Changeset errors, `%{field => [message]}` as `Ecto.Changeset.traverse_errors/2` gives them.
pub type Errors = BTreeMap<&'static str, Vec<String>>;

/// Ecto's `can't be blank`.
const BLANK: &str = "can't be blank";
/// Ecto's cast failure message.
const INVALID: &str = "is invalid";

/// Ecto treats `nil` and (trimmed) empty strings as missing.
fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        _ => false,
    }
}

/// The store's bound on a body, which the changeset checks first so the client gets
/// `validate_length`'s message.
pub use super::store::MAX_BODY_CHARS;

/// `cast` + `validate_required` + `validate_length(:body, max: 1000)` for `body`
/// (`:string`). Ecto counts graphemes by default; we count Unicode scalar values, which is never
/// fewer, so nothing Ecto would refuse is accepted.
fn cast_body(v: Option<&Value>) -> Result<String, String> {
    if is_empty(v) {
        return Err(BLANK.into());
    }
    match v {
        Some(Value::String(s)) if s.chars().count() > MAX_BODY_CHARS => {
            Err(format!("should be at most {MAX_BODY_CHARS} character(s)"))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(INVALID.into()),
    }
}

/// `cast` + `validate_required` for `at` (`:integer`), plus the int4 range.
fn cast_at(v: Option<&Value>) -> Result<i64, String> {
    if is_empty(v) {
        return Err(BLANK.into());
    }
    let at = match v {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| INVALID.to_string())?,
        Some(Value::String(s)) => s.parse::<i64>().map_err(|_| INVALID.to_string())?,
        _ => return Err(INVALID.into()),
    };
    if at < 0 {
        return Err("must be greater than or equal to 0".into());
    }
    if at > i64::from(i32::MAX) {
        return Err(format!("must be less than or equal to {}", i32::MAX));
    }
    Ok(at)
}

/// Casts and validates a `new_annotation` payload. A payload that is not a JSON object (an
/// array, a binary frame) has neither field, so both are reported blank.
pub fn changeset(payload: &Payload) -> Result<NewAnnotation, Errors> {
    let empty = Map::new();
    let params = match payload {
        Payload::Json(Value::Object(m)) => m,
        _ => &empty,
    };
    let body = cast_body(params.get("body"));
    let at = cast_at(params.get("at"));
    match (body, at) {
        (Ok(body), Ok(at)) => Ok(NewAnnotation { body, at }),
        (body, at) => {
            let mut errors = Errors::new();
            if let Err(e) = body {
                errors.insert("body", vec![e]);
            }
            if let Err(e) = at {
                errors.insert("at", vec![e]);
            }
            Err(errors)
        }
    }
}

/// The error reply `{:error, %{errors: errors}}`.
pub fn errors_payload(errors: &Errors) -> Value {
    json!({ "errors": errors })
}

/// `UserView.render("user.json", %{user: user})`: only the id and username, never the
/// user's other columns.
pub fn render_user(user: &User) -> Value {
    json!({ "id": user.id, "username": user.username })
}

/// `AnnotationView.render("annotation.json", ...)` — also the broadcast payload, so what a
/// client receives live and what it receives on (re)join have the same four keys.
pub fn render(ann: &Annotation) -> Value {
    json!({
        "id": ann.id,
        "body": ann.body,
        "at": ann.at,
        "user": render_user(&ann.user),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(v: Value) -> Result<NewAnnotation, Value> {
        changeset(&Payload::Json(v)).map_err(|e| errors_payload(&e))
    }

    #[test]
    fn transcript_error_shape() {
        assert_eq!(
            cs(json!({"body": "", "at": "abc"})),
            Err(json!({"errors": {"at": ["is invalid"], "body": ["can't be blank"]}}))
        );
    }

    #[test]
    fn casts_like_ecto() {
        assert_eq!(
            cs(json!({"body": "hi", "at": "42", "user_id": 9})),
            Ok(NewAnnotation {
                body: "hi".into(),
                at: 42
            })
        );
        assert_eq!(
            cs(json!({"body": " x ", "at": 0})).map(|a| a.body),
            Ok(" x ".into())
        );
        assert!(cs(json!({"body": "x", "at": 1.5})).is_err());
        assert!(cs(json!({"body": "x", "at": "1.0"})).is_err());
        assert!(cs(json!({"body": "x", "at": true})).is_err());
        assert_eq!(
            cs(json!({"body": 7, "at": null})),
            Err(json!({"errors": {"at": ["can't be blank"], "body": ["is invalid"]}}))
        );
        assert_eq!(
            cs(json!({"body": "   ", "at": " "})),
            Err(json!({"errors": {"at": ["can't be blank"], "body": ["can't be blank"]}}))
        );
        assert_eq!(
            changeset(&Payload::Json(json!([1, 2]))).map_err(|e| e.len()),
            Err(2)
        );
    }

    #[test]
    fn at_range() {
        assert_eq!(
            cs(json!({"body": "x", "at": -1})),
            Err(json!({"errors": {"at": ["must be greater than or equal to 0"]}}))
        );
        assert!(cs(json!({"body": "x", "at": 2_147_483_647})).is_ok());
        assert!(cs(json!({"body": "x", "at": 2_147_483_648_i64})).is_err());
        assert!(cs(json!({"body": "x", "at": u64::MAX})).is_err());
    }

    #[test]
    fn body_at_most_1000_scalars() {
        let too_long = json!({"errors": {"body": ["should be at most 1000 character(s)"]}});
        for c in ["a", "é", "😀"] {
            assert_eq!(
                cs(json!({"body": c.repeat(1001), "at": 0})),
                Err(too_long.clone()),
                "1001 × {c}"
            );
        }
        let emoji = "😀".repeat(1000);
        assert_eq!(emoji.len(), 4000);
        assert_eq!(
            cs(json!({"body": emoji, "at": 0})).map(|a| a.body.len()),
            Ok(4000)
        );
    }
}
