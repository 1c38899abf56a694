//! Off-shard worker pool: storage I/O and PBKDF2 never run on a shard.
//!
//! Jobs go over one bounded crossbeam channel to `threads` workers, each with its own `Store`.
//! Keyed jobs (`call_keyed`) go to the worker chosen by their key over that worker's own bounded
//! channel, so jobs on the same data (one user's offline queue, roster...) run in submission order.
//! Overflow policy: a full queue fails the call at once with `StoreError::Busy` (callers answer
//! temporary-auth-failure or resource-constraint); a shard never waits for queue space.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use super::{oneshot, Backend, Store, StoreError};

type Job = Box<dyn FnOnce(&Store) + Send>;

/// The shared queue and one queue per worker (for keyed jobs).
struct Senders {
    any: Sender<Job>,
    keyed: Vec<Sender<Job>>,
}

struct Shared {
    /// None after shutdown. Workers exit once every queued job has run and this sender is gone.
    tx: RwLock<Option<Senders>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Where jobs record their latency (queue wait plus run), once metrics are attached.
    job_latency: OnceLock<crate::metrics::Histogram>,
}

/// A handle to the storage worker pool; clones share the pool.
#[derive(Clone)]
pub struct StorePool {
    shared: Arc<Shared>,
}

impl StorePool {
    /// Starts `threads` workers (at least one), each opening its own SQLite `Store` in `data_dir`,
    /// fed by a queue of `queue` jobs (0: a job is only accepted when a worker is idle).
    pub fn start(data_dir: &Path, threads: usize, queue: usize) -> Result<StorePool, StoreError> {
        Self::start_backend(&Backend::Sqlite(data_dir.to_owned()), threads, queue)
    }

    /// Like [`StorePool::start`], each worker connected to `backend`.
    pub fn start_backend(
        backend: &Backend,
        threads: usize,
        queue: usize,
    ) -> Result<StorePool, StoreError> {
        // Open once here so schema creation and WAL setup happen before workers race, and so
        // errors surface to the caller.
        drop(Store::connect(backend)?);
        let (tx, rx) = bounded::<Job>(queue);
        let threads = threads.max(1);
        let (keyed_tx, keyed_rx): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| bounded::<Job>(queue)).unzip();
        let pool = StorePool {
            shared: Arc::new(Shared {
                tx: RwLock::new(Some(Senders {
                    any: tx,
                    keyed: keyed_tx,
                })),
                workers: Mutex::new(Vec::new()),
                job_latency: OnceLock::new(),
            }),
        };
        let (ready_tx, ready_rx) = bounded::<Result<(), StoreError>>(threads.max(1));
        for (i, own) in keyed_rx.into_iter().enumerate() {
            let (rx, ready_tx, backend) = (rx.clone(), ready_tx.clone(), backend.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("petrel-store-{i}"))
                .spawn(move || match Store::connect(&backend) {
                    Ok(store) => {
                        let _ = ready_tx.send(Ok(()));
                        drop(ready_tx);
                        worker(&store, &rx, &own);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                });
            match spawned {
                Ok(h) => pool.lock_workers().push(h),
                Err(e) => {
                    pool.shutdown();
                    return Err(e.into());
                }
            }
        }
        drop(ready_tx);
        for r in ready_rx.iter() {
            if let Err(e) = r {
                pool.shutdown();
                return Err(e);
            }
        }
        Ok(pool)
    }

