//! The long-poll client: `GET .../longpoll?since=S&timeout_ms=T`, held by the server until
//! something newer exists or T passes, and re-requested at once when answered, on one
//! keep-alive connection. (After a failure the runner waits a moment before reconnecting, so a
//! dead server is not hammered in a tight loop.)

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::batch::{open, poll_once};
use super::room_path;
use crate::clients::http::HttpConn;
use crate::clients::{ClientError, ClientHandle, TransportClient};

/// Extra time beyond the hold timeout before a long poll counts as failed.
const GRACE: Duration = Duration::from_secs(10);

/// A long-polling client on one keep-alive connection.
#[derive(Debug)]
pub struct LongPollClient {
    conn: HttpConn,
}

impl TransportClient for LongPollClient {
    type Setup = ();

    async fn connect(me: &mut ClientHandle, _: &()) -> Result<Self, ClientError> {
        Ok(Self {
            conn: open(me).await?,
        })
    }

    async fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        let timeout = me.phase.long_poll_timeout;
        while !stop.is_cancelled() {
            let path = room_path(
                &me.phase,
                &format!(
                    "longpoll?since={}&client={}&timeout_ms={}",
                    me.since,
                    me.id,
                    timeout.as_millis()
                ),
            );
            poll_once(&mut self.conn, me, path, timeout + GRACE, stop).await?;
        }
        Ok(())
    }
}
