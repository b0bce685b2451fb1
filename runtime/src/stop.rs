//! How a run ends: a graceful stop bounded by a deadline, a stop at once, or a stop because a part of
//! the app failed for good.
//!
//! A graceful stop finishes the data already received. It may not wait without bound, so the moment it
//! begins a deadline is armed (`--graceful-stop-timeout`); when the deadline passes, or a second signal
//! arrives, the run is *aborted*: nothing new is started, retries give up, and waits wake. What was
//! not finished stays in the checkpoint directory's journal (and write-ahead log), so a restart
//! resumes it as it resumes after a crash.
//!
//! A leaf module: sources, sinks and the engine all watch the same [`StopSignal`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Why a run was aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// The graceful stop did not finish within its timeout.
    GracefulStopTimedOut(Duration),
    /// A stop at once was asked for (a second signal, or [`crate::RunningApp::stop_now`]).
    Immediate,
}

#[derive(Debug, Default)]
struct State {
    /// A graceful stop has begun (and its deadline is armed).
    stopping: bool,
    aborted: Option<AbortReason>,
    /// Why a part of the app asked for the stop (a receiver that cannot store what it receives).
    failure: Option<String>,
    /// The run is over: watchdogs may go.
    finished: bool,
}

#[derive(Debug)]
struct Inner {
    aborted: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
    /// The abort, for async waits (a sink's write in flight).
    aborted_async: tokio::sync::watch::Sender<bool>,
}

/// The stop state of one run, shared by every part of it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StopSignal(Arc<Inner>);

impl Default for StopSignal {
    fn default() -> Self {
        Self(Arc::new(Inner {
            aborted: AtomicBool::new(false),
            state: Mutex::default(),
            changed: Condvar::new(),
            aborted_async: tokio::sync::watch::channel(false).0,
        }))
    }
}

impl StopSignal {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the run was aborted: start nothing new, stop retrying. One relaxed load.
    pub fn is_aborted(&self) -> bool {
        self.0.aborted.load(Ordering::Relaxed)
    }

    /// Why the run was aborted, if it was.
    pub fn abort_reason(&self) -> Option<AbortReason> {
        self.state().aborted
    }

    /// Aborts the run (the first reason given is the one reported).
    pub fn abort(&self, reason: AbortReason) {
        let mut state = self.state();
        state.aborted.get_or_insert(reason);
        self.0.aborted.store(true, Ordering::Relaxed);
        self.0.aborted_async.send_replace(true);
        self.0.changed.notify_all();
    }

    /// Resolves once the run is aborted (at once if it already is): races a write in flight, so an
    /// abort does not wait for a destination's own timeouts.
    pub async fn aborted(&self) {
        let mut aborted = self.0.aborted_async.subscribe();
        let _ = aborted.wait_for(|aborted| *aborted).await;
    }

    /// Runs `work` on `runtime` unless the run is aborted first: then `None`, and `work` is dropped
    /// (a transaction in flight rolls back; one whose commit was sent is recognised by the sink's
    /// progress record when the batch is replayed).
    pub fn block_on_unless_aborted<T>(
        &self,
        runtime: &tokio::runtime::Runtime,
        work: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        runtime.block_on(async {
            tokio::select! {
                done = work => Some(done),
                _ = self.aborted() => None,
            }
        })
    }

    /// Whether a graceful stop has begun.
    pub fn is_stopping(&self) -> bool {
        self.state().stopping
    }

    /// A graceful stop begins now and may take `timeout`; past it the run is aborted. Only the first
    /// call arms the deadline: `--run-for`, `--batches` and a signal are the same stop.
    pub fn begin_graceful_stop(&self, timeout: Duration) {
        {
            let mut state = self.state();
            if state.stopping || state.finished {
                return;
            }
            state.stopping = true;
        }
        let signal = self.clone();
        let spawned = std::thread::Builder::new()
            .name("streamc-stop-deadline".into())
            .spawn(move || {
                if signal.sleep(timeout) {
                    signal.abort(AbortReason::GracefulStopTimedOut(timeout));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the graceful stop's timer ({e}); the stop is unbounded");
        }
    }

    /// Records why the app must stop (the first failure is kept).
    pub fn fail(&self, message: String) {
        self.state().failure.get_or_insert(message);
    }

    /// The failure that asked for the stop, if one did.
    pub fn failure(&self) -> Option<String> {
        self.state().failure.clone()
    }

    /// The run is over: wakes every wait.
    pub fn finish(&self) {
        self.state().finished = true;
        self.0.changed.notify_all();
    }

    /// Sleeps for `duration` unless the run is aborted or over first. True if it slept the whole time.
    pub fn sleep(&self, duration: Duration) -> bool {
        !self.wait_until(duration, |state| state.aborted.is_some() || state.finished)
    }

    /// Waits until the run is aborted or over, at most `timeout`. True if it was aborted.
    pub fn wait_for_abort(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |state| state.aborted.is_some() || state.finished)
            && self.is_aborted()
    }

    /// Waits until the run is over, at most `timeout`. True if it is.
    pub fn wait_for_finish(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |state| state.finished)
    }

