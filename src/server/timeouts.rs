//! The front door's limits, and the pure clock of one connection.
//!
//! Anyone who reads a progress comment knows `PUBLIC_URL`, so the server bounds what a client may
//! hold: a new connection (or a kept-alive one that starts its next request) has
//! `BACKSPACE_HEADER_TIMEOUT_SECS` to send the request's head, then `BACKSPACE_BODY_TIMEOUT_SECS`
//! for its body and the server's answer to start; between requests a kept-alive connection may
//! sit idle for `BACKSPACE_IDLE_TIMEOUT_SECS`. Past a deadline the connection is closed. At most
//! `BACKSPACE_MAX_CONNECTIONS` are open at once (the next is answered 503 with `Retry-After`),
//! and webhook bodies hold at most `BACKSPACE_WEBHOOK_BYTES_IN_FLIGHT` bytes of memory together.
//!
//! [`ConnClock`] is the state machine: the accept loop (`listener`) tells it what the
//! connection does and closes the connection at [`ConnClock::deadline`].

use std::time::{Duration, Instant};

use clap::Args;

/// The front door's settings (flattened into `backspace serve`'s).
#[derive(Debug, Clone, Args)]
pub struct FrontDoorArgs {
    /// Seconds a client has to send a request's headers, from its connection or from the first
    /// byte of a kept-alive connection's next request.
    #[arg(long, env = "BACKSPACE_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Seconds a request's body may take to arrive and its answer to start.
    #[arg(long, env = "BACKSPACE_BODY_TIMEOUT_SECS", default_value_t = 30)]
    pub body_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait between requests.
    #[arg(long, env = "BACKSPACE_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,
    /// Connections open at once; more are answered 503 with Retry-After and closed. Keep it
    /// below the process's file descriptor limit (`ulimit -n`).
    #[arg(long, env = "BACKSPACE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Webhook body bytes held in memory at once, over all deliveries (64MiB, 32M, bytes); a
    /// delivery that would pass it is answered 503 with Retry-After.
    #[arg(long, env = "BACKSPACE_WEBHOOK_BYTES_IN_FLIGHT", default_value = "64MiB", value_parser = crate::sandbox::parse_size)]
    pub webhook_bytes_in_flight: u64,
}

impl FrontDoorArgs {
    /// The limits, or the setting that makes no sense.
    pub fn limits(&self) -> Result<FrontDoorLimits, String> {
        let secs = |name: &str, v: u64| {
            if v == 0 {
                Err(format!("{name} must be at least 1"))
            } else {
                Ok(Duration::from_secs(v))
            }
        };
        if self.max_connections == 0 {
            return Err("BACKSPACE_MAX_CONNECTIONS must be at least 1".into());
        }
        if self.webhook_bytes_in_flight < crate::server::MAX_WEBHOOK_BODY as u64 {
            return Err(format!(
                "BACKSPACE_WEBHOOK_BYTES_IN_FLIGHT must hold at least one webhook body ({} bytes)",
                crate::server::MAX_WEBHOOK_BODY
            ));
        }
        Ok(FrontDoorLimits {
            timeouts: Timeouts {
                header: secs("BACKSPACE_HEADER_TIMEOUT_SECS", self.header_timeout_secs)?,
                body: secs("BACKSPACE_BODY_TIMEOUT_SECS", self.body_timeout_secs)?,
                idle: secs("BACKSPACE_IDLE_TIMEOUT_SECS", self.idle_timeout_secs)?,
            },
            max_connections: self.max_connections,
        })
    }
}

/// The three deadlines of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub header: Duration,
    pub body: Duration,
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(10),
            body: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

/// What the accept loop enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontDoorLimits {
    pub timeouts: Timeouts,
    pub max_connections: usize,
}

impl Default for FrontDoorLimits {
    fn default() -> Self {
        FrontDoorLimits {
            timeouts: Timeouts::default(),
            max_connections: 1024,
        }
    }
}

/// Where a connection is in its request/answer cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's head (a new connection, or bytes of the next request came).
    Head { since: Instant },
    /// The head came: the body and the start of the answer are due.
    Body { since: Instant },
    /// The answer is being sent (an event stream may take long): no deadline.
    Answering,
    /// Kept alive between requests.
    Idle { since: Instant },
}

/// Pure: the deadline of one connection, from what it did and when.
#[derive(Debug, Clone)]
pub struct ConnClock {
    timeouts: Timeouts,
    phase: Phase,
}

