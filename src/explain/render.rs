//! The text form of an [`Explanation`] (`petrel ctl route explain`).

use std::fmt::Write;

use super::{Explanation, Outcome, Path, Step};

impl Explanation {
    /// A readable listing: one block per end of the route, one line per step with its time since
    /// the start and its duration since the step before. Steps shared with the path before are
    /// not repeated.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "{} from {} to {} (asked on shard {}): {} end(s)",
            self.kind,
            self.from,
            self.to,
            self.shard,
            self.paths.len()
        );
        let mut prev: Option<&Path> = None;
        for (n, path) in self.paths.iter().enumerate() {
            let shared = prev.map_or(0, |p| common_prefix(p, path));
            let end = path.steps.last().map_or("nothing happened", end_text);
            let _ = writeln!(out, "end {}: {end}", n + 1);
            if shared > 0 {
                let _ = writeln!(out, "    ... {shared} step(s) as above");
            }
            let mut before = shared
                .checked_sub(1)
                .and_then(|i| path.steps.get(i))
                .map_or(0, |s| s.at_us);
            for step in &path.steps[shared..] {
                let _ = writeln!(out, "    {}", line(step, before));
                before = step.at_us;
            }
            if path.steps_dropped > 0 {
                let _ = writeln!(out, "    ... {} more step(s) not kept", path.steps_dropped);
            }
            prev = Some(path);
        }
        if self.paths_dropped > 0 {
            let _ = writeln!(out, "{} more end(s) not kept", self.paths_dropped);
        }
        if self.in_flight > 0 {
            let _ = writeln!(
                out,
                "{} copy(ies) still on their way when the request stopped waiting",
                self.in_flight
            );
        }
        out
    }
}

fn common_prefix(a: &Path, b: &Path) -> usize {
    a.steps
        .iter()
        .zip(&b.steps)
        .take_while(|(x, y)| x == y)
        .count()
}

fn line(s: &Step, before: u64) -> String {
    let mut l = format!(
        "{:>8}µs (+{:>6}µs) shard {:<3} {}",
        s.at_us,
        s.at_us.saturating_sub(before),
        s.shard,
        s.stage
    );
    if let Some(h) = &s.handler {
        let _ = write!(l, " [{h}]");
    }
    let _ = write!(l, ": {}", outcome_text(s.outcome));
    if let Some(d) = &s.detail {
        let _ = write!(l, " ({d})");
    }
    l
}

fn outcome_text(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Stop => "stop",
        Outcome::Pass => "pass",
        Outcome::Took => "took",
        Outcome::Forwarded => "forwarded",
        Outcome::Delivered => "delivered",
        Outcome::Offline => "offline",
        Outcome::Bounced => "bounced",
        Outcome::Answered => "answered",
        Outcome::Dropped => "dropped",
        Outcome::Written => "written",
        Outcome::Reply => "reply",
    }
}

fn end_text(s: &Step) -> &'static str {
    match s.outcome {
        Outcome::Written => "written to the recipient's connection",
        Outcome::Stop => "stopped by a handler",
        Outcome::Dropped => "dropped by the route",
        _ => "the route ended after its last step",
    }
}
