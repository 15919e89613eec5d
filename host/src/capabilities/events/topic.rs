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

/// Whether `pattern` matches `topic`, in time proportional to their lengths' product.
///
/// Trying each way a `#` could split the topic, recursively, took exponential time on a
/// pattern with several `#` and a topic it does not match (`a.#.#.#.#.#.#.#.z`, found by
/// the `topic` fuzz target): a grant or a subscription could stall every publish. Instead,
/// one pass over the pattern keeps, for each topic prefix, whether the pattern so far
/// matches exactly that prefix.
fn matches(pattern: &[Segment], topic: &[&str]) -> bool {
    let mut reached = vec![false; topic.len() + 1];
    reached[0] = true;
    for segment in pattern {
        match segment {
            // Any number of segments: every prefix at least as long as one reached.
            Segment::Any => {
                let mut any = false;
                for prefix in &mut reached {
                    any |= *prefix;
                    *prefix = any;
                }
            }
            // Exactly one segment: a prefix one longer, if its last segment fits.
            one => {
                for end in (1..=topic.len()).rev() {
                    let fits = match one {
                        Segment::Literal(literal) => literal == topic[end - 1],
                        _ => true,
                    };
                    reached[end] = reached[end - 1] && fits;
                }
                reached[0] = false;
            }
        }
    }
    reached[topic.len()]
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
        assert!(m("#.#", "a"));
        assert!(m("#.*.#", "a.b"));
        assert!(!m("*.*", "a"));
        assert!(m("a.#.b.#", "a.x.b"));
        assert!(!m("a.#.b.#.c", "a.b.c.b"));
    }

    /// Found by the `topic` fuzz target: each `#` tried every split of the topic in turn,
    /// exponentially many for a pattern of many `#` and a topic it does not match. This
    /// one took hours; it now takes microseconds, and a regression hangs the test.
    #[test]
    fn many_hashes_against_a_long_topic_that_does_not_match() {
        let pattern = format!("a.{}z", "#.".repeat(30));
        let topic = format!("a.{}y", "b.".repeat(60));
        assert!(!m(&pattern, &topic));
        assert!(m(&pattern, &format!("a.{}z", "b.".repeat(60))));
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
