//! Panics stay inside the send they happened in: a bug in one job becomes that job's
//! `EINTERNAL` error (or `EUNKNOWN_DELIVERY` if the message had already left), and the
//! pool, the transport and the Node process go on.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use crate::error::{Error, ErrorKind};

/// A panic was caught; its payload is not kept (the default hook already printed it, and
/// a payload could quote anything, a secret included).
#[derive(Debug)]
pub struct Panicked;

/// Runs `work`, turning a panic inside it into `Err(Panicked)`. The future's borrows end
/// when this returns, so the caller can look at what it was working on (e.g. whether a
/// connection had sent the final `.`).
///
/// `AssertUnwindSafe`: after a panic, callers drop the state the future was changing (the
/// connection) or only read a flag that is set after each completed write.
pub async fn contained<T>(work: impl Future<Output = T>) -> Result<T, Panicked> {
    AssertUnwindSafe(work).catch_unwind().await.map_err(|_| Panicked)
}

/// The error of a send that panicked. `message_may_have_left`: the final `.` had been
/// written, so the server may have the message: `EUNKNOWN_DELIVERY`, as for a connection
/// lost at that moment, and never resent.
pub fn panic_error(message_may_have_left: bool) -> Error {
    if message_may_have_left {
        Error::new(
            ErrorKind::UnknownDelivery,
            "internal error after the message was sent (a panic, please report this bug): it may or may not have been delivered, and it was not resent",
        )
    } else {
        Error::new(
            ErrorKind::Internal,
            "internal error: the send panicked before the message was sent (please report this bug)",
        )
    }
}
