//! Cross-executor wake-ups of the vendored glommio (vendor/glommio/PETREL-PATCH.md): its sleep
//! barrier is a fence on both sides instead of membarrier(2). Two executors ping-pong over
//! glommio's shared channels, the way petrel's shards talk, so each goes to sleep between
//! nearly every pair of messages; a lost wake-up leaves both asleep and the test stalls. The reactor
//! also keeps its preemption timers across loop turns: executors sleeping on timers must still wake.

use glommio::channels::shared_channel;
use glommio::{LocalExecutorBuilder, Placement};
use std::sync::mpsc;
use std::time::Duration;

/// Round trips per run: enough that a race window of a few instructions is hit if it exists.
const ROUND_TRIPS: u32 = 100_000;

#[test]
fn executors_ping_ponging_never_miss_a_wake_up() {
    let (ping_tx, ping_rx) = shared_channel::new_bounded::<u32>(1);
    let (pong_tx, pong_rx) = shared_channel::new_bounded::<u32>(1);
    let (done_tx, done_rx) = mpsc::channel();
    let done_b = done_tx.clone();

    let a = LocalExecutorBuilder::new(Placement::Unbound)
        .name("ping")
        .spawn(move || async move {
            let tx = ping_tx.connect().await;
            let rx = pong_rx.connect().await;
            for i in 0..ROUND_TRIPS {
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
            let rx = ping_rx.connect().await;
            let tx = pong_tx.connect().await;
            while let Some(i) = rx.recv().await {
                tx.send(i + 1).await.expect("the ping side is alive");
            }
            done_b.send("pong").expect("the test waits");
        })
        .expect("an executor starts");

    wait_for_both(
        &done_rx,
        a,
        b,
        "a lost wake-up: both executors asleep with a message between them",
    );
}

/// Waits for both executors to report and joins them. A liveness bound, not a speed one: a run
/// takes about a second; a lost wake-up never ends.
fn wait_for_both(
    done: &mpsc::Receiver<&'static str>,
    a: glommio::ExecutorJoinHandle<()>,
    b: glommio::ExecutorJoinHandle<()>,
    stalled: &str,
) {
    for _ in 0..2 {
        let who = done.recv_timeout(Duration::from_secs(120)).expect(stalled);
        assert!(who == "ping" || who == "pong");
    }
    a.join().expect("ping ran");
    b.join().expect("pong ran");
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
    let (ping_tx, ping_rx) = shared_channel::new_bounded::<u32>(4);
    let (pong_tx, pong_rx) = shared_channel::new_bounded::<u32>(4);
    let (done_tx, done_rx) = mpsc::channel();
    let done_b = done_tx.clone();

    let a = LocalExecutorBuilder::new(Placement::Unbound)
        .name("timed-ping")
        .spawn(move || async move {
            let tx = ping_tx.connect().await;
            let rx = pong_rx.connect().await;
            for i in 0..TIMED_STEPS {
                // 0-150 us: some sleeps end before the reactor's own turn does, some after.
                glommio::timer::sleep(Duration::from_micros(u64::from(i % 4) * 50)).await;
                tx.send(i).await.expect("the pong side is alive");
                let back = rx.recv().await.expect("the pong side answers");
                assert_eq!(back, i + 1);
            }
            done_tx.send("ping").expect("the test waits");
        })
        .expect("an executor starts");
    let b = LocalExecutorBuilder::new(Placement::Unbound)
        .name("timed-pong")
        .spawn(move || async move {
            let rx = ping_rx.connect().await;
            let tx = pong_tx.connect().await;
            while let Some(i) = rx.recv().await {
                if i % 3 == 0 {
                    glommio::timer::sleep(Duration::from_micros(100)).await;
                }
                tx.send(i + 1).await.expect("the ping side is alive");
            }
            done_b.send("pong").expect("the test waits");
        })
        .expect("an executor starts");

    wait_for_both(
        &done_rx,
        a,
        b,
        "an executor asleep past its timer, or a lost wake-up",
    );
}
