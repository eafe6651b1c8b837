//! phx-server (skeleton)
#![forbid(unsafe_code)]
pub mod rumbl;
