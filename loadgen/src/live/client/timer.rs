//! A high-resolution timer for send slots: one dedicated OS thread per run.
//!
//! Why not `tokio::time`: tokio's timer wheel has 1 ms granularity and rounds deadlines *up*,
//! so a send "on time" leaves 0-2 ms after its slot (measured on this machine: p50 1.1 ms, p99
//! 1.9 ms late). On loopback a WebSocket round trip is ~0.1 ms, so that lateness would be ten
//! times the signal, booked to the target.
//!
//! Why a thread and not a spin in each task: a sender that yields in a loop until its slot
//! keeps a runtime worker busy for the whole margin; with thousands of senders a margin of
//! 1-2 ms would keep both cores spinning. One thread serves every sender of the run instead:
//! it keeps the pending deadlines in a heap, sleeps in the kernel (`futex` with a timeout, timer
//! slack lowered to 1 ns so the kernel does not defer the wake-up by its default 50 µs) until
//! [`SPIN`] before the earliest one, spins the rest, and wakes the tasks whose slot is
//! [`EARLY`] away; each then yields on its worker until its slot. A [`Sleep`] never completes
//! before its deadline: a send never leaves early.
//!
//! Cost (measured, `results/README.md`, "Send timing"): the thread spins at most [`SPIN`] per
//! distinct deadline, so it uses at most `rate x SPIN` of one core, less when deadlines fall
//! within one spin window, and sleeps when nothing is due; the early wake adds at most
//! [`EARLY`] of worker time per send. With 200 WebSockets at 10 messages/s each (2,000
//! slots/s) loadgen's CPU went from 28-30% to 31% of one core, and send_lag from p50 40 µs /
//! p90 80 µs / p99 150 µs (tokio's timer: 1.1 / 1.9 ms) to 5 / 25 / 110 µs.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};
use tokio::time::Instant;

use futures_util::task::AtomicWaker;

/// How long before a deadline the timer thread stops sleeping and spins: covers the kernel's
/// wake-up latency for a sleeping thread (tens of µs on a VM).
pub(crate) const SPIN: std::time::Duration = std::time::Duration::from_micros(80);

/// How long before its deadline a task is woken: a cross-thread wake of a tokio worker takes
/// 30-90 µs here (send_lag p50 40 µs, p90 80 µs when woken at the deadline). Woken early, the
/// task yields cooperatively (re-queues itself behind the worker's other tasks) until the
/// deadline, so it is already running when the slot comes: p50 under 10 µs, p90 20-30 µs.
/// That yielding costs up to EARLY of worker time per send (measured: +3% of one core at
/// 2,000 sends/s); a worker with other work to do does that work meanwhile.
pub(crate) const EARLY: std::time::Duration = std::time::Duration::from_micros(40);

/// One pending deadline.
#[derive(Default)]
struct Entry {
    fired: AtomicBool,
    waker: AtomicWaker,
}

/// A heap element: earliest deadline first.
struct Pending {
    at: Instant,
    entry: Arc<Entry>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.at.cmp(&other.at)
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Pending>>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Set when a deadline earlier than every pending one was added: a spinning thread
    /// re-reads the heap.
    earlier: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Handle to the timer thread; the thread stops when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct PreciseTimer {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PreciseTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreciseTimer").finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl PreciseTimer {
    /// Starts the timer thread.
    ///
    /// # Errors
    /// The OS refused to start a thread.
    pub(crate) fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            earlier: AtomicBool::new(false),
        });
        let worker = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("loadgen-timer".to_owned())
            .spawn(move || run(&worker))?;
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                thread: Some(thread),
            }),
        })
    }

    /// A future that completes at `at` (at once if `at` has passed); see [`Sleep::reset`].
    pub(crate) fn sleep_until(&self, at: Instant) -> Sleep {
        Sleep {
            timer: self.clone(),
            at,
            entry: None,
        }
    }

    fn register(&self, at: Instant, entry: Arc<Entry>) {
        let inner = &self.inner;
        let earliest = {
            let mut state = inner.shared.lock();
            let earliest = state.heap.peek().is_none_or(|Reverse(p)| at < p.at);
            state.heap.push(Reverse(Pending { at, entry }));
            earliest
        };
        if earliest {
            inner.shared.earlier.store(true, Ordering::Release);
            if let Some(t) = &inner.thread {
                t.thread().unpark();
            }
        }
    }
}