    /// Waits until `done` holds, at most `timeout` (`Duration::MAX`: without bound). True if it holds.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let until = Instant::now().checked_add(timeout);
        let mut state = self.state();
        loop {
            if done(&state) {
                return true;
            }
            let wait = match until {
                Some(until) => match until.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return false,
                },
                None => Duration::from_secs(3600),
            };
            state = self
                .0
                .changed
                .wait_timeout(state, wait)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// Asks a running app to stop: gracefully, at once, or because a part of it failed. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StopHandle {
    requests: std::sync::mpsc::Sender<()>,
    signal: StopSignal,
}

impl StopHandle {
    /// A handle, and where the batch generator hears its requests.
    pub(crate) fn new() -> (Self, std::sync::mpsc::Receiver<()>) {
        let (requests, heard) = std::sync::mpsc::channel();
        let handle = Self {
            requests,
            signal: StopSignal::default(),
        };
        (handle, heard)
    }

    /// Requests a graceful stop; returns at once. Receivers stop, the data already received is
    /// processed, written and checkpointed, within `--graceful-stop-timeout`.
    pub fn stop(&self) {
        let _ = self.requests.send(());
    }

    /// Stops at once, without finishing the batches still queued (Spark's `stop(stopGracefully =
    /// false)`): the batch running now is the last; a sink still retrying gives up. What was not
    /// finished is replayed by a restart from the checkpoint directory (under `--wal`, or from a
    /// replayable source).
    pub fn stop_now(&self) {
        self.signal.abort(AbortReason::Immediate);
        self.stop();
    }

    /// A part of the app cannot go on: stops gracefully and makes the run end with `message`.
    pub(crate) fn fail(&self, message: String) {
        tracing::error!("{message}; the app stops");
        self.signal.fail(message);
        self.stop();
    }

    /// The run's stop state.
    pub(crate) fn signal(&self) -> &StopSignal {
        &self.signal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_aborts_once_and_keeps_the_first_reason() {
        let signal = StopSignal::default();
        assert!(!signal.is_stopping());
        signal.begin_graceful_stop(Duration::from_millis(50));
        // A second stop request does not move the deadline.
        signal.begin_graceful_stop(Duration::from_secs(3600));
        assert!(signal.is_stopping());
        assert!(signal.wait_for_abort(Duration::from_secs(5)));
        assert_eq!(
            signal.abort_reason(),
            Some(AbortReason::GracefulStopTimedOut(Duration::from_millis(50)))
        );
        signal.abort(AbortReason::Immediate);
        assert_eq!(
            signal.abort_reason(),
            Some(AbortReason::GracefulStopTimedOut(Duration::from_millis(50)))
        );
    }

    #[test]
    fn an_abort_wakes_a_sleeper_and_a_finished_run_arms_nothing() {
        let signal = StopSignal::default();
        let sleeper = signal.clone();
        let woke = std::thread::spawn(move || {
            let started = Instant::now();
            let slept = sleeper.sleep(Duration::from_secs(30));
            (slept, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(20));
        signal.abort(AbortReason::Immediate);
        let (slept, took) = woke.join().unwrap();
        assert!(!slept);
        assert!(took < Duration::from_secs(5), "woke after {took:?}");

        let over = StopSignal::default();
        over.finish();
        over.begin_graceful_stop(Duration::ZERO);
        assert!(!over.is_stopping());
        assert!(!over.wait_for_abort(Duration::from_millis(50)));
        assert!(!over.is_aborted());
    }
}
