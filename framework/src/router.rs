//! The socket's channel routes: `channel "room:*", RoomChannel`.
//!
//! A pattern ending in `*` matches every topic with that prefix (`"room:*"` matches `"room:"`
//! itself too, as in Phoenix); any other pattern matches exactly ([`TopicPattern`]). Routes are
//! tried in the order they were added.

use std::sync::Arc;

use crate::channel::Channel;
use crate::pubsub::history::HistoryOptions;
use crate::topic_pattern::TopicPattern;

/// Creates a fresh channel value for each join.
pub type ChannelFactory = Arc<dyn Fn() -> Box<dyn Channel> + Send + Sync>;

/// One `channel pattern, Module` line.
struct Route {
    /// What topics it matches.
    pattern: TopicPattern,
    /// Makes the channel value for each join.
    factory: ChannelFactory,
    /// The channel module's name, for log lines.
    name: &'static str,
    /// The pattern as written: the metrics' label and the dashboard's list.
    written: Arc<str>,
    /// Message history for the route's topics, when it was declared with one
    /// ([`Router::channel_with_history`]).
    history: Option<HistoryOptions>,
}

/// A list of topic patterns and the channels they start.
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// An empty router (every join is an unmatched topic).
    pub fn new() -> Self {
        Router::default()
    }

    /// `channel pattern, Module`: `make` builds the channel value for each join.
    pub fn channel<C, F>(self, pattern: &str, make: F) -> Self
    where
        C: Channel,
        F: Fn() -> C + Send + Sync + 'static,
    {
        self.add(pattern, make, None)
    }

    /// `channel pattern, Module` with message history on for its topics (a phx-server
    /// extension; Phoenix has none): every broadcast on a matching topic is stamped with the
    /// topic's epoch and offset and kept within `options`' bounds, and a join whose params
    /// carry `{"since": {"epoch": E, "offset": N}}` gets what it missed pushed after the join
    /// reply (see [`crate::pubsub::history`]). Channels of other routes pay nothing for it.
    pub fn channel_with_history<C, F>(self, pattern: &str, make: F, options: HistoryOptions) -> Self
    where
        C: Channel,
        F: Fn() -> C + Send + Sync + 'static,
    {
        self.add(pattern, make, Some(options))
    }

    fn add<C, F>(mut self, pattern: &str, make: F, history: Option<HistoryOptions>) -> Self
    where
        C: Channel,
        F: Fn() -> C + Send + Sync + 'static,
    {
        let factory: ChannelFactory = Arc::new(move || Box::new(make()) as Box<dyn Channel>);
        self.routes.push(Route {
            pattern: TopicPattern::parse(pattern),
            factory,
            name: C::name(),
            written: pattern.into(),
            history,
        });
        self
    }

    /// The routes declared with history: each pattern as written and its bounds, in order
    /// (what the endpoint hands to PubSub when it is built).
    pub fn histories(&self) -> impl Iterator<Item = (&Arc<str>, HistoryOptions)> {
        self.routes
            .iter()
            .filter_map(|r| r.history.map(|h| (&r.written, h)))
    }

    /// Every pattern, as written and in order: what the dashboard lists channels under
    /// (the metrics' `channels` family cannot enumerate its children).
    pub fn patterns(&self) -> impl Iterator<Item = &Arc<str>> {
        self.routes.iter().map(|r| &r.written)
    }

    /// The factory and channel name for `topic`, if a route matches.
    pub fn route(&self, topic: &str) -> Option<(&ChannelFactory, &'static str)> {
        self.matching(topic).map(|(f, name, _)| (f, name))
    }

    /// The factory, channel name and pattern (as written, e.g. `room:*`: the metrics' label)
    /// for `topic`, if a route matches.
    pub fn matching(&self, topic: &str) -> Option<(&ChannelFactory, &'static str, &Arc<str>)> {
        self.routes
            .iter()
            .find(|r| r.pattern.matches(topic))
            .map(|r| (&r.factory, r.name, &r.written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{async_trait, ChannelError, ChannelSocket, JoinReply};
    use phx_protocol::Payload;

    struct Nop;
    #[async_trait]
    impl Channel for Nop {
        async fn join(
            &mut self,
            _: &str,
            _: Payload,
            _: &mut ChannelSocket,
        ) -> Result<JoinReply, ChannelError> {
            Ok(JoinReply::ok())
        }
    }

    #[test]
    fn prefix_and_exact() {
        let r = Router::new()
            .channel("room:*", || Nop)
            .channel("lobby", || Nop);
        assert!(r.route("room:").is_some());
        assert!(r.route("room:lobby").is_some());
        assert!(r.route("lobby").is_some());
        assert!(r.route("lobby:1").is_none());
        assert!(r.route("rooms").is_none());
    }
}
