//! The process's memory as the OS sees it: transparent huge pages, off by default.

/// Turns transparent huge pages on or off for the whole process. With them, a heap that grows by
/// a few KiB per idle session is backed, and counted, in 2 MiB pages: with the kernel's default
/// `max_ptes_none` (511), khugepaged collapses a 2 MiB range holding a single touched 4 KiB page
/// into a huge page, filling the rest, and freed 4 KiB pages inside it cannot be given back.
/// Fails on kernels before 3.15 or where `prctl` is filtered; the heap then follows the system's
/// THP setting.
pub fn huge_pages(allowed: bool) -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            libc::c_ulong::from(!allowed),
            0,
            0,
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
