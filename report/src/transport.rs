//! How the report shows the four transports: display names and colours, as a [`Style`] trait
//! over the protocol's one [`Transport`] enum (from the `wire` crate, which also owns the
//! identifiers used in `results.json`, CSV files and labels).

pub use wire::Transport;

/// How the report draws a transport: its names and its colour. A trait so call sites read
/// `t.label()`, while the enum itself stays the protocol's (the `wire` crate), with no
/// presentation in it.
pub trait Style {
    /// The name a reader sees.
    fn label(self) -> &'static str;
    /// A short name for chart labels, where the full name would not fit.
    fn short_label(self) -> &'static str;
    /// The transport's colour (see the impl).
    fn colour(self) -> &'static str;
}

impl Style for Transport {
    /// The name a reader sees.
    fn label(self) -> &'static str {
        match self {
            Transport::ShortPoll => "Short polling",
            Transport::LongPoll => "Long polling",
            Transport::Sse => "Server-Sent Events",
            Transport::WebSocket => "WebSocket",
        }
    }

    /// A short name for chart labels, where the full name would not fit.
    fn short_label(self) -> &'static str {
        match self {
            Transport::ShortPoll => "Short poll",
            Transport::LongPoll => "Long poll",
            Transport::Sse => "SSE",
            Transport::WebSocket => "WebSocket",
        }
    }

    /// The transport's colour, from the Okabe–Ito palette (distinguishable with the common
    /// forms of colour blindness). Each transport keeps its colour in every chart, and on the
    /// live page and dashboard (`server/assets/live.css`, checked by a test there). Long polling
    /// is reddish purple, not Okabe–Ito's orange: projected, orange and short polling's
    /// vermillion looked like one colour (issue 13); purple differs from it in hue and lightness.
    fn colour(self) -> &'static str {
        match self {
            Transport::ShortPoll => "#D55E00", // vermillion
            Transport::LongPoll => "#CC79A7",  // reddish purple
            Transport::Sse => "#0072B2",       // blue
            Transport::WebSocket => "#009E73", // bluish green
        }
    }
}

/// A phase's identifier: its transport's (`sse`), or `<stack>/<transport>` (`nchan/sse`) when
/// the run compared several stacks, so each stack x transport is its own row, line and key.
pub fn phase_id(stack: Option<&str>, transport: &str) -> String {
    match stack {
        Some(stack) => format!("{stack}/{transport}"),
        None => transport.to_owned(),
    }
}

/// The stack and the transport of a [`phase_id`].
fn split(id: &str) -> (Option<&str>, &str) {
    match id.split_once('/') {
        Some((stack, transport)) => (Some(stack), transport),
        None => (None, id),
    }
}

/// The colour for an identifier (its transport's, whatever the stack); grey for a transport
/// the report does not know (a newer loadgen), so it still appears, clearly not one of the four.
pub fn colour_of(id: &str) -> &'static str {
    split(id)
        .1
        .parse::<Transport>()
        .ok()
        .map_or("#666666", Transport::colour)
}

/// Each transport's colour in shades for the stacks of one run: the first stack's is the
/// transport's own ([`Style::colour`]), the next ones darker, lighter and darker still, so a
/// transport keeps its hue on every stack (SSE is blue) and two stacks' SSE still differ.
/// Columns: short poll, long poll, SSE, WebSocket.
const SHADES: [[&str; 4]; 4] = [
    ["#D55E00", "#CC79A7", "#0072B2", "#009E73"],
    ["#753400", "#70435C", "#003F62", "#00573F"], // × 0.55
    ["#EAAE80", "#E6BCD3", "#80B8D8", "#80CEB9"], // half way to white
    ["#401C00", "#3D2432", "#002235", "#002F22"], // × 0.3
];

/// The colours of one run's phases ([`phase_id`]s). A run of one stack (or of none named)
/// colours by transport, as always; a run of several colours by stack x transport: each stack,
/// in the order the run measured them, takes the next shade of `SHADES` (a fifth stack
/// reuses the first's; the labels still name it).
#[derive(Debug, Clone, Default)]
pub struct Palette {
    /// The stacks in the order they first appear, when there are several.
    stacks: Vec<String>,
}

