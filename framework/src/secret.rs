//! A secret setting (`SECRET_KEY_BASE`, `ADMIN_TOKEN`): a string whose `Debug` shows only its
//! length, so a `Config` or `Settings` printed with `{:?}` — by an application's own startup
//! log, a panic message, a test failure — does not carry it into logs.

use std::fmt;

/// A secret string. Read it with [`Secret::expose`]; `Debug` prints `Secret(<N bytes>)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself: only where it is used (signing, comparing), never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its length in bytes (what may be shown).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl AsRef<[u8]> for Secret {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn debug_shows_the_length_only() {
        let s = Secret::from("hunter2-hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<23 bytes>)");
        assert_eq!(s.expose(), "hunter2-hunter2-hunter2");
    }
}
