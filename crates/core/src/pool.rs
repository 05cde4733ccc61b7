//! Pooled sending (`pool: true`): at most `maxConnections` connections, each reused for up
//! to `maxMessages` messages, all authenticating through the one token provider; messages
//! queue (never rejected for lack of a connection), are paced by `rateLimit`/`rateDelta`,
//! and transient failures are retried on a fresh connection.
//!
//! Each connection is owned by one worker task that takes messages from the shared queue;
//! workers start when messages wait and no worker is free, and stop (with QUIT) after
//! `idleTimeout` without work. Nothing here touches Node's event loop, so idle connections
//! never keep a process alive.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{oneshot, Notify};

use crate::config::PoolOptions;
use crate::connector::{retry_wait, should_retry, Connector};
use crate::error::{Error, ErrorKind, Result};
use crate::message::OutgoingMessage;
use crate::panic::{contained, panic_error, Panicked};
use crate::smtp::{Delivery, SmtpConnection};

pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    connector: Arc<Connector>,
    options: PoolOptions,
    max_retries: u32,
    state: Mutex<State>,
    /// A job was queued, or the pool is closing.
    work: Notify,
    /// A job finished or a worker stopped: `close()` re-checks.
    progress: Notify,
    /// Send times within the current `rateDelta` window.
    sent_times: tokio::sync::Mutex<VecDeque<Instant>>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    workers: usize,
    /// Workers holding a job.
    busy: usize,
    /// Jobs waiting out a retry backoff.
    delayed: usize,
    closing: bool,
    /// `close({ force: true })`: queued and delayed jobs are rejected.
    forced: bool,
    /// Idle workers asked to stop, so that verify() gets their connection slot.
    retiring: usize,
}

struct Job {
    message: Arc<OutgoingMessage>,
    attempt: u32,
    reply: oneshot::Sender<Result<Delivery>>,
}

impl Pool {
    pub fn new(connector: Arc<Connector>, options: PoolOptions, max_retries: u32) -> Self {
        Pool {
            shared: Arc::new(Shared {
                connector,
                options,
                max_retries,
                state: Mutex::new(State::default()),
                work: Notify::new(),
                progress: Notify::new(),
                sent_times: tokio::sync::Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Queues `message` and resolves when the server accepted it, or it failed for good.
    pub async fn send(&self, message: Arc<OutgoingMessage>) -> Result<Delivery> {
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            message,
            attempt: 1,
            reply,
        };
        if let Err(job) = self.shared.enqueue(job, false) {
            let _ = job.reply.send(Err(closed_error()));
        }
        outcome.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Connection,
                "the pool stopped before the message was sent",
            ))
        })
    }

    /// Runs `work` (verify()) in a connection slot of its own, so that it never opens more
    /// than `maxConnections` connections: it takes a free slot, or asks an idle worker to
    /// stop (QUIT) and takes its slot, or waits for a busy one to finish.
    pub async fn in_slot<T>(&self, work: impl Future<Output = T>) -> T {
        loop {
            let progressed = self.shared.progress.notified();
            {
                let mut state = self.shared.lock();
                if state.workers < self.shared.options.max_connections {
                    state.workers += 1;
                    break;
                }
                let idle = state.workers - state.busy;
                if idle > state.retiring && state.queue.is_empty() {
                    state.retiring += 1;
                    drop(state);
                    self.shared.work.notify_waiters();
                }
            }
            progressed.await;
        }
        let outcome = work.await;
        let mut state = self.shared.lock();
        state.workers -= 1;
        // A message queued while the slot was taken still gets a worker.
        if !state.queue.is_empty() {
            state.workers += 1;
            tokio::spawn(worker(Arc::clone(&self.shared)));
        }
        drop(state);
        self.shared.progress.notify_waiters();
        outcome
    }

    pub fn max_connections(&self) -> usize {
        self.shared.options.max_connections
    }

    /// Stops taking messages and waits until every queued one was sent (or, with `force`,
    /// rejects the queued ones at once); then the connections QUIT.
    pub async fn close(&self, force: bool) {
        {
            let mut state = self.shared.lock();
            state.closing = true;
            if force {
                state.forced = true;
                for job in state.queue.drain(..) {
                    let _ = job.reply.send(Err(forced_close_error()));
                }
            }
        }
        self.shared.work.notify_waiters();
        loop {
            let progressed = self.shared.progress.notified();
            {
                let state = self.shared.lock();
                if state.workers == 0 && state.queue.is_empty() && state.delayed == 0 {
                    return;
                }
            }
            // Wake idle workers so they see `closing` once the queue is empty.
            self.shared.work.notify_waiters();
            progressed.await;
        }
    }
}

fn closed_error() -> Error {
    Error::new(
        ErrorKind::Connection,
        "the transport is closed: the message was not sent",
    )
}

