//! Each node's publisher: once a second it takes a [`Snapshot`] and broadcasts it on [`TOPIC`]
//! through the endpoint's PubSub. With the Redis adapter that broadcast reaches every node, so
//! a dashboard opened on any node charts all of them, each snapshot tagged with its node's
//! name; on one node it is a local broadcast to the open dashboards.

use std::time::Duration;

use crate::endpoint::Endpoint;
use crate::metrics::ChannelLabels;

use super::snapshot::{node_name, Sampler, Snapshot};
use super::socket::{EVENT, TOPIC};
use super::SOCKET_PATH;

/// How often a node publishes: the dashboard's resolution.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Every route whose channel gauge the dashboard shows: each mounted socket's patterns and
/// the dashboard's own.
fn routes(endpoint: &Endpoint) -> Vec<ChannelLabels> {
    let mut routes: Vec<ChannelLabels> = endpoint
        .mounts()
        .iter()
        .flat_map(|mount| {
            let socket: std::sync::Arc<str> = mount.path.as_str().into();
            mount
                .router
                .patterns()
                .map(move |pattern| ChannelLabels {
                    socket: socket.clone(),
                    pattern: pattern.clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    routes.push(ChannelLabels {
        socket: SOCKET_PATH.into(),
        pattern: TOPIC.into(),
    });
    routes
}

/// Publishes this node's snapshot every [`INTERVAL`] until the returned task is aborted.
pub fn spawn(endpoint: &Endpoint) -> tokio::task::JoinHandle<()> {
    let ep = endpoint.clone();
    tokio::spawn(async move {
        let mut sampler = Sampler::new(ep.metrics().clone(), node_name(ep.config()), routes(&ep));
        let mut tick = tokio::time::interval(INTERVAL);
        // A late tick (a busy runtime) is not made up for with a burst: the rates are per
        // elapsed second anyway.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let snapshot: Snapshot = sampler.sample();
            match serde_json::to_value(&snapshot) {
                Ok(payload) => {
                    ep.broadcast(TOPIC, EVENT, payload);
                }
                Err(e) => tracing::warn!("dashboard snapshot not encodable: {e}"),
            }
        }
    })
}
