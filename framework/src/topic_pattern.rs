//! A channel route's topic pattern: `"room:*"` matches every topic with that prefix (`"room:"`
//! itself too, as in Phoenix); any other pattern matches exactly.
//!
//! Its own module because two places match topics against the patterns a router was written
//! with: the router (which channel a join starts) and PubSub's history (which broadcasts are
//! stamped and kept). Neither may import the other without a circle of modules.

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPattern {
    /// `prefix*`: every topic starting with `prefix`.
    Prefix(String),
    /// Anything else: that topic only.
    Exact(String),
}

impl TopicPattern {
    /// Parses a pattern as written in a route (`"room:*"`, `"lobby"`).
    pub fn parse(pattern: &str) -> TopicPattern {
        match pattern.strip_suffix('*') {
            Some(prefix) => TopicPattern::Prefix(prefix.to_string()),
            None => TopicPattern::Exact(pattern.to_string()),
        }
    }

    /// Whether `topic` is one of the pattern's topics.
    #[inline]
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicPattern::Prefix(p) => topic.starts_with(p.as_str()),
            TopicPattern::Exact(e) => topic == e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TopicPattern;

    #[test]
    fn prefix_matches_itself_and_longer_topics_only() {
        let p = TopicPattern::parse("history:*");
        assert!(p.matches("history:"));
        assert!(p.matches("history:a"));
        assert!(!p.matches("histor"));
        assert!(!p.matches("room:a"));
        let e = TopicPattern::parse("lobby");
        assert!(e.matches("lobby"));
        assert!(!e.matches("lobby:1"));
    }
}
