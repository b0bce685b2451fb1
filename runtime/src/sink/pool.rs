//! The resource pool behind `foreach_partition`: connections made on the workers, when first needed,
//! reused by later partitions and batches, closed when idle.
//!
//! This is the seed's advice made the only way: the factory runs on the worker that writes (never on the
//! driver, so nothing unserializable is shipped), one resource serves a whole partition (never one per
//! record), and it goes back to the pool afterwards. A resource whose write failed is dropped, not
//! reused: a failed connection is often a broken one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

type Factory<R> = Box<dyn Fn() -> Result<R, String> + Send + Sync>;

/// Resources (connections, clients) for `foreach_partition`: created by a factory on the worker
/// that needs one, lent for a whole partition, reused by later partitions and batches, and closed
/// once idle past a timeout.
pub struct ResourcePool<R> {
    factory: Factory<R>,
    idle: Mutex<Vec<(R, Instant)>>,
    idle_timeout: Duration,
    created: AtomicU64,
    closed: AtomicU64,
}

impl<R: Send> ResourcePool<R> {
    /// A pool that creates resources with `factory` when none is idle, and closes those idle longer than
    /// `idle_timeout`. Nothing is created until the first checkout.
    pub fn new(
        idle_timeout: Duration,
        factory: impl Fn() -> Result<R, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            factory: Box::new(factory),
            idle: Mutex::new(Vec::new()),
            idle_timeout,
            created: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }
    }

    /// Runs `f` with a resource: the most recently used idle one, or a new one. On success the resource
    /// goes back to the pool; on failure it is dropped.
    pub fn with<T, E>(&self, f: impl FnOnce(&mut R) -> Result<T, E>) -> Result<T, PoolError<E>> {
        let mut resource = match self.take_idle() {
            Some(r) => r,
            None => {
                let r = (self.factory)().map_err(PoolError::Create)?;
                self.created.fetch_add(1, Ordering::Relaxed);
                r
            }
        };
        match f(&mut resource) {
            Ok(value) => {
                self.give_back(resource);
                Ok(value)
            }
            Err(e) => {
                self.closed.fetch_add(1, Ordering::Relaxed);
                Err(PoolError::Use(e))
            }
        }
    }

    /// Resources created so far.
    pub fn created(&self) -> u64 {
        self.created.load(Ordering::Relaxed)
    }

    /// Resources closed so far (idle too long, or failed).
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::Relaxed)
    }

    /// Resources idle in the pool now.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Closes resources idle past the timeout now. Called every batch, so that connections go even
    /// while batches have nothing for them to write.
    pub fn close_idle(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        self.evict(&mut idle);
    }

    fn take_idle(&self) -> Option<R> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        self.evict(&mut idle);
        idle.pop().map(|(r, _)| r)
    }

    fn give_back(&self, resource: R) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        self.evict(&mut idle);
        idle.push((resource, Instant::now()));
    }

    /// Closes (drops) resources idle longer than the timeout. Idle resources are kept oldest first.
    fn evict(&self, idle: &mut Vec<(R, Instant)>) {
        let fresh = idle
            .iter()
            .position(|(_, since)| since.elapsed() < self.idle_timeout)
            .unwrap_or(idle.len());
        if fresh > 0 {
            idle.drain(..fresh);
            self.closed.fetch_add(fresh as u64, Ordering::Relaxed);
        }
    }
}

impl<R: Send + 'static> super::OpenSink for ResourcePool<R> {}

/// `foreach_partition` failed: the resource could not be created, or the user's function failed.
#[derive(Debug)]
pub enum PoolError<E> {
    /// The factory could not create a resource; the message is the factory's.
    Create(String),
    /// The user's function failed with this error; the resource it used was dropped, not returned
    /// to the pool.
    Use(E),
}

impl<E: std::fmt::Display> std::fmt::Display for PoolError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolError::Create(e) => write!(f, "cannot create the partition's resource: {e}"),
            PoolError::Use(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_idle_resources_and_drops_failed_ones() {
        let pool = ResourcePool::new(Duration::from_secs(60), || Ok(Vec::<u32>::new()));
        assert_eq!(pool.created(), 0, "lazy: nothing before the first use");
        for i in 0..5 {
            pool.with(|v| -> Result<(), ()> {
                v.push(i);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(pool.created(), 1);
        let seen = pool.with(|v| -> Result<usize, ()> { Ok(v.len()) }).unwrap();
        assert_eq!(seen, 5, "the same resource served every use");
        assert!(matches!(
            pool.with(|_| -> Result<(), &str> { Err("broken") }),
            Err(PoolError::Use("broken"))
        ));
        assert_eq!(pool.idle(), 0, "a resource that failed is not reused");
        pool.with(|v| -> Result<(), ()> {
            assert!(v.is_empty(), "a fresh resource after a failure");
            Ok(())
        })
        .unwrap();
        assert_eq!(pool.created(), 2);
    }

    #[test]
    fn closes_resources_idle_past_the_timeout() {
        let pool = ResourcePool::new(Duration::from_millis(20), || Ok(()));
        pool.with(|_| -> Result<(), ()> { Ok(()) }).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        pool.with(|_| -> Result<(), ()> { Ok(()) }).unwrap();
        assert_eq!(pool.created(), 2);
        assert_eq!(pool.closed(), 1);
    }

    #[test]
    fn idle_resources_close_without_another_checkout() {
        // Long enough that a thread descheduled between the two calls does not reach it.
        let pool = ResourcePool::new(Duration::from_millis(500), || Ok(()));
        pool.with(|_| -> Result<(), ()> { Ok(()) }).unwrap();
        pool.close_idle();
        assert_eq!(pool.idle(), 1, "not idle long enough yet");
        std::thread::sleep(Duration::from_millis(600));
        pool.close_idle();
        assert_eq!((pool.idle(), pool.closed()), (0, 1));
    }

    #[test]
    fn a_factory_error_is_reported() {
        let pool: ResourcePool<()> =
            ResourcePool::new(Duration::from_secs(1), || Err("refused".into()));
        let err = pool.with(|_| -> Result<(), String> { Ok(()) }).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot create the partition's resource: refused"
        );
    }
}