fn forced_close_error() -> Error {
    Error::new(
        ErrorKind::Connection,
        "the transport was closed with { force: true } before the message was sent",
    )
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a job and starts a worker if every existing one is busy. A retry (`requeue`)
    /// is accepted while closing gracefully, so that close() loses nothing.
    fn enqueue(self: &Arc<Self>, job: Job, requeue: bool) -> std::result::Result<(), Job> {
        let mut state = self.lock();
        if state.forced || (state.closing && !requeue) {
            return Err(job);
        }
        state.queue.push_back(job);
        let free_workers = state.workers - state.busy;
        if free_workers < state.queue.len() && state.workers < self.options.max_connections {
            state.workers += 1;
            tokio::spawn(worker(Arc::clone(self)));
        }
        drop(state);
        self.work.notify_one();
        Ok(())
    }

    /// The next job, or `None` when this worker should stop (idle too long, or closing).
    async fn next_job(&self) -> Option<Job> {
        loop {
            let woken = self.work.notified();
            {
                let mut state = self.lock();
                if let Some(job) = state.queue.pop_front() {
                    state.busy += 1;
                    return Some(job);
                }
                if state.closing {
                    return None;
                }
                if state.retiring > 0 {
                    state.retiring -= 1;
                    return None;
                }
            }
            if tokio::time::timeout(self.options.idle_timeout, woken)
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// Waits for a slot in the `rateLimit` window.
    async fn pace(&self) {
        let Some((limit, window)) = self.options.rate_limit else {
            return;
        };
        loop {
            let mut sent = self.sent_times.lock().await;
            let now = Instant::now();
            while sent.front().is_some_and(|&at| now.duration_since(at) >= window) {
                sent.pop_front();
            }
            if sent.len() < limit {
                sent.push_back(now);
                return;
            }
            let wait = window - now.duration_since(*sent.front().expect("the window is full"));
            drop(sent);
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends one message over `connection`, opening it first if there is none; with Graph,
    /// one request (the worker is then a request slot, and `connection` stays empty).
    async fn deliver(
        &self,
        connection: &mut Option<SmtpConnection>,
        message: &OutgoingMessage,
    ) -> Result<Delivery> {
        if let Some(graph) = &self.connector.graph {
            self.pace().await;
            return graph.send(message).await;
        }
        let current = match connection {
            Some(current) => current,
            None => connection.insert(self.connector.open_connection().await?),
        };
        self.pace().await;
        current.send(message).await
    }

    /// Settles a job: delivered, retried later, or failed for good.
    fn finish(self: &Arc<Self>, job: Job, outcome: Result<Delivery>) {
        let mut state = self.lock();
        state.busy -= 1;
        match outcome {
            Err(err) if should_retry(&err, job.attempt, self.max_retries) && !state.forced => {
                state.delayed += 1;
                drop(state);
                let shared = Arc::clone(self);
                let wait = retry_wait(&err, job.attempt);
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    shared.lock().delayed -= 1;
                    let retry = Job {
                        attempt: job.attempt + 1,
                        ..job
                    };
                    if let Err(job) = shared.enqueue(retry, true) {
                        let _ = job.reply.send(Err(forced_close_error()));
                    }
                    shared.progress.notify_waiters();
                });
            }
            outcome => {
                drop(state);
                let _ = job
                    .reply
                    .send(outcome.map_err(|err| err.with_attempts(job.attempt)));
            }
        }
        self.progress.notify_waiters();
    }
}

/// One connection's life: take jobs until idle or closing. Boxed so that the worker can
/// start its own replacement (a recursive `async fn` has no nameable `Send` type).
fn worker(shared: Arc<Shared>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(run_worker(shared))
}

async fn run_worker(shared: Arc<Shared>) {
    let mut connection: Option<SmtpConnection> = None;
    while let Some(job) = shared.next_job().await {
        // A connection that received something while idle (a 421, a close) is replaced:
        // what waits in it would be read as the reply to the next command.
        if let Some(mut idle) = connection.take() {
            if idle.is_reusable() {
                connection = Some(idle);
            } else {
                let _ = contained(idle.quit()).await;
            }
        }
        // A panic (a bug) fails this job alone: the worker drops the connection, whose
        // state is unknown, gives the job its error and takes the next one on a fresh
        // connection, so the slot is never lost and close() never waits for it.
        let outcome = match contained(shared.deliver(&mut connection, &job.message)).await {
            Ok(outcome) => outcome,
            Err(Panicked) => {
                let may_have_left = connection.take().is_some_and(|c| c.message_may_have_left());
                Err(panic_error(may_have_left))
            }
        };
        // Only connections that are usable and under maxMessages are kept. A transient
        // failure is retried on a fresh connection: the server may be telling this one to
        // go away (421, 432 thread limit).
        let failed_transiently = outcome.as_ref().is_err_and(|err| err.is_transient());
        if let Some(current) = connection.take() {
            if current.is_usable()
                && !failed_transiently
                && current.messages_sent() < shared.options.max_messages
            {
                connection = Some(current);
            } else {
                let _ = contained(current.quit()).await;
            }
        }
        shared.finish(job, outcome);
    }
    if let Some(idle) = connection {
        let _ = contained(idle.quit()).await;
    }
    let mut state = shared.lock();
    state.workers -= 1;
    // A job queued while this worker was deciding to stop still gets a worker.
    if !state.queue.is_empty() && state.workers < shared.options.max_connections {
        state.workers += 1;
        tokio::spawn(worker(Arc::clone(&shared)));
    }
    drop(state);
    shared.progress.notify_waiters();
}
