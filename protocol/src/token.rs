//! Phoenix.Token (placeholder)
