//! Wire formats of the servers duplex measures besides itself, as pure functions from text to
//! values and back: no sockets, no clocks, so each rule is unit-tested on its own and the
//! protocol adapters (`crate::protocol`) stay about connections and accounting.
//!
//! - [`engineio`]: Engine.IO v4 packets and polling payloads (the transport under Socket.IO).
//! - [`socketio`]: Socket.IO v5 packets inside Engine.IO messages (connect, events, acks).
//! - [`nchan`]: nchan's message ids, its poll answers' cursor headers and its WebSocket frames.
//!
//! Each is checked against the real server in `tests/stacks.rs`.

pub mod engineio;
pub mod nchan;
pub mod socketio;

/// Text that is not the protocol a codec expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{expected}, got {got:?}")]
pub struct CodecError {
    /// What the protocol needs here, e.g. "an Engine.IO packet type 0-6".
    pub expected: &'static str,
    /// The start of what came instead (at most [`SNIPPET`] characters).
    pub got: String,
}

/// How much of an unexpected text an error quotes: enough to recognise an HTML page or a JSON
/// error, never a whole page.
pub const SNIPPET: usize = 80;

impl CodecError {
    /// `expected`, quoting the start of `got`.
    pub fn new(expected: &'static str, got: &str) -> Self {
        let mut end = got.len().min(SNIPPET);
        while !got.is_char_boundary(end) {
            end -= 1;
        }
        let mut quoted = got[..end].to_owned();
        if end < got.len() {
            quoted.push('…');
        }
        Self {
            expected,
            got: quoted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_quote_only_the_start_of_a_page() {
        let page = format!("<html>{}</html>", "x".repeat(5000));
        let e = CodecError::new("an Engine.IO open packet", &page);
        let text = e.to_string();
        assert!(text.starts_with("an Engine.IO open packet, got \"<html>"));
        assert!(text.len() < 120, "{text}");
        // Multi-byte text is cut on a character boundary.
        let e = CodecError::new("x", &"é".repeat(100));
        assert!(e.got.ends_with('…'));
    }
}
