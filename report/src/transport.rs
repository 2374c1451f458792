//! The four transports as the report knows them: their identifiers (as they appear in
//! `results.json`, CSV files and labels), their display names, their colours and the short
//! explanation students read. The report keeps its own small enum instead of importing the
//! server's, because it must not depend on the server.

/// One of the four ways a client can follow the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// `GET .../poll` on a timer; answered at once.
    ShortPoll,
    /// `GET .../longpoll`; held until something is new or the timeout passes.
    LongPoll,
    /// One `text/event-stream` response that never ends.
    Sse,
    /// One upgraded connection carrying frames both ways.
    WebSocket,
}

impl Transport {
    /// All transports, in the order the report shows them when it has a choice.
    pub const ALL: [Transport; 4] = [
        Transport::ShortPoll,
        Transport::LongPoll,
        Transport::Sse,
        Transport::WebSocket,
    ];

    /// Parses an identifier (`short_poll`, `long_poll`, `sse`, `websocket`).
    pub fn from_id(id: &str) -> Option<Self> {
        match id {
            "short_poll" => Some(Self::ShortPoll),
            "long_poll" => Some(Self::LongPoll),
            "sse" => Some(Self::Sse),
            "websocket" => Some(Self::WebSocket),
            _ => None,
        }
    }

    /// The identifier used in files and labels.
    pub fn id(self) -> &'static str {
        match self {
            Self::ShortPoll => "short_poll",
            Self::LongPoll => "long_poll",
            Self::Sse => "sse",
            Self::WebSocket => "websocket",
        }
    }

    /// The name a reader sees.
    pub fn label(self) -> &'static str {
        match self {
            Self::ShortPoll => "Short polling",
            Self::LongPoll => "Long polling",
            Self::Sse => "Server-Sent Events",
            Self::WebSocket => "WebSocket",
        }
    }

    /// A short name for chart labels, where the full name would not fit.
    pub fn short_label(self) -> &'static str {
        match self {
            Self::ShortPoll => "Short poll",
            Self::LongPoll => "Long poll",
            Self::Sse => "SSE",
            Self::WebSocket => "WebSocket",
        }
    }

    /// The transport's colour, from the Okabe–Ito palette (distinguishable with the common
    /// forms of colour blindness). Each transport keeps its colour in every chart.
    pub fn colour(self) -> &'static str {
        match self {
            Self::ShortPoll => "#D55E00", // vermillion
            Self::LongPoll => "#E69F00",  // orange
            Self::Sse => "#0072B2",       // blue
            Self::WebSocket => "#009E73", // bluish green
        }
    }

    /// Whether clients ask again and again (one HTTP request per answer).
    pub fn is_polling(self) -> bool {
        matches!(self, Self::ShortPoll | Self::LongPoll)
    }
}

/// The colour for a transport identifier the report does not know (a newer loadgen): grey,
/// so it still appears, clearly not one of the four.
pub fn colour_of(id: &str) -> &'static str {
    Transport::from_id(id).map_or("#666666", Transport::colour)
}

/// The display name for an identifier, falling back to the identifier itself.
pub fn label_of(id: &str) -> String {
    Transport::from_id(id).map_or_else(|| id.to_string(), |t| t.label().to_string())
}

/// The short name for an identifier, falling back to the identifier itself.
pub fn short_label_of(id: &str) -> String {
    Transport::from_id(id).map_or_else(|| id.to_string(), |t| t.short_label().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_round_trip() {
        for t in Transport::ALL {
            assert_eq!(Transport::from_id(t.id()), Some(t));
        }
        assert_eq!(Transport::from_id("carrier_pigeon"), None);
    }

    #[test]
    fn every_transport_has_its_own_colour() {
        let mut colours: Vec<_> = Transport::ALL.iter().map(|t| t.colour()).collect();
        colours.sort();
        colours.dedup();
        assert_eq!(colours.len(), 4);
    }
}
