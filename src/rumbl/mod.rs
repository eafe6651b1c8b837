//! The Rumbl application from the book, built on phx-server's public API only.
pub mod store;
