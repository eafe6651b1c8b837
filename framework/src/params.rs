//! Connect params: the Plug-style query decoder lives in the pure protocol crate (so it is
//! unit-tested and fuzzed without a server); this re-export keeps `crate::params` working.

pub use phx_protocol::params::{decode_query, ParamsError, MAX_DEPTH, MAX_PAIRS};
