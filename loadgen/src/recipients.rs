//! Who each chat message is for (`chat.mode`), named after Socket.IO's three broadcast forms:
//! everyone in the room, the sender included (`io.emit`); everyone but the sender
//! (`socket.broadcast.emit`); one client (`socket.emit` to one socket, which the chat server
//! does with `socket.to(id).emit`). The mode decides what a publish says (duplex's and
//! Socket.IO's `to` / `echo`) and which clients the ledger holds each acknowledged message
//! owed to, so missing and duplicated stay exact in every mode, and a delivery to a client the
//! message was not for is counted apart (misdelivered).

/// `chat.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChatMode {
    /// Everyone in the room, the sender included (`io.emit`).
    #[default]
    All,
    /// Everyone but the sender (`socket.broadcast.emit`).
    Others,
    /// One client, never the sender; each message of a sender goes to the next client in turn,
    /// so every client receives some (`socket.emit` to one socket).
    Direct,
}

impl ChatMode {
    /// Every mode, in the order the key lists them.
    pub const ALL: [ChatMode; 3] = [ChatMode::All, ChatMode::Others, ChatMode::Direct];

    /// Its `chat.mode` word (also the Socket.IO peer's `--mode`).
    pub fn id(self) -> &'static str {
        match self {
            ChatMode::All => "all",
            ChatMode::Others => "others",
            ChatMode::Direct => "direct",
        }
    }

    /// The mode named `word`.
    pub fn from_id(word: &str) -> Option<ChatMode> {
        ChatMode::ALL.into_iter().find(|m| m.id() == word)
    }

    /// The one recipient of sender `sender`'s `n`-th message among `clients` clients, in
    /// [`ChatMode::Direct`]: the clients after the sender, in turn (never the sender itself).
    pub fn recipient(self, sender: usize, n: u32, clients: usize) -> Option<usize> {
        match self {
            ChatMode::Direct if clients > 1 => {
                Some((sender + 1 + n as usize % (clients - 1)) % clients)
            }
            _ => None,
        }
    }

    /// Whether client `client` is owed `message` (of `clients` clients).
    pub fn owes(self, message: &Addressed, client: usize, clients: usize) -> bool {
        match self {
            ChatMode::All => true,
            ChatMode::Others => message.sender != client,
            ChatMode::Direct => self.recipient(message.sender, message.n, clients) == Some(client),
        }
    }

    /// How a publish says who the message is for: `(to, echo)` as duplex's publish and
    /// Socket.IO's chat event carry them (`None`: the server's default, everyone).
    pub fn addressing(
        self,
        sender: usize,
        n: u32,
        clients: usize,
    ) -> (Option<String>, Option<bool>) {
        match self {
            ChatMode::All => (None, None),
            ChatMode::Others => (None, Some(false)),
            ChatMode::Direct => (
                self.recipient(sender, n, clients).map(|r| format!("c{r}")),
                None,
            ),
        }
    }

    /// About how many deliveries one message owes when `connected` clients follow the room
    /// (for ending the drain early; the ledger counts exactly).
    pub fn owed_per_message(self, connected: u64) -> u64 {
        match self {
            ChatMode::All => connected,
            ChatMode::Others => connected.saturating_sub(1),
            ChatMode::Direct => connected.min(1),
        }
    }
}

/// One message the server acknowledged: its seq, and whose `n`-th message it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Addressed {
    /// Its position in the room's log.
    pub seq: u64,
    /// The sender's index.
    pub sender: usize,
    /// The sender's message counter.
    pub n: u32,
    /// When its HTTP publish was in flight; `None` for a publish sent over an ordered stream
    /// (a WebSocket, a Socket.IO session), which the server reads in the order sent.
    pub request: Option<RequestSpan>,
}

/// The time an HTTP publish was in flight, on the loadgen's clock ([`crate::clock::ns_at`]):
/// the server read it at some point between the request leaving and its answer arriving, so
/// of two publishes whose spans overlap the server may have stored either first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestSpan {
    /// When the request was written.
    pub left_ns: u64,
    /// When its answer was complete.
    pub answered_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_messages_go_to_every_other_client_in_turn_never_the_sender() {
        let clients = 4;
        let to: Vec<usize> = (0..6)
            .map(|n| ChatMode::Direct.recipient(1, n, clients).unwrap())
            .collect();
        assert_eq!(to, [2, 3, 0, 2, 3, 0]);
        let m = Addressed {
            seq: 1,
            sender: 1,
            n: 0,
            request: None,
        };
        let owed: Vec<usize> = (0..clients)
            .filter(|&c| ChatMode::Direct.owes(&m, c, clients))
            .collect();
        assert_eq!(owed, [2]);
    }

    #[test]
    fn others_owes_everyone_but_the_sender_and_all_owes_everyone() {
        let m = Addressed {
            seq: 1,
            sender: 2,
            n: 7,
            request: None,
        };
        let others: Vec<usize> = (0..4)
            .filter(|&c| ChatMode::Others.owes(&m, c, 4))
            .collect();
        assert_eq!(others, [0, 1, 3]);
        assert!((0..4).all(|c| ChatMode::All.owes(&m, c, 4)));
        assert_eq!(ChatMode::Others.addressing(2, 7, 4), (None, Some(false)));
        assert_eq!(
            ChatMode::Direct.addressing(2, 0, 4),
            (Some("c3".into()), None)
        );
        assert_eq!(ChatMode::All.addressing(2, 0, 4), (None, None));
    }
}
