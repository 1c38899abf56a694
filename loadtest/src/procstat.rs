//! Reading another process's memory and CPU use from /proc.

/// Resident set size in bytes (`VmRSS` of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vmrss(&s)
}

/// The RSS of a server that has finished starting: read every 200 ms until two reads agree within
/// 256 KiB (at most 10 s). Read at once, it catches a server whose listener is open while its
/// shards, store threads and tables are still growing (1.7 MB at the port's opening, 25 MB half a
/// second later), and that growth was charged to the sessions.
pub fn settled_rss_bytes(pid: u32) -> Option<u64> {
    let step = std::time::Duration::from_millis(200);
    let mut last = rss_bytes(pid)?;
    for _ in 0..50 {
        std::thread::sleep(step);
        let now = rss_bytes(pid)?;
        if now.abs_diff(last) < 256 * 1024 {
            return Some(now);
        }
        last = now;
    }
    Some(last)
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User plus system CPU time in seconds (/proc/PID/stat utime + stime).
/// Linux reports these in USER_HZ, which is 100 on every Linux ABI.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s)
}

fn parse_stat(stat: &str) -> Option<f64> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' the fields are numbered from 3 (state); utime is 14, stime 15.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Seconds the process's threads spent runnable but waiting for a CPU (the second field of
/// /proc/PID/task/TID/schedstat, in ns, summed over the threads alive now). CPU time alone cannot
/// tell a server that waits for work from one that waits for a CPU other processes hold.
pub fn runq_wait_seconds(pid: u32) -> Option<f64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    for t in tasks.flatten() {
        // A thread that ended meanwhile no longer counts.
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
            ns += parse_schedstat(&s)?;
        }
    }
    Some(ns as f64 / 1e9)
}

fn parse_schedstat(s: &str) -> Option<u64> {
    // "run_ns wait_ns timeslices"
    s.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        assert_eq!(
            parse_vmrss("Name:\tx\nVmRSS:\t  1234 kB\nVmSwap: 0 kB\n"),
            Some(1234 * 1024)
        );
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(stat), Some(3.0));
        assert_eq!(
            parse_schedstat("1567434993 1586540710 4924\n"),
            Some(1586540710)
        );
        assert_eq!(parse_schedstat("12"), None);
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).is_some_and(|r| r > 0));
        assert!(cpu_seconds(me).is_some());
        assert!(runq_wait_seconds(me).is_some());
    }
}
