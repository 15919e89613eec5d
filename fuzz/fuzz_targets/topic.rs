//! Topics and topic patterns (`*` one segment, `#` any number): parsing never panics, a
//! valid topic read as a pattern matches itself, `#` matches every valid topic, and short
//! patterns match exactly where the plain recursive definition says they do.

#![no_main]

use flowhost::capabilities::events::{TopicPattern, validate_topic};
use libfuzzer_sys::fuzz_target;

/// The definition of a match, tried every way (exponential, so only for short inputs).
fn reference(pattern: &[&str], topic: &[&str]) -> bool {
    match pattern.split_first() {
        None => topic.is_empty(),
        Some((&"#", rest)) => (0..=topic.len()).any(|skip| reference(rest, &topic[skip..])),
        Some((segment, rest)) => match topic.split_first() {
            None => false,
            Some((head, tail)) => (*segment == "*" || segment == head) && reference(rest, tail),
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern_text, topic) = text.split_once('\n').unwrap_or((text, text));
    let valid = validate_topic(topic).is_ok();
    if let Ok(pattern) = TopicPattern::parse(pattern_text) {
        let matched = pattern.matches(topic);
        let segments: Vec<&str> = pattern_text.split('.').collect();
        let parts: Vec<&str> = topic.split('.').collect();
        if valid && segments.len() <= 8 && parts.len() <= 8 {
            assert_eq!(
                matched,
                reference(&segments, &parts),
                "{pattern_text:?} on {topic:?}"
            );
        }
    }
    if valid {
        let itself = TopicPattern::parse(topic).expect("a valid topic is a valid pattern");
        assert!(itself.matches(topic), "{topic:?} does not match itself");
        assert!(TopicPattern::parse("#").unwrap().matches(topic));
    }
});
