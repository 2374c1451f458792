//! `chat.mode` in the report: the page says who each message was for, and the card's integrity
//! cell who received what (owed vs delivered, and deliveries to clients a message was not for).

use crate::helpers::{fixture, render, section};

#[test]
fn the_page_says_who_each_message_was_for_and_counts_misdeliveries() {
    let mut results = fixture("results.json");
    results.scenario.chat_mode = Some("others".into());
    let phase = &mut results.runs.last_mut().unwrap().phases[0];
    phase.integrity.misdelivered = 3;
    let (_, html) = render(&results, "modes_others");
    assert!(html.contains("everyone but the sender (socket.broadcast.emit)"));
    let card = section(&html, "card");
    assert!(
        card.contains("3 misdelivered to clients a message was not for"),
        "{card}"
    );
    assert!(card.contains("owed delivered (each message for everyone but the sender"));
}

#[test]
fn results_from_before_modes_read_as_everyone() {
    let results = fixture("results.json");
    assert_eq!(results.scenario.chat_mode, None);
    let (_, html) = render(&results, "modes_none");
    assert!(html.contains("everyone in the room, the sender included (io.emit)"));
    assert!(!html.contains("misdelivered"));
}
