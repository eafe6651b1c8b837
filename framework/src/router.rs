//! The socket's channel routes: `channel "room:*", RoomChannel`.
//!
//! A pattern ending in `*` matches every topic with that prefix (`"room:*"` matches `"room:"`
//! itself too, as in Phoenix); any other pattern matches exactly. Routes are tried in the order
//! they were added.

use std::sync::Arc;

use crate::channel::Channel;

/// Creates a fresh channel value for each join.
pub type ChannelFactory = Arc<dyn Fn() -> Box<dyn Channel> + Send + Sync>;

enum Pattern {
    Prefix(String),
    Exact(String),
}

impl Pattern {
    fn parse(pattern: &str) -> Pattern {
        match pattern.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_string()),
            None => Pattern::Exact(pattern.to_string()),
        }
    }

    fn matches(&self, topic: &str) -> bool {
        match self {
            Pattern::Prefix(p) => topic.starts_with(p.as_str()),
            Pattern::Exact(e) => topic == e,
        }
    }
}

/// A list of topic patterns and the channels they start.
#[derive(Default)]
pub struct Router {
    routes: Vec<(Pattern, ChannelFactory, &'static str, Arc<str>)>,
}

impl Router {
    /// An empty router (every join is an unmatched topic).
    pub fn new() -> Self {
        Router::default()
    }

    /// `channel pattern, Module`: `make` builds the channel value for each join.
    pub fn channel<C, F>(mut self, pattern: &str, make: F) -> Self
    where
        C: Channel,
        F: Fn() -> C + Send + Sync + 'static,
    {
        let factory: ChannelFactory = Arc::new(move || Box::new(make()) as Box<dyn Channel>);
        self.routes
            .push((Pattern::parse(pattern), factory, C::name(), pattern.into()));
        self
    }

    /// Every pattern, as written and in order: what the dashboard lists channels under
    /// (the metrics' `channels` family cannot enumerate its children).
    pub fn patterns(&self) -> impl Iterator<Item = &Arc<str>> {
        self.routes.iter().map(|(_, _, _, pattern)| pattern)
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
            .find(|(p, _, _, _)| p.matches(topic))
            .map(|(_, f, name, pattern)| (f, *name, pattern))
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
