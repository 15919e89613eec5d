//! Admission and scheduling: which runs are driven now, which wait for a slot, and which
//! wait for a time.
//!
//! - A run is driven while it holds one of `server.max-concurrent-runs` **slots**.
//! - A start that finds every slot taken takes one of `server.max-pending-runs` **tickets**
//!   and waits in the **queue** — by id, nothing else in memory — until a slot frees. With
//!   no ticket left the start is refused before anything is stored (the API answers 429):
//!   the backlog, and the memory it costs, are bounded.
//! - A run waiting out a backoff holds neither a slot nor a task: its due time is in the
//!   **timers** (an ordered set of due time and id, rebuilt from the store after a restart)
//!   and it joins the queue when the time comes.
//!
//! Runs a restart resumes, runs a timer wakes and runs an operator retries join the queue
//! without a ticket: they were admitted once already.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::model::{Clock, RunId};

/// How many runs are driven at once, and how many may wait for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Runs driven at once (`server.max-concurrent-runs`).
    pub max_concurrent_runs: usize,
    /// Runs accepted and waiting for a slot (`server.max-pending-runs`).
    pub max_pending_runs: usize,
}

/// Room for a run: a slot to be driven in now, or a ticket to wait for one.
#[derive(Debug)]
pub enum Admitted {
    /// A slot: drive the run at once.
    Slot(OwnedSemaphorePermit),
    /// A ticket: store the run as pending and queue it.
    Ticket(OwnedSemaphorePermit),
}

/// Why a run joins the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// A new run that waited for a slot.
    Start,
    /// A run a restart found unfinished.
    Recovered,
    /// A run whose wait is over, or that an operator took up again.
    Due,
}

/// A run waiting for a slot.
#[derive(Debug)]
pub struct Queued {
    /// The run.
    pub id: RunId,
    /// Why it waits.
    pub resume: Resume,
    /// The ticket a new run holds until it gets its slot.
    ticket: Option<OwnedSemaphorePermit>,
}

/// The slots, tickets, queue and timers of one engine.
pub struct Scheduler {
    limits: Limits,
    slots: Arc<Semaphore>,
    tickets: Arc<Semaphore>,
    /// Runs waiting for a slot, first come first served. A std `Mutex`: held to push or
    /// pop, never across an `.await`.
    queue: Mutex<VecDeque<Queued>>,
    queued: Notify,
    /// Runs waiting for a time, earliest first. A std `Mutex`, as the queue's.
    timers: Mutex<BTreeSet<(u64, RunId)>>,
    timers_changed: Notify,
}