    /// Runs `f` on a pool thread; the returned future resolves on whatever executor awaits it
    /// (glommio supports wakes from foreign threads). The job is queued when `call` is made,
    /// not when the future is first polled; a full queue fails at once with `Busy`.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> R + Send + 'static,
    ) -> impl Future<Output = Result<R, StoreError>> + 'static {
        let submitted = self.submit(None, f);
        async move {
            match submitted?.await {
                Some(r) => r,
                None => Err(StoreError::Closed),
            }
        }
    }

    /// Like [`StorePool::call`], but jobs with the same `key` run one after another, in order.
    pub fn call_keyed<R: Send + 'static>(
        &self,
        key: u64,
        f: impl FnOnce(&Store) -> R + Send + 'static,
    ) -> impl Future<Output = Result<R, StoreError>> + 'static {
        let submitted = self.submit(Some(key), f);
        async move {
            match submitted?.await {
                Some(r) => r,
                None => Err(StoreError::Closed),
            }
        }
    }

    /// Like [`StorePool::call_keyed`] (or `call` without a key), but a full or closed queue gives
    /// the job back instead of dropping it, so the caller can keep it and retry in order.
    #[allow(clippy::type_complexity)]
    pub fn try_call<R: Send + 'static, F: FnOnce(&Store) -> R + Send + 'static>(
        &self,
        key: Option<u64>,
        f: F,
    ) -> Result<impl Future<Output = Result<R, StoreError>> + 'static, (StoreError, F)> {
        // The job travels in a slot both sides can reach: if the queue refuses the wrapper, the
        // caller takes the job back out of the slot.
        let slot = Arc::new(Mutex::new(Some(f)));
        let inner = slot.clone();
        match self.submit(key, move |store: &Store| {
            let f = inner.lock().unwrap_or_else(|p| p.into_inner()).take();
            f.map(|f| f(store))
        }) {
            Ok(rx) => Ok(async move {
                match rx.await {
                    Some(Ok(Some(r))) => Ok(r),
                    Some(Ok(None)) | None => Err(StoreError::Closed),
                    Some(Err(e)) => Err(e),
                }
            }),
            Err(e) => {
                let f = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
                // The wrapper never ran (it was refused), so the job is still in the slot.
                match f {
                    Some(f) => Err((e, f)),
                    None => unreachable!("a refused job cannot have run"),
                }
            }
        }
    }

    fn submit<R: Send + 'static>(
        &self,
        key: Option<u64>,
        f: impl FnOnce(&Store) -> R + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<R, StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        // A clock read per job only when metrics are on (`get` is one atomic load, no lock).
        let timed = self
            .shared
            .job_latency
            .get()
            .map(|h| (h.clone(), Instant::now()));
        let job: Job = Box::new(move |store: &Store| {
            // Keep the worker alive across a panicking job; the caller gets JobPanicked.
            let r =
                catch_unwind(AssertUnwindSafe(|| f(store))).map_err(|_| StoreError::JobPanicked);
            if let Some((h, queued)) = timed {
                h.observe(queued.elapsed());
            }
            reply.send(r);
        });
        let guard = self.shared.tx.read().unwrap_or_else(|p| p.into_inner());
        let senders = guard.as_ref().ok_or(StoreError::Closed)?;
        let tx = match key {
            Some(k) => &senders.keyed[(k % senders.keyed.len() as u64) as usize],
            None => &senders.any,
        };
        match tx.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(StoreError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Closed),
        }
    }

    /// Jobs waiting for a store thread, all queues (for the admin API's stats).
    pub fn queued(&self) -> usize {
        let guard = self.shared.tx.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map_or(0, |s| {
            s.any.len() + s.keyed.iter().map(Sender::len).sum::<usize>()
        })
    }

    /// Stops accepting jobs, lets queued jobs finish, and waits for the workers (except the
    /// calling thread, if it is one of them).
    pub fn shutdown(&self) {
        drop(
            self.shared
                .tx
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let workers = std::mem::take(&mut *self.lock_workers());
        let me = std::thread::current().id();
        for h in workers {
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
    }

    /// Jobs queued and not yet started, over the shared queue and every worker's own (a snapshot,
    /// for metrics; 0 after shutdown).
    pub fn queue_depth(&self) -> usize {
        let guard = self.shared.tx.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map_or(0, |s| {
            s.any.len() + s.keyed.iter().map(Sender::len).sum::<usize>()
        })
    }

    /// Makes every later job record its latency (queue wait plus run) in `h`; the first call wins.
    pub fn record_job_latency(&self, h: crate::metrics::Histogram) {
        let _ = self.shared.job_latency.set(h);
    }

    fn lock_workers(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        // Nothing panics while holding this lock.
        self.shared
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs jobs from the shared queue and from this worker's own queue until both are empty and every
/// sender is gone. Work the store deferred (the archive's coalesced writes, [`Store::deferred`])
/// runs when it is due, even if no job comes, and before the worker exits.
fn worker(store: &Store, any: &Receiver<Job>, own: &Receiver<Job>) {
    batch_policy();
    let (mut any_open, mut own_open) = (true, true);
    let closed = crossbeam_channel::never::<Job>();
    while any_open || own_open {
        let due = match store.deferred() {
            Some(wait) if wait.is_zero() => {
                store.run_deferred();
                continue;
            }
            Some(wait) => crossbeam_channel::after(wait),
            None => crossbeam_channel::never(),
        };
        crossbeam_channel::select! {
            recv(if any_open { any } else { &closed }) -> job => match job {
                Ok(job) => job(store),
                Err(_) => any_open = false,
            },
            recv(if own_open { own } else { &closed }) -> job => match job {
                Ok(job) => job(store),
                Err(_) => own_open = false,
            },
            recv(due) -> _ => store.run_deferred(),
        }
    }
    // Shutting down: the archive rows held are committed, tried again for a few seconds while the
    // store is away (a restarting database); what is still held then is lost, and said so.
    let deadline = std::time::Instant::now() + SHUTDOWN_FLUSH;
    store.run_deferred();
    while store.deferred().is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(250));
        store.run_deferred();
    }
    let lost = store.mam_unwritten();
    if lost > 0 {
        tracing::error!(
            rows = lost,
            "archive rows lost at shutdown: the store could not be written"
        );
    }
}

/// How long a store thread keeps trying to commit its held archive rows at shutdown.
const SHUTDOWN_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Puts the calling store thread under `SCHED_BATCH`: a job queued by a running shard then waits for
/// the shard to sleep or for the next tick instead of preempting it. The store threads share the
/// shards' cores; under the default policy every job woke a thread that preempted the shard at once
/// (two context switches per job, 2.7 per login in a login storm, 17 % of the server's samples), and
/// with this one the jobs queued during a shard's run are taken in one go (SCRAM logins per server
/// CPU-second 1.37x; docs/BENCHMARKS.md, `connect`). An idle shard's core runs them at once as before.
fn batch_policy() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a syscall on the calling thread (pid 0) with a valid, initialised parameter;
    // SCHED_BATCH needs no privilege, and a refusal leaves the thread as it was.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "store thread keeps the default policy");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ScramSecrets;
    use crate::jid::BareJid;
    use futures_lite::future::block_on;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn call_from_a_plain_thread() {
        for db in crate::store::testing::test_dbs() {
            eprintln!("backend: {}", db.name);
            let pool =
                StorePool::start_backend(db.backend(), 2, 16).unwrap_or_else(|e| panic!("{e}"));
            let jid = BareJid::parse("alice@example.com").unwrap_or_else(|e| panic!("{e}"));
            let j = jid.clone();
            let added = pool.call(move |s| {
                let secrets = ScramSecrets::derive("pw", 16);
                s.add_user(&j, &secrets)
            });
            assert!(matches!(block_on(added), Ok(Ok(()))));
            let p2 = pool.clone();
            let t = std::thread::spawn(move || {
                let got = block_on(p2.call(move |s| s.get_secrets(&jid)));
                matches!(got, Ok(Ok(Some(ref sec))) if sec.verify_plain("pw"))
            });
            assert!(t.join().unwrap_or(false));
            let name = block_on(pool.call(|_| std::thread::current().name().map(str::to_owned)));
            assert!(name
                .ok()
                .flatten()
                .is_some_and(|n| n.starts_with("petrel-store-")));
            pool.shutdown();
            assert!(matches!(
                block_on(pool.call(|_| ())),
                Err(StoreError::Closed)
            ));
        }
    }

    #[test]
    fn store_threads_do_not_preempt_shards() {
        let d = dir();
        let pool = StorePool::start(d.path(), 2, 4).unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: asks the calling (store) thread's own policy; no memory is passed.
        let policy = block_on(pool.call(|_| unsafe { libc::sched_getscheduler(0) }));
        assert!(matches!(policy, Ok(libc::SCHED_BATCH)), "{policy:?}");
        pool.shutdown();
    }

    #[test]
    fn busy_when_queue_full() {
        let d = dir();
        let pool = StorePool::start(d.path(), 1, 1).unwrap_or_else(|e| panic!("{e}"));
        let (started_tx, started_rx) = bounded::<()>(1);
        let (release_tx, release_rx) = bounded::<()>(1);
        let first = pool.call(move |_| {
            let _ = started_tx.send(());
            let _ = release_rx.recv();
            1
        });
        // The worker is now busy with `first`; one slot remains in the queue.
        started_rx.recv().unwrap_or_else(|e| panic!("{e}"));
        let second = pool.call(|_| 2);
        let third = pool.call(|_| 3);
        assert!(matches!(block_on(third), Err(StoreError::Busy)));
        release_tx.send(()).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(block_on(first), Ok(1)));
        assert!(matches!(block_on(second), Ok(2)));
        pool.shutdown();
    }

    #[test]
    fn panicking_job_keeps_the_worker() {
        let d = dir();
        let pool = StorePool::start(d.path(), 1, 4).unwrap_or_else(|e| panic!("{e}"));
        let boom = pool.call(|_| -> u8 { panic!("job failure under test") });
        assert!(matches!(block_on(boom), Err(StoreError::JobPanicked)));
        assert!(matches!(block_on(pool.call(|_| 7)), Ok(7)));
        pool.shutdown();
    }

    #[test]
    fn shutdown_runs_queued_jobs() {
        let d = dir();
        let pool = StorePool::start(d.path(), 1, 8).unwrap_or_else(|e| panic!("{e}"));
        let futs: Vec<_> = (0..5u32).map(|i| pool.call(move |_| i * 10)).collect();
        pool.shutdown();
        let got: Vec<_> = futs.into_iter().map(|f| block_on(f).ok()).collect();
        assert_eq!(got, [Some(0), Some(10), Some(20), Some(30), Some(40)]);
    }

    #[test]
    fn start_fails_on_unusable_dir() {
        let d = dir();
        let file = d.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            StorePool::start(&file, 1, 1),
            Err(StoreError::Io(_))
        ));
    }
}