impl Palette {
    /// The palette for a run whose phases are `ids`.
    pub fn of<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        let mut stacks: Vec<String> = Vec::new();
        for stack in ids.into_iter().filter_map(|id| split(id).0) {
            if !stacks.iter().any(|s| s == stack) {
                stacks.push(stack.to_owned());
            }
        }
        if stacks.len() < 2 {
            stacks.clear();
        }
        Self { stacks }
    }

    /// The colour of phase `id`: its transport's shade for its stack.
    pub fn colour(&self, id: &str) -> &'static str {
        let (stack, transport) = split(id);
        let Ok(t) = transport.parse::<Transport>() else {
            return colour_of(id);
        };
        let shade = stack
            .and_then(|stack| self.stacks.iter().position(|s| s == stack))
            .unwrap_or(0);
        let column = Transport::ALL
            .iter()
            .position(|&x| x == t)
            .expect("every transport is in ALL");
        SHADES[shade % SHADES.len()][column]
    }
}

/// The display name for an identifier (`nchan · SSE` for a stack's), falling back to the
/// identifier itself.
pub fn label_of(id: &str) -> String {
    named(id, Transport::label)
}

/// The short name for an identifier, falling back to the identifier itself.
pub fn short_label_of(id: &str) -> String {
    named(id, Transport::short_label)
}

fn named(id: &str, name: fn(Transport) -> &'static str) -> String {
    let (stack, transport) = split(id);
    let t = transport
        .parse::<Transport>()
        .ok()
        .map_or_else(|| transport.to_string(), |t| name(t).to_string());
    match stack {
        Some(stack) => format!("{stack} · {t}"),
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_identifiers_fall_back_to_themselves_in_grey() {
        for t in Transport::ALL {
            assert_eq!(label_of(t.as_str()), t.label());
        }
        assert_eq!(label_of("carrier_pigeon"), "carrier_pigeon");
        assert_eq!(colour_of("carrier_pigeon"), "#666666");
    }

    #[test]
    fn a_stacks_phase_is_named_after_its_stack_and_coloured_as_its_transport() {
        let id = phase_id(Some("nchan"), "sse");
        assert_eq!(id, "nchan/sse");
        assert_eq!(label_of(&id), format!("nchan · {}", Transport::Sse.label()));
        assert_eq!(colour_of(&id), colour_of("sse"));
        assert_eq!(phase_id(None, "sse"), "sse");
    }

    #[test]
    fn several_stacks_colour_by_stack_and_transport_one_stack_by_transport() {
        let ids = [
            "duplex/sse",
            "duplex/websocket",
            "nchan/sse",
            "socketio/websocket",
        ];
        let p = Palette::of(ids);
        assert_eq!(p.colour("duplex/sse"), Transport::Sse.colour());
        assert_ne!(p.colour("nchan/sse"), p.colour("duplex/sse"));
        assert_ne!(p.colour("socketio/websocket"), p.colour("duplex/websocket"));
        let all: Vec<&str> = ids.iter().map(|id| p.colour(id)).collect();
        let mut distinct = all.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), all.len(), "{all:?}");
        // One stack, or none named: each transport its own colour, as before stacks.
        let one = Palette::of(["nchan/sse", "nchan/websocket"]);
        assert_eq!(one.colour("nchan/sse"), Transport::Sse.colour());
        let none = Palette::of(["sse", "websocket"]);
        assert_eq!(none.colour("websocket"), Transport::WebSocket.colour());
        assert_eq!(none.colour("carrier_pigeon"), "#666666");
    }

    #[test]
    fn every_shade_keeps_the_transports_apart() {
        for row in SHADES {
            let mut colours = row.to_vec();
            colours.sort();
            colours.dedup();
            assert_eq!(colours.len(), 4);
        }
        for (column, t) in Transport::ALL.iter().enumerate() {
            assert_eq!(
                SHADES[0][column],
                t.colour(),
                "the first shade is {t}'s own"
            );
        }
    }

    #[test]
    fn every_transport_has_its_own_colour() {
        let mut colours: Vec<_> = Transport::ALL.iter().map(|t| t.colour()).collect();
        colours.sort();
        colours.dedup();
        assert_eq!(colours.len(), 4);
    }
}
