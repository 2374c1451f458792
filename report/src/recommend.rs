//! Which transport to pick for the scenario's parameters, why, and the caveats that apply: a
//! short recommendation computed from the [`Analysis`] of the run the page shows. The rule is
//! the lesson's: when clients also send (a chat), one WebSocket carries both directions; when
//! they only listen, SSE pushes one way over plain HTTP; long polling is the fallback where
//! neither passes; short polling only fits a room so quiet, and a delay so tolerable, that its
//! empty answers do not matter.

use crate::analysis::{Analysis, PhaseAnalysis, RunAnalysis};
use crate::findings::in_sentence;
use crate::format;
use crate::transport::Transport;

/// A recommendation for the scenario's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// The transport recommended.
    pub transport: Transport,
    /// Why, with this run's numbers.
    pub reasons: Vec<String>,
    /// What to watch for with it, and when another one is the better pick.
    pub caveats: Vec<String>,
}

/// The recommendation for the run the page shows; `None` when nothing was measured.
pub fn recommend(analysis: &Analysis) -> Option<Recommendation> {
    let run = analysis.headline()?;
    let scenario = &analysis.results.scenario;
    let clients_send = scenario.senders > 0;
    let transport = if clients_send {
        Transport::WebSocket
    } else {
        Transport::Sse
    };
    let lambda = scenario.senders as f64 * run.run.rate_per_sender;
    let interval_s = run.run.short_poll_interval_ms / 1000.0;
    let find = |t: Transport| run.phases.iter().find(|a| a.transport == Some(t));

    let mut reasons = vec![if clients_send {
        format!(
            "Clients send as well as receive ({} of {} clients publish {} message(s) per \
             second each): one WebSocket carries both directions, with no request per message \
             and no headers after the handshake.",
            scenario.senders,
            format::count(run.run.clients),
            format::real(run.run.rate_per_sender)
        )
    } else {
        "Clients only listen: SSE pushes each message the moment the server has it, over plain \
         HTTP, and the browser reconnects and resumes by itself (Last-Event-ID)."
            .into()
    }];
    if let Some(chosen) = find(transport) {
        reasons.extend(compared_with_polling(run, chosen));
    }
    let per_interval = lambda * interval_s;
    let empty = format::share((-per_interval).exp());
    let interval = format::ms(run.run.short_poll_interval_ms);
    reasons.push(if per_interval < 1.0 {
        format!(
            "The room is quiet for polling: {} message(s) per {interval} poll interval on \
             average, so about {empty} of short polls find nothing and long polls mostly wait.",
            format::real(per_interval)
        )
    } else if per_interval < 3.0 {
        format!(
            "The room is neither quiet nor busy for polling: {} messages per {interval} poll \
             interval on average, so about {empty} of short polls find nothing.",
            format::real(per_interval)
        )
    } else {
        format!(
            "The room is busy for polling: {} messages per {interval} poll interval on \
             average, so nearly every poll carries news and long polling makes about one \
             request per message.",
            format::real(per_interval)
        )
    });

    let mut caveats = Vec::new();
    match transport {
        Transport::WebSocket => caveats.push(
            "Every proxy and load balancer on the way must pass the Upgrade and keep idle \
             connections open (send pings more often than their idle timeout). WebSocket has no \
             resume of its own: reconnect with the last seq seen (duplex's ?since=)."
                .into(),
        ),
        _ => caveats.push(
            "Over HTTP/1.1 a browser keeps at most six connections per host, shared by all its \
             tabs: a seventh tab's stream waits. Serve SSE over HTTP/2, or share one stream \
             between tabs. Clients that need to send use ordinary POSTs beside it."
                .into(),
        ),
    }
    caveats.push(
        "Proxies that buffer responses (nginx's proxy_buffering, some corporate proxies) hold \
         SSE events and long-poll answers back until a buffer fills: turn buffering off for \
         these paths."
            .into(),
    );
    caveats.push(match find(Transport::LongPoll) {
        Some(long) => format!(
            "Where nothing but plain request/response passes, long polling works everywhere; \
             here it cost {} requests per second and {} per delivered message.",
            format::real(long.measured.requests_per_s),
            long.measured
                .bytes_down_per_message
                .map_or_else(|| "nothing".into(), format::bytes)
        ),
        None => "Where nothing but plain request/response passes, long polling works \
                 everywhere, at about one request per message."
            .into(),
    });
    caveats.push(format!(
        "Short polling fits only when a delay of half the interval (here {}) is acceptable and \
         the extra requests are cheap for the server.",
        format::ms(run.run.short_poll_interval_ms / 2.0)
    ));
    Some(Recommendation {
        transport,
        reasons,
        caveats,
    })
}

/// The chosen transport's requests and bytes beside short polling's, when both ran.
fn compared_with_polling(run: &RunAnalysis, chosen: &PhaseAnalysis) -> Option<String> {
    let short = run
        .phases
        .iter()
        .find(|a| a.transport == Some(Transport::ShortPoll))?;
    let bytes = |a: &PhaseAnalysis| {
        a.measured
            .bytes_down_per_message
            .map_or_else(|| "—".into(), format::bytes)
    };
    Some(format!(
        "In this run {} made {} requests per second and read {} per delivered message; short \
         polling made {} and read {}.",
        in_sentence(chosen),
        format::real(chosen.measured.requests_per_s),
        bytes(chosen),
        format::real(short.measured.requests_per_s),
        bytes(short)
    ))
}
