//! The timer behind hyper's HTTP/1 header-read timeout (the slow-loris guard), recycling its
//! timer entries.
//!
//! hyper arms the header-read timeout for every request head it waits for, and drops it as soon
//! as the head is in. With hyper-util's `TokioTimer` that is a new tokio timer per request:
//! filed in the runtime's timer wheel when first polled and taken out when dropped, which cost
//! a tenth of a `hello` worker's own work per request. Here a dropped timer goes back to a
//! small pool, still filed; the next request head takes one and moves its deadline later,
//! which tokio does with one atomic update (an entry whose deadline moved on is re-filed only
//! once its old deadline comes round).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::time::Sleep;

/// How many idle timer entries the pool keeps: about one per connection waiting for a request
/// head at the same moment. Beyond that, dropped timers are freed.
const POOL_MAX: usize = 1024;

type Pool = Arc<Mutex<Vec<Pin<Box<Sleep>>>>>;

/// A `hyper::rt::Timer` for one server's connections; every timer it hands out returns to its
/// pool when dropped. Timers must be polled on the runtime the pool was filled on (one
/// server's connections all run on its runtime).
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadTimer {
    pool: Pool,
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(hyper::rt::Timer::now(self) + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let deadline = tokio::time::Instant::from_std(deadline);
        let pooled = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let sleep = match pooled {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Box::pin(Recycled {
            sleep: Some(sleep),
            pool: self.pool.clone(),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Recycled>() {
            Some(mut recycled) => {
                if let Some(inner) = recycled.sleep.as_mut() {
                    inner
                        .as_mut()
                        .reset(tokio::time::Instant::from_std(new_deadline));
                }
            }
            None => *sleep = self.sleep_until(new_deadline),
        }
    }

    fn now(&self) -> Instant {
        // tokio's clock, so that a paused test clock governs these timers too.
        tokio::time::Instant::now().into_std()
    }
}

/// A timer from the pool, returned to it when dropped.
struct Recycled {
    /// Always `Some` until dropped.
    sleep: Option<Pin<Box<Sleep>>>,
    pool: Pool,
}

impl std::future::Future for Recycled {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl hyper::rt::Sleep for Recycled {}

impl Drop for Recycled {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            if pool.len() < POOL_MAX {
                pool.push(sleep);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer as _;

    #[tokio::test(start_paused = true)]
    async fn a_recycled_timer_fires_at_its_new_deadline_not_its_old_one() {
        let timer = HeadTimer::default();
        let start = tokio::time::Instant::now();
        let first = timer.sleep(Duration::from_secs(5));
        drop(first);
        assert_eq!(
            timer.pool.lock().unwrap().len(),
            1,
            "a dropped timer is pooled"
        );
        // Three seconds later a new head arms the pooled entry for 30 s more.
        tokio::time::advance(Duration::from_secs(3)).await;
        let second = timer.sleep(Duration::from_secs(30));
        assert!(
            timer.pool.lock().unwrap().is_empty(),
            "the pooled entry was taken"
        );
        second.await;
        assert_eq!(start.elapsed(), Duration::from_secs(33));
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_a_running_timer() {
        let timer = HeadTimer::default();
        let start = tokio::time::Instant::now();
        let mut sleep = timer.sleep(Duration::from_secs(30));
        timer.reset(&mut sleep, timer.now() + Duration::from_secs(2));
        sleep.await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_that_expired_in_the_pool_can_be_armed_again() {
        let timer = HeadTimer::default();
        drop(timer.sleep(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(10)).await;
        let start = tokio::time::Instant::now();
        timer.sleep(Duration::from_secs(4)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(4));
    }

    #[test]
    fn the_pool_is_bounded() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let timer = HeadTimer::default();
            let many: Vec<_> = (0..POOL_MAX + 10)
                .map(|_| timer.sleep(Duration::from_secs(30)))
                .collect();
            drop(many);
            assert_eq!(timer.pool.lock().unwrap().len(), POOL_MAX);
        });
    }
}
