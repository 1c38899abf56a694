//! Cross-executor wake-ups of the vendored glommio (vendor/glommio/PETREL-PATCH.md): its sleep
//! barrier is a fence on both sides instead of membarrier(2). Two executors ping-pong over
//! glommio's shared channels, the way petrel's shards talk, so each goes to sleep between
//! nearly every pair of messages; a lost wake-up leaves both asleep and the test stalls. The reactor
//! also keeps its preemption timers across loop turns: executors sleeping on timers must still wake.
//! And an executor may nap (`ExecutorProxy::set_nap`): sleep without telling the others, for a
//! bounded time, then sleep as before once a nap finds nothing to do.

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Round trips per run: enough that a race window of a few instructions is hit if it exists.
const ROUND_TRIPS: u32 = 100_000;

#[test]
fn executors_ping_ponging_never_miss_a_wake_up() {
    ping_pong(
        ROUND_TRIPS,
        1,
        |_| None,
        |_| None,
        None,
        "a lost wake-up: both executors asleep with a message between them",
    );
}

/// Round trips with napping executors: each message may wait out its receiver's nap, so fewer.
const NAPPING_ROUND_TRIPS: u32 = 10_000;

/// Executors that nap (as petrel's shards do from two on) still get every message: a nap ends on
/// its timer, and an executor whose nap found nothing sleeps as before and is woken. Pauses of
/// 0-300 us between some messages make both kinds of sleep happen.
#[test]
fn napping_executors_ping_ponging_never_miss_a_wake_up() {
    ping_pong(
        NAPPING_ROUND_TRIPS,
        1,
        |i| (i % 7 == 0).then(|| Duration::from_micros(u64::from(i % 4) * 100)),
        |i| (i % 5 == 0).then(|| Duration::from_micros(150)),
        Some(Duration::from_micros(50)),
        "a napping executor missed a wake-up or slept past its nap",
    );
}

/// Timer sleeps per run, each between two cross-executor messages.
const TIMED_STEPS: u32 = 3_000;

/// The vendored reactor keeps its preemption timers across loop turns and swaps the preemption
/// timer for the next user timer when it sleeps (vendor/glommio/PETREL-PATCH.md): an executor that
/// sleeps with a user timer pending must wake for it, whether it went to sleep right after a busy
/// turn (kept preemption timer) or after an idle one. One executor alternates short timer sleeps
/// with messages to another, which answers after a timer of its own; a timer that fails to wake
/// its executor stalls the test.
#[test]
fn executors_sleeping_on_timers_always_wake() {
    ping_pong(
        TIMED_STEPS,
        4,
        // 0-150 us: some sleeps end before the reactor's own turn does, some after.
        |i| Some(Duration::from_micros(u64::from(i % 4) * 50)),
        |i| (i % 3 == 0).then(|| Duration::from_micros(100)),
        None,
        "an executor asleep past its timer, or a lost wake-up",
    );
}

/// Runs `rounds` round trips between two executors over shared channels of `capacity`: "ping"
/// sleeps `ping_pause(i)` (if any) before sending `i`, "pong" sleeps `pong_pause(i)` before
/// answering `i + 1`; both nap for `nap` if it is set. Both must finish within a liveness bound,
/// not a speed one: a run takes about a second; a lost wake-up or timer never ends, and the test
/// fails with `stalled`.
fn ping_pong(
    rounds: u32,
    capacity: usize,
    ping_pause: fn(u32) -> Option<Duration>,
    pong_pause: fn(u32) -> Option<Duration>,
    nap: Option<Duration>,
    stalled: &str,
) {
    let (ping_tx, ping_rx) = shared_channel::new_bounded::<u32>(capacity);
    let (pong_tx, pong_rx) = shared_channel::new_bounded::<u32>(capacity);
    let (done_tx, done_rx) = mpsc::channel();
    let done_b = done_tx.clone();

    let a = LocalExecutorBuilder::new(Placement::Unbound)
        .name("ping")
        .spawn(move || async move {
            glommio::executor().set_nap(nap);
            let tx = ping_tx.connect().await;
            let rx = pong_rx.connect().await;
            for i in 0..rounds {
                if let Some(d) = ping_pause(i) {
                    glommio::timer::sleep(d).await;
                }
                tx.send(i).await.expect("the pong side is alive");
                let back = rx.recv().await.expect("the pong side answers");
                assert_eq!(back, i + 1);
            }
            done_tx.send("ping").expect("the test waits");
        })
        .expect("an executor starts");
    let b = LocalExecutorBuilder::new(Placement::Unbound)
        .name("pong")
        .spawn(move || async move {
            glommio::executor().set_nap(nap);
            let rx = ping_rx.connect().await;
            let tx = pong_tx.connect().await;
            while let Some(i) = rx.recv().await {
                if let Some(d) = pong_pause(i) {
                    glommio::timer::sleep(d).await;
                }
                tx.send(i + 1).await.expect("the ping side is alive");
            }
            done_b.send("pong").expect("the test waits");
        })
        .expect("an executor starts");

    for _ in 0..2 {
        let who = done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect(stalled);
        assert!(who == "ping" || who == "pong");
    }
    a.join().expect("ping ran");
    b.join().expect("pong ran");
}

/// Items a batching producer sends in [`batched_sends_and_receives_lose_nothing`].
const BATCHED_ITEMS: u32 = 200_000;