/// Completes at its deadline. Register once, poll often: re-polling before the deadline
/// only updates the waker. Dropping it cancels nothing costly (the entry fires into the void).
#[derive(Debug)]
pub(crate) struct Sleep {
    timer: PreciseTimer,
    at: Instant,
    entry: Option<Arc<Entry>>,
}

impl Sleep {
    /// Moves the deadline (after it fired, or to replace it).
    pub(crate) fn reset(&mut self, at: Instant) {
        self.at = at;
        self.entry = None;
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("fired", &self.fired)
            .finish_non_exhaustive()
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(entry) = &this.entry {
            entry.waker.register(cx.waker());
            return if entry.fired.load(Ordering::Acquire) {
                if Instant::now() >= this.at {
                    Poll::Ready(())
                } else {
                    // Woken up to EARLY ahead: yield to the worker's other tasks and come back.
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            } else {
                Poll::Pending
            };
        }
        if Instant::now() >= this.at {
            return Poll::Ready(());
        }
        let entry = Arc::new(Entry::default());
        entry.waker.register(cx.waker());
        this.timer.register(this.at, Arc::clone(&entry));
        this.entry = Some(entry);
        Poll::Pending
    }
}

/// The timer thread: sleep, spin the last [`SPIN`], fire what is due.
fn run(shared: &Shared) {
    lower_timer_slack();
    let mut due = Vec::new();
    loop {
        let next = {
            let mut state = shared.lock();
            if state.shutdown {
                return;
            }
            // Entries due within EARLY are handed over now (see [`EARLY`]).
            let now = Instant::now() + EARLY;
            while state.heap.peek().is_some_and(|Reverse(p)| p.at <= now) {
                if let Some(Reverse(p)) = state.heap.pop() {
                    due.push(p.entry);
                }
            }
            shared.earlier.store(false, Ordering::Release);
            state.heap.peek().map(|Reverse(p)| p.at)
        };
        for entry in due.drain(..) {
            entry.fired.store(true, Ordering::Release);
            entry.waker.wake();
        }
        let Some(at) = next else {
            thread::park();
            continue;
        };
        let at = at.checked_sub(EARLY).unwrap_or(at);
        let now = Instant::now();
        if let Some(sleep) = at
            .checked_duration_since(now)
            .and_then(|d| d.checked_sub(SPIN))
        {
            thread::park_timeout(sleep);
            continue;
        }
        while Instant::now() < at && !shared.earlier.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
    }
}

/// Asks the kernel not to defer this thread's timed wake-ups (default slack: 50 µs). (Raising
/// its priority was measured too: no change to the send_lag tail, which comes from the I/O
/// workers being descheduled on a shared 2-core machine, not from this thread.)
fn lower_timer_slack() {
    #[cfg(target_os = "linux")]
    {
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sleeps_never_complete_before_their_deadline_and_all_complete() {
        let timer = PreciseTimer::start().expect("thread");
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200u64 {
            let timer = timer.clone();
            // Deadlines out of order, some equal, some already past.
            let at = start + Duration::from_micros((i * 7919) % 20_000);
            tasks.spawn(async move {
                timer.sleep_until(at).await;
                Instant::now() >= at
            });
        }
        let mut done = 0;
        while let Some(on_time) = tasks.join_next().await {
            assert!(on_time.expect("joined"), "a sleep completed early");
            done += 1;
        }
        assert_eq!(done, 200);
    }

    #[tokio::test]
    async fn a_reset_sleep_fires_again_and_an_earlier_deadline_is_not_held_up() {
        let timer = PreciseTimer::start().expect("thread");
        let mut sleep = timer.sleep_until(Instant::now() + Duration::from_millis(2));
        (&mut sleep).await;
        let later = Instant::now() + Duration::from_millis(3);
        sleep.reset(later);
        // A far deadline is pending; a nearer one added afterwards must still fire first.
        let far = timer.sleep_until(Instant::now() + Duration::from_secs(3600));
        let far_task = tokio::spawn(far);
        (&mut sleep).await;
        assert!(Instant::now() >= later);
        assert!(!far_task.is_finished(), "the far sleep is still pending");
        far_task.abort();
    }
}
