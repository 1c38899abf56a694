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
    ping_pong(
        ROUND_TRIPS,
        1,
        |_| None,
        |_| None,
        "a lost wake-up: both executors asleep with a message between them",
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
        "an executor asleep past its timer, or a lost wake-up",
    );
}

/// Runs `rounds` round trips between two executors over shared channels of `capacity`: "ping"
/// sleeps `ping_pause(i)` (if any) before sending `i`, "pong" sleeps `pong_pause(i)` before
/// answering `i + 1`. Both must finish within a liveness bound, not a speed one: a run takes
/// about a second; a lost wake-up or timer never ends, and the test fails with `stalled`.
fn ping_pong(
    rounds: u32,
    capacity: usize,
    ping_pause: fn(u32) -> Option<Duration>,
    pong_pause: fn(u32) -> Option<Duration>,
    stalled: &str,
) {
    let (ping_tx, ping_rx) = shared_channel::new_bounded::<u32>(capacity);
    let (pong_tx, pong_rx) = shared_channel::new_bounded::<u32>(capacity);
    let (done_tx, done_rx) = mpsc::channel();
    let done_b = done_tx.clone();

    let a = LocalExecutorBuilder::new(Placement::Unbound)
        .name("ping")
        .spawn(move || async move {
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