/// petrel's mesh pushes a batch with `try_send_unnotified` and wakes the receiver once with
/// `notify_receiver`. With the receiver napping, pausing now and then (so it also sleeps the ordinary way)
/// and a small ring (so the producer finds it full), every item must arrive once and in order.
#[test]
fn batched_sends_and_receives_lose_nothing() {
    let (tx, rx) = shared_channel::new_bounded::<u32>(64);
    let (done_tx, done_rx) = mpsc::channel();
    let producer = LocalExecutorBuilder::new(Placement::Unbound)
        .name("producer")
        .spawn(move || async move {
            let tx = tx.connect().await;
            let mut next = 0;
            let mut burst = 1;
            while next < BATCHED_ITEMS {
                let end = (next + burst).min(BATCHED_ITEMS);
                while next < end {
                    match tx.try_send_unnotified(next) {
                        Ok(()) => next += 1,
                        Err(_) => {
                            // Full: let the receiver drain, then go on.
                            tx.notify_receiver();
                            glommio::timer::sleep(Duration::from_micros(20)).await;
                        }
                    }
                }
                tx.notify_receiver();
                burst = burst % 17 + 1;
                if next % 10_000 < burst {
                    glommio::timer::sleep(Duration::from_micros(500)).await;
                }
                glommio::yield_if_needed().await;
            }
        })
        .expect("an executor starts");
    let consumer = LocalExecutorBuilder::new(Placement::Unbound)
        .name("consumer")
        .spawn(move || async move {
            glommio::executor().set_nap(Some(Duration::from_micros(100)));
            let rx = rx.connect().await;
            let mut expect = 0;
            while let Some(i) = rx.recv().await {
                assert_eq!(i, expect, "items arrive once and in order");
                expect += 1;
                if expect == BATCHED_ITEMS {
                    break;
                }
            }
            done_tx.send(expect).expect("the test waits");
        })
        .expect("an executor starts");
    let got = done_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("a lost wake-up: items left in the ring");
    assert_eq!(got, BATCHED_ITEMS);
    producer.join().expect("producer ran");
    consumer.join().expect("consumer ran");
}

/// A nap that finds nothing is followed by an ordinary sleep, which the other executors wake: an
/// idle shard is not slowed down by its nap. The receiver naps for up to a second; after a quiet
/// spell, a message reaches it long before that (a wake-up takes microseconds; the bound is a
/// third of the nap, so only a receiver still napping fails it).
#[test]
fn an_idle_napper_is_woken_at_once() {
    const NAP: Duration = Duration::from_secs(1);
    // Quiet for three naps before each: whatever the first found (the channel's connection), a
    // later one ends with nothing, and the receiver sleeps the ordinary way.
    let waits = waits_of_a_napper(NAP, None, 3, |_| NAP * 3 + Duration::from_millis(200));
    for w in &waits {
        assert!(
            *w < NAP / 3,
            "a message waited {w:?}: the idle receiver was still napping ({waits:?})"
        );
    }
}

/// Timer wake-ups do not start naps: an executor that is idle but for a periodic timer (a shard's
/// pings and ticks) sleeps the ordinary way between ticks, so a message from another executor is
/// not left waiting for a nap after each tick. The receiver ticks every 300 ms and naps for up to a
/// second (a nap never outlasts the next timer, so a napping receiver would make a message wait up
/// to 300 ms, 150 on average); each message must arrive within a quarter of that (it takes
/// microseconds), so a napping receiver fails the test unless all six land early in a nap.
#[test]
fn timer_wake_ups_do_not_start_naps() {
    const TICK: Duration = Duration::from_millis(300);
    // Quiet for several ticks before each, at a different phase of the tick each time.
    let waits = waits_of_a_napper(Duration::from_secs(1), Some(TICK), 6, |i| {
        Duration::from_millis(2_000 + i * 70)
    });
    for w in &waits {
        assert!(
            *w < TICK / 4,
            "a message waited {w:?}: a timer wake-up started a nap ({waits:?})"
        );
    }
}

/// Sends `count` messages from one executor to another that naps for up to `nap` (and wakes every
/// `tick` for a timer of its own, if set), the `i`-th after `quiet(i)` without traffic; returns
/// how long each took to arrive. A lost wake-up fails it after a minute.
fn waits_of_a_napper(
    nap: Duration,
    tick: Option<Duration>,
    count: u64,
    quiet: impl Fn(u64) -> Duration + Send + 'static,
) -> Vec<Duration> {
    let (tx, rx) = shared_channel::new_bounded::<Instant>(4);
    let (done_tx, done_rx) = mpsc::channel();
    let sender = LocalExecutorBuilder::new(Placement::Unbound)
        .name("sender")
        .spawn(move || async move {
            let tx = tx.connect().await;
            for i in 0..count {
                glommio::timer::sleep(quiet(i)).await;
                tx.send(Instant::now())
                    .await
                    .expect("the receiver is alive");
            }
        })
        .expect("an executor starts");
    let receiver = LocalExecutorBuilder::new(Placement::Unbound)
        .name("receiver")
        .spawn(move || async move {
            glommio::executor().set_nap(Some(nap));
            let ticker = tick.map(|tick| {
                glommio::spawn_local(async move {
                    loop {
                        glommio::timer::sleep(tick).await;
                    }
                })
                .detach()
            });
            let rx = rx.connect().await;
            let mut waits = Vec::new();
            while let Some(sent) = rx.recv().await {
                waits.push(sent.elapsed());
            }
            if let Some(ticker) = ticker {
                ticker.cancel();
            }
            done_tx.send(waits).expect("the test waits");
        })
        .expect("an executor starts");
    let waits = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the receiver never got its messages");
    assert_eq!(waits.len() as u64, count);
    sender.join().expect("sender ran");
    receiver.join().expect("receiver ran");
    waits
}
