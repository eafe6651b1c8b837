//! The `phx-server` command's wiring, kept out of `main.rs` so the integration tests build
//! exactly the servers the binary runs: the Rumbl application ([`rumbl::app`]) in normal mode,
//! and in fixture mode the conformance fixture ([`phx_fixture`]) with Rumbl's `videos:*`
//! route contributed to its socket.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod fixture_app;
