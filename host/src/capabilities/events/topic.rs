//! Topics and topic patterns, with RabbitMQ topic-exchange semantics.
//!
//! A topic is dot-separated segments of `[A-Za-z0-9_-]`, e.g. `order.confirmed`. A pattern
//! is the same with two wildcard segments: `*` matches exactly one segment, `#` zero or more.

/// A topic or pattern that is malformed: what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTopic(pub String);

/// Checks a concrete topic.
pub fn validate_topic(topic: &str) -> Result<(), InvalidTopic> {
    if topic.is_empty() || topic.len() > 255 {
        return Err(InvalidTopic(format!(
            "topic must be 1 to 255 bytes, not {}",
            topic.len()
        )));
    }
    for segment in topic.split('.') {
        if !is_literal(segment) {
            return Err(InvalidTopic(format!(
                "topic `{topic}`: segments are non-empty runs of letters, digits, `_` and `-`"
            )));
        }
    }
    Ok(())
}

fn is_literal(segment: &str) -> bool {
    !segment.is_empty()
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A parsed topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`
    One,
    /// `#`
    Any,
}

impl TopicPattern {
    /// Parses `pattern`, or says what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Self, InvalidTopic> {
        if pattern.is_empty() {
            return Err(InvalidTopic("a topic pattern cannot be empty".into()));
        }
        let segments = pattern
            .split('.')
            .map(|segment| match segment {
                "*" => Ok(Segment::One),
                "#" => Ok(Segment::Any),
                s if is_literal(s) => Ok(Segment::Literal(s.to_owned())),
                s => Err(InvalidTopic(format!(
                    "pattern `{pattern}`: bad segment `{s}`"
                ))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { segments })
    }

    /// Whether `topic` (already validated) matches.
    pub fn matches(&self, topic: &str) -> bool {
        let topic: Vec<&str> = topic.split('.').collect();
        matches(&self.segments, &topic)
    }
}

fn matches(pattern: &[Segment], topic: &[&str]) -> bool {
    match pattern.split_first() {
        None => topic.is_empty(),
        Some((Segment::Any, rest)) => (0..=topic.len()).any(|skip| matches(rest, &topic[skip..])),
        Some((segment, rest)) => match topic.split_first() {
            None => false,
            Some((head, tail)) => {
                let ok = match segment {
                    Segment::Literal(literal) => literal == head,
                    _ => true,
                };
                ok && matches(rest, tail)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, topic: &str) -> bool {
        TopicPattern::parse(pattern).unwrap().matches(topic)
    }

    #[test]
    fn wildcards_follow_rabbitmq() {
        assert!(m("order.confirmed", "order.confirmed"));
        assert!(!m("order.confirmed", "order.cancelled"));
        assert!(m("order.*", "order.confirmed"));
        assert!(!m("order.*", "order"));
        assert!(!m("order.*", "order.a.b"));
        assert!(m("order.#", "order"));
        assert!(m("order.#", "order.a.b"));
        assert!(m("#", "anything.at.all"));
        assert!(m("*.confirmed", "order.confirmed"));
        assert!(m("a.#.z", "a.z"));
        assert!(m("a.#.z", "a.b.c.z"));
        assert!(!m("a.#.z", "a.b.c"));
    }

    #[test]
    fn malformed_topics_and_patterns_are_refused() {
        assert!(validate_topic("order.confirmed").is_ok());
        for bad in [
            "",
            "order.",
            ".order",
            "order..x",
            "order.*",
            "order conf",
            "ordér",
        ] {
            assert!(validate_topic(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "a..b", "a.b*", "a.%"] {
            assert!(TopicPattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