impl Scheduler {
    /// A scheduler with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            slots: Arc::new(Semaphore::new(limits.max_concurrent_runs)),
            tickets: Arc::new(Semaphore::new(limits.max_pending_runs)),
            queue: Mutex::default(),
            queued: Notify::new(),
            timers: Mutex::default(),
            timers_changed: Notify::new(),
        }
    }

    /// A slot now, or else a ticket; `None` when both are gone.
    pub fn admit(&self) -> Option<Admitted> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Some(Admitted::Slot(slot));
        }
        self.tickets
            .clone()
            .try_acquire_owned()
            .ok()
            .map(Admitted::Ticket)
    }

    /// As [`Self::admit`], but waits for a ticket when none is left: what a trigger does,
    /// so that its event waits in its queue rather than in memory.
    pub async fn admit_waiting(&self) -> Admitted {
        if let Some(admitted) = self.admit() {
            return admitted;
        }
        let ticket = self
            .tickets
            .clone()
            .acquire_owned()
            .await
            .expect("the tickets are never closed");
        Admitted::Ticket(ticket)
    }

    /// Runs driven now, and runs waiting for a slot.
    pub fn load(&self) -> (usize, usize) {
        (
            self.limits.max_concurrent_runs - self.slots.available_permits(),
            self.queue.lock().expect("queue lock").len(),
        )
    }

    /// Queues `id` to be driven once a slot frees; a new run passes its ticket, which it
    /// holds until then.
    pub fn enqueue(&self, id: RunId, resume: Resume, ticket: Option<OwnedSemaphorePermit>) {
        self.queue
            .lock()
            .expect("queue lock")
            .push_back(Queued { id, resume, ticket });
        self.queued.notify_one();
    }

    /// The next queued run with a slot to drive it in: waits for a run, then for a slot.
    /// The run's ticket is returned once it has its slot.
    pub async fn next(&self) -> (Queued, OwnedSemaphorePermit) {
        let mut queued = loop {
            let notified = self.queued.notified();
            if let Some(queued) = self.queue.lock().expect("queue lock").pop_front() {
                break queued;
            }
            notified.await;
        };
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slots are never closed");
        queued.ticket = None;
        (queued, slot)
    }

    /// Wakes `id` at `due_ms`.
    pub fn schedule(&self, id: RunId, due_ms: u64) {
        let earliest = {
            let mut timers = self.timers.lock().expect("timers lock");
            timers.insert((due_ms, id));
            timers.first().map(|(due, _)| *due) == Some(due_ms)
        };
        if earliest {
            self.timers_changed.notify_one();
        }
    }

    /// Waits until the earliest timer is due by `clock` and returns every run due then.
    pub async fn due(&self, clock: &dyn Clock) -> Vec<RunId> {
        loop {
            let changed = self.timers_changed.notified();
            let now = clock.now_ms();
            let (due, next) = {
                let mut timers = self.timers.lock().expect("timers lock");
                let later = timers.split_off(&(now + 1, RunId::from_stored(String::new())));
                let due: Vec<RunId> = std::mem::replace(&mut *timers, later)
                    .into_iter()
                    .map(|(_, id)| id)
                    .collect();
                (due, timers.first().map(|(at, _)| *at))
            };
            if !due.is_empty() {
                return due;
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(at.saturating_sub(now))) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    struct TestClock(AtomicU64);

    impl Clock for TestClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    fn id(name: &str) -> RunId {
        RunId::parse(name).unwrap()
    }

    #[test]
    fn past_the_slots_and_tickets_nothing_is_admitted() {
        let scheduler = Scheduler::new(Limits {
            max_concurrent_runs: 2,
            max_pending_runs: 1,
        });
        let a = scheduler.admit();
        let b = scheduler.admit();
        let c = scheduler.admit();
        assert!(matches!(a, Some(Admitted::Slot(_))));
        assert!(matches!(b, Some(Admitted::Slot(_))));
        assert!(matches!(c, Some(Admitted::Ticket(_))));
        assert!(scheduler.admit().is_none());
        drop(c);
        assert!(matches!(scheduler.admit(), Some(Admitted::Ticket(_))));
    }

    #[tokio::test]
    async fn a_queued_run_gets_the_next_free_slot_and_gives_its_ticket_back() {
        let scheduler = Arc::new(Scheduler::new(Limits {
            max_concurrent_runs: 1,
            max_pending_runs: 1,
        }));
        let Some(Admitted::Slot(busy)) = scheduler.admit() else {
            panic!()
        };
        let Some(Admitted::Ticket(ticket)) = scheduler.admit() else {
            panic!()
        };
        scheduler.enqueue(id("a"), Resume::Start, Some(ticket));
        assert_eq!(scheduler.load(), (1, 1));
        let next = tokio::spawn({
            let scheduler = scheduler.clone();
            async move { scheduler.next().await }
        });
        tokio::task::yield_now().await;
        assert!(!next.is_finished(), "no slot yet");
        drop(busy);
        let (queued, _slot) = next.await.unwrap();
        assert_eq!(queued.id, id("a"));
        assert!(
            matches!(scheduler.admit(), Some(Admitted::Ticket(_))),
            "the slot is taken, the ticket is back"
        );
    }

    #[tokio::test]
    async fn timers_hand_out_what_is_due_by_the_clock() {
        let scheduler = Scheduler::new(Limits {
            max_concurrent_runs: 1,
            max_pending_runs: 1,
        });
        let clock = TestClock(AtomicU64::new(100));
        scheduler.schedule(id("late"), 300);
        scheduler.schedule(id("early"), 50);
        scheduler.schedule(id("now"), 100);
        let mut due = scheduler.due(&clock).await;
        due.sort();
        assert_eq!(due, [id("early"), id("now")]);
        clock.0.store(300, Ordering::Relaxed);
        assert_eq!(scheduler.due(&clock).await, [id("late")]);
    }
}
