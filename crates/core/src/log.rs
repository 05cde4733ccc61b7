//! Where the core's log lines go: a sink the caller provides (the N-API layer forwards them
//! to the user's `logger`). Nothing secret is ever passed to it: the SMTP transcript shows
//! `AUTH XOAUTH2 <redacted>`, token events show only expiry times.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

pub type LogSink = Arc<dyn Fn(Level, &str) + Send + Sync>;

/// A sink over a bounded queue (the N-API layer's queue to the JS thread): `try_send`
/// queues one line and returns `false` when the queue is full. A line that does not fit is
/// dropped and counted, never waited for, so a slow logger can neither block a send nor
/// make memory grow; the count goes out as one warning ("N log lines dropped") ahead of
/// the next line that fits.
pub fn dropping_when_full(try_send: impl Fn(Level, String) -> bool + Send + Sync + 'static) -> LogSink {
    let dropped = AtomicU64::new(0);
    Arc::new(move |level: Level, message: &str| {
        let missed = dropped.swap(0, Ordering::AcqRel);
        if missed > 0
            && !try_send(
                Level::Warn,
                format!("{missed} log lines dropped: the logger did not keep up"),
            )
        {
            dropped.fetch_add(missed + 1, Ordering::AcqRel);
            return;
        }
        if !try_send(level, message.to_string()) {
            dropped.fetch_add(1, Ordering::AcqRel);
        }
    })
}

/// A cheap handle: without a sink, logging costs one branch.
#[derive(Clone, Default)]
pub struct Logger {
    sink: Option<LogSink>,
    /// Whether the SMTP transcript is wanted (`debug: true`).
    transcript: bool,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Logger {{ enabled: {}, transcript: {} }}",
            self.sink.is_some(),
            self.transcript
        )
    }
}

impl Logger {
    pub fn new(sink: LogSink, transcript: bool) -> Self {
        Logger {
            sink: Some(sink),
            transcript,
        }
    }

    pub fn log(&self, level: Level, message: impl FnOnce() -> String) {
        if let Some(sink) = &self.sink {
            sink(level, &message());
        }
    }

    pub fn info(&self, message: impl FnOnce() -> String) {
        self.log(Level::Info, message);
    }

    pub fn warn(&self, message: impl FnOnce() -> String) {
        self.log(Level::Warn, message);
    }

    /// One line of the SMTP transcript; `line` must already be redacted.
    pub fn transcript(&self, line: impl FnOnce() -> String) {
        if self.transcript {
            self.log(Level::Debug, line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn a_full_queue_drops_and_counts_and_the_count_goes_out_first() {
        let queue = Arc::new(Mutex::new(Vec::<String>::new()));
        let into = Arc::clone(&queue);
        let sink = dropping_when_full(move |_, line| {
            let mut queue = into.lock().unwrap();
            if queue.len() >= 2 {
                return false;
            }
            queue.push(line);
            true
        });
        for n in 0..5 {
            sink(Level::Debug, &format!("line {n}"));
        }
        assert_eq!(*queue.lock().unwrap(), ["line 0", "line 1"]);
        queue.lock().unwrap().clear();
        sink(Level::Debug, "line 5");
        assert_eq!(
            *queue.lock().unwrap(),
            ["3 log lines dropped: the logger did not keep up", "line 5"]
        );
    }
}
