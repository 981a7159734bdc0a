//! The frames a scheduler sends, across its sessions: what `dump` and
//! `record` read. When a session ends, the next one is dialled at the
//! pace of [`Dialer`] and announced, so a recording or a dump of a night
//! spans scheduler restarts; with `--once` the first end is the end.

use anyhow::Result;
use icewatch::monitor::{ConnectError, ConnectOptions, Connection, Dialer};
use icewatch::protocol::frame::Frame;
use icewatch::protocol::MsgType;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What [`Sessions::next`] read.
pub(super) enum Read {
    /// A frame, at the session's protocol.
    Frame(Frame),
    /// A new session began (the first one is not announced).
    Session {
        /// 2 for the second session, and so on.
        number: u32,
        /// The scheduler as shown to people.
        scheduler: String,
        /// The protocol agreed in it.
        protocol: u32,
    },
}

/// A scheduler's frames, session after session.
pub(super) struct Sessions {
    dialer: Dialer,
    conn: Connection,
    once: bool,
    number: u32,
    /// Frames read in this session (END aside).
    delivered: bool,
    /// After a session ended or an attempt failed: when to dial again.
    retry_at: Option<Instant>,
}

impl Sessions {
    /// Starts with `first`, connected as `opts` say.
    pub(super) fn new(first: Connection, opts: ConnectOptions, once: bool) -> Sessions {
        Sessions {
            dialer: Dialer::new(opts),
            conn: first,
            once,
            number: 1,
            delivered: false,
            retry_at: None,
        }
    }

    /// The protocol of the current session.
    pub(super) fn version(&self) -> u32 {
        self.conn.version()
    }

    /// The next frame or session; `None` at shutdown, or at the end of the
    /// only session with `--once`. A first session that is no scheduler's
    /// is an error. Cancel-safe: nothing read or due is lost.
    pub(super) async fn next(&mut self, shutdown: &CancellationToken) -> Result<Option<Read>> {
        loop {
            if let Some(at) = self.retry_at {
                let dialed = tokio::select! {
                    dialed = async {
                        tokio::time::sleep_until(at).await;
                        self.dialer.dial(|_| {}).await
                    } => dialed,
                    () = shutdown.cancelled() => return Ok(None),
                };
                match dialed {
                    Ok(conn) => {
                        self.conn = conn;
                        self.number += 1;
                        self.delivered = false;
                        self.retry_at = None;
                        return Ok(Some(Read::Session {
                            number: self.number,
                            scheduler: self.dialer.shown(self.conn.peer()),
                            protocol: self.conn.version(),
                        }));
                    }
                    Err(e) => {
                        self.retry_at = Some(Instant::now() + self.dialer.pause(&e, false, false));
                        continue;
                    }
                }
            }
            let read = tokio::select! {
                read = self.conn.read_frame() => read,
                () = shutdown.cancelled() => return Ok(None),
            };
            let addr = self.conn.peer();
            let error = match read {
                Ok(Some(frame)) if frame.ty() == MsgType::END => match self.delivered {
                    true => ConnectError::End { addr },
                    false => ConnectError::NotScheduler { addr },
                },
                Ok(Some(frame)) => {
                    self.delivered = true;
                    return Ok(Some(Read::Frame(frame)));
                }
                Ok(None) => ConnectError::Closed { addr },
                Err(e) => e,
            };
            let first = self.number == 1 && !self.delivered;
            if self.once || (first && matches!(error, ConnectError::NotScheduler { .. })) {
                return match error {
                    ConnectError::Closed { .. } | ConnectError::End { .. } => {
                        eprintln!("{error}");
                        Ok(None)
                    }
                    e => Err(e.into()),
                };
            }
            eprintln!("{error}; connecting again (--once stops here instead)");
            self.retry_at = Some(Instant::now() + self.dialer.pause(&error, true, self.delivered));
        }
    }
}
