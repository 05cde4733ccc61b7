//! Where the core's log lines go: a sink the caller provides (the N-API layer forwards them
//! to the user's `logger`). Nothing secret is ever passed to it: the SMTP transcript shows
//! `AUTH XOAUTH2 <redacted>`, token events show only expiry times.

use std::fmt;
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
