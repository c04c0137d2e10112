//! When a worker asks the queue for jobs: on every announcement (new jobs,
//! a freed slot) and on a fallback tick.
//!
//! apalis' own combination of wake-up sources stops at the first one that
//! is ready and does not re-arm its interval timer, so after a burst of work
//! a worker could miss every wake-up until the queue's next heartbeat (about
//! half a second on average). This strategy polls every source each time,
//! so each keeps its waker registered, and re-arms the tick at once.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::{PollSnapshot, PollStrategy};
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

/// Wake-ups from `events` and from a tick every `interval`.
pub struct Wakeups<S> {
    events: Option<S>,
    interval: Duration,
    tick: Pin<Box<Sleep>>,
}

impl<S> Wakeups<S> {
    /// Wakes on each item of `events` and at least every `interval`.
    pub fn new(events: S, interval: Duration) -> Self {
        Wakeups {
            events: Some(events),
            interval,
            tick: Box::pin(tokio::time::sleep(interval)),
        }
    }
}

impl<S: Stream + Unpin> PollStrategy for Wakeups<S> {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut fired = false;

        // Take every event that is ready: the last poll leaves the waker
        // registered for the next one.
        if let Some(events) = self.events.as_mut() {
            loop {
                match events.poll_next_unpin(cx) {
                    Poll::Ready(Some(_)) => fired = true,
                    Poll::Ready(None) => {
                        // A closed source never wakes again; the tick remains.
                        self.events = None;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }

        // Re-arm the tick and poll it again, so it always has a waker.
        while self.tick.as_mut().poll(cx).is_ready() {
            fired = true;
            let next = Instant::now() + self.interval;
            self.tick.as_mut().reset(next);
        }

        if fired {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}
