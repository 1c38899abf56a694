//! Which CPUs the process may run on (its affinity mask), for the default shard count and pinning.

use std::io;

/// CPU ids in this process's affinity mask, ascending.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for the calling thread (pid 0), whose
    // mask is the process's at start-up, before any shard thread pins itself.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn at_least_one_cpu() {
        let cpus = super::allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert_eq!(
            cpus.len(),
            std::thread::available_parallelism()
                .unwrap()
                .get()
                .min(cpus.len())
        );
    }
}
