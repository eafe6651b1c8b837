//! The dashboard's own Phoenix socket (`/dashboard/socket` on the admin listener): the page
//! talks to the server over the server's own protocol with the official `phoenix` client,
//! so the dashboard is also a small standing test of the thing it watches.
//!
//! `connect` is the only gate: the `token` param must equal `ADMIN_TOKEN`. Anything else is
//! refused the way any Phoenix socket refuses (403 on the upgrade), and so is everyone while
//! `ADMIN_TOKEN` is unset.

use async_trait::async_trait;
use subtle::ConstantTimeEq;

use crate::channel::{Channel, ChannelError, ChannelSocket, JoinReply};
use crate::context::Context;
use crate::socket::{Assigns, ConnectError, ConnectInfo, Params, SocketHandler};
use phx_protocol::Payload;

/// The topic every node publishes its snapshots on and every dashboard joins.
pub const TOPIC: &str = "dashboard:stats";

/// The event a snapshot is pushed as.
pub const EVENT: &str = "snapshot";

/// `Phx.DashboardSocket`: admits a client whose `token` param is `ADMIN_TOKEN`.
pub struct DashboardSocket {
    /// `ADMIN_TOKEN`; `None` refuses every connect.
    token: Option<String>,
}

impl DashboardSocket {
    /// A socket admitting the holders of `token` (nobody when `None`).
    pub fn new(token: Option<String>) -> DashboardSocket {
        DashboardSocket { token }
    }

    /// Whether `given` is the admin token. Compared in constant time, so that the time a
    /// refusal takes does not tell an attacker how many leading bytes were right (only the
    /// length can show).
    fn admits(&self, given: Option<&str>) -> bool {
        match (&self.token, given) {
            (Some(token), Some(given)) => bool::from(token.as_bytes().ct_eq(given.as_bytes())),
            _ => false,
        }
    }
}

#[async_trait]
impl SocketHandler for DashboardSocket {
    async fn connect(
        &self,
        _ctx: &Context,
        params: &Params,
        info: &ConnectInfo,
    ) -> Result<Assigns, ConnectError> {
        if self.admits(info.token(params)?) {
            Ok(Assigns::new())
        } else {
            Err(ConnectError::Refused)
        }
    }

    fn name(&self) -> &'static str {
        "Phx.DashboardSocket"
    }
}

/// `Phx.DashboardChannel` on [`TOPIC`]: joining subscribes the client to every node's
/// snapshots, which the publisher broadcasts there; the channel itself has nothing to say.
#[derive(Debug, Default)]
pub struct DashboardChannel;

#[async_trait]
impl Channel for DashboardChannel {
    fn name() -> &'static str {
        "Phx.DashboardChannel"
    }

    async fn join(
        &mut self,
        _topic: &str,
        _payload: Payload,
        _socket: &mut ChannelSocket,
    ) -> Result<JoinReply, ChannelError> {
        Ok(JoinReply::ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_only_the_exact_token() {
        let s = DashboardSocket::new(Some("s3cret".into()));
        assert!(s.admits(Some("s3cret")));
        assert!(!s.admits(Some("s3cre")));
        assert!(!s.admits(Some("s3cret!")));
        assert!(!s.admits(Some("")));
        assert!(!s.admits(None));
    }

    #[test]
    fn no_admin_token_admits_nobody() {
        let s = DashboardSocket::new(None);
        assert!(!s.admits(Some("")));
        assert!(!s.admits(None));
    }
}
