//! The long-poll client: `GET .../longpoll?since=S&timeout_ms=T`, held by the server until
//! something newer exists or T passes, and re-requested at once when answered, on one
//! keep-alive connection. After a failure it waits a moment before retrying, so a dead server
//! is not hammered in a tight loop.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batch::poll_once;
use super::http::HttpConn;
use super::{ClientError, ClientHandle, TransportClient, pause};

/// Extra time beyond the hold timeout before a long poll counts as failed.
const GRACE: Duration = Duration::from_secs(10);
/// Wait after a failed poll before the next.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// A long-polling client.
#[derive(Debug)]
pub struct LongPollClient {
    conn: Option<HttpConn>,
}

impl TransportClient for LongPollClient {
    async fn connect(me: &mut ClientHandle) -> Result<Self, ClientError> {
        let start = Instant::now();
        let (conn, took) = HttpConn::open(&me.phase).await?;
        me.phase
            .meter
            .connect_time
            .record_us(me.index, took.as_micros() as u64);
        me.trace_connect(start);
        Ok(Self { conn: Some(conn) })
    }

    async fn follow(mut self, me: &mut ClientHandle, stop: &CancellationToken) {
        let timeout = me.phase.long_poll_timeout;
        loop {
            let path = me.phase.room_path(&format!(
                "longpoll?since={}&client={}&timeout_ms={}",
                me.since,
                me.id,
                timeout.as_millis()
            ));
            if !poll_once(&mut self.conn, me, path, timeout + GRACE, stop).await {
                return;
            }
            if self.conn.is_none() && !pause(RETRY_AFTER, stop).await {
                return;
            }
        }
    }
}