impl ConnClock {
    /// A connection accepted at `now`: its first head is due.
    pub fn new(timeouts: Timeouts, now: Instant) -> Self {
        ConnClock {
            timeouts,
            phase: Phase::Head { since: now },
        }
    }

    /// Bytes came in at `now`: a kept-alive connection's next request has begun.
    pub fn bytes_read(&mut self, now: Instant) {
        if let Phase::Idle { .. } = self.phase {
            self.phase = Phase::Head { since: now };
        }
    }

    /// A request's head was read.
    pub fn request_started(&mut self, now: Instant) {
        self.phase = Phase::Body { since: now };
    }

    /// The handler answered; its body is on its way.
    pub fn answer_started(&mut self) {
        self.phase = Phase::Answering;
    }

    /// The answer was sent (or dropped): the connection waits for the next request.
    pub fn answer_finished(&mut self, now: Instant) {
        self.phase = Phase::Idle { since: now };
    }

    /// When the connection is closed unless something happens first; `None` while answering.
    pub fn deadline(&self) -> Option<Instant> {
        let t = &self.timeouts;
        match self.phase {
            Phase::Head { since } => Some(since + t.header),
            Phase::Body { since } => Some(since + t.body),
            Phase::Idle { since } => Some(since + t.idle),
            Phase::Answering => None,
        }
    }

    /// The reason a connection closed at its deadline now is counted under (one of
    /// `metrics::CLOSE_REASONS`; an answer being sent has no deadline).
    pub fn close_reason(&self) -> &'static str {
        match self.phase {
            Phase::Head { .. } => "header_timeout",
            Phase::Body { .. } | Phase::Answering => "body_timeout",
            Phase::Idle { .. } => "idle_timeout",
        }
    }

    /// What the connection was doing, for the log line that says why it was closed.
    pub fn waiting_for(&self) -> &'static str {
        match self.phase {
            Phase::Head { .. } => "the request's headers",
            Phase::Body { .. } => "the request's body",
            Phase::Idle { .. } => "a next request",
            Phase::Answering => "nothing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn clock(now: Instant) -> ConnClock {
        ConnClock::new(
            Timeouts {
                header: S(2),
                body: S(5),
                idle: S(7),
            },
            now,
        )
    }

    #[test]
    fn a_new_connection_must_send_its_head_within_the_header_timeout() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        assert_eq!(c.deadline(), Some(t0 + S(2)));
        // Bytes of a half-sent head do not move the deadline.
        c.bytes_read(t0 + S(1));
        assert_eq!(c.deadline(), Some(t0 + S(2)));
        assert_eq!(c.waiting_for(), "the request's headers");
    }

    #[test]
    fn a_body_is_due_from_its_head_and_an_answer_has_no_deadline() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        c.request_started(t0 + S(1));
        assert_eq!(c.deadline(), Some(t0 + S(6)));
        c.bytes_read(t0 + S(3));
        assert_eq!(c.deadline(), Some(t0 + S(6)));
        c.answer_started();
        assert_eq!(c.deadline(), None);
    }

    #[test]
    fn a_kept_alive_connection_idles_then_its_next_head_is_due() {
        let t0 = Instant::now();
        let mut c = clock(t0);
        c.request_started(t0);
        c.answer_started();
        c.answer_finished(t0 + S(1));
        assert_eq!(c.deadline(), Some(t0 + S(8)));
        assert_eq!(c.waiting_for(), "a next request");
        c.bytes_read(t0 + S(4));
        assert_eq!(c.deadline(), Some(t0 + S(6)));
    }

    #[test]
    fn settings_that_make_no_sense_are_named() {
        let args = FrontDoorArgs {
            header_timeout_secs: 0,
            body_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_connections: 10,
            webhook_bytes_in_flight: 64 << 20,
        };
        assert!(args
            .limits()
            .unwrap_err()
            .contains("BACKSPACE_HEADER_TIMEOUT_SECS"));
        let small = FrontDoorArgs {
            header_timeout_secs: 1,
            webhook_bytes_in_flight: 1 << 20,
            ..args.clone()
        };
        assert!(small
            .limits()
            .unwrap_err()
            .contains("BACKSPACE_WEBHOOK_BYTES_IN_FLIGHT"));
        let none = FrontDoorArgs {
            header_timeout_secs: 1,
            max_connections: 0,
            ..args
        };
        assert!(none.limits().unwrap_err().contains("MAX_CONNECTIONS"));
    }
}
