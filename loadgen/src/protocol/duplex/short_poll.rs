//! The short-poll client: `GET .../poll?since=S` on a fixed timer with a random phase (so 300
//! clients do not poll in lockstep), one keep-alive connection, at most one poll in flight. When
//! a poll outlasts the period, the missed ticks are skipped, not bunched up.

use std::time::Duration;

use rand::Rng;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;

use super::batch::{open, poll_once};
use super::room_path;
use crate::clients::http::HttpConn;
use crate::clients::{ClientError, ClientHandle, TransportClient};

/// How long one poll may take before it counts as failed.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

/// A short-polling client on one keep-alive connection, with its poll timer.
#[derive(Debug)]
pub struct ShortPollClient {
    conn: HttpConn,
    ticks: Interval,
}

impl TransportClient for ShortPollClient {
    type Setup = ();

    async fn connect(me: &mut ClientHandle, _: &()) -> Result<Self, ClientError> {
        let conn = open(me).await?;
        let period = me.phase.short_poll_interval;
        let offset = me.rng.random_range(Duration::ZERO..period);
        let mut ticks = interval_at(Instant::now() + offset, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Ok(Self { conn, ticks })
    }

    async fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                _ = self.ticks.tick() => {}
            }
            let path = room_path(
                &me.phase,
                &format!("poll?since={}&client={}", me.since, me.id),
            );
            poll_once(&mut self.conn, me, path, POLL_TIMEOUT, stop).await?;
        }
    }
}
