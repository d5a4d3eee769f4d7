//! `--memory-merge`: the kernel's same-page merging (KSM) for the master and
//! its workers. What `gc.freeze()` cannot stop (see `freeze.rs`) is
//! reference counting: a worker that uses a preloaded object writes its
//! count, and the page it sits on is copied. Once the request is over the
//! count is back where it was, and the copy is again byte for byte the
//! master's page, so KSM can merge the two back into one. Marking the
//! master's whole address space mergeable (PR_SET_MEMORY_MERGE, Linux 6.4)
//! covers the preloaded heap, and the mark is inherited by every fork.

/// PR_SET_MEMORY_MERGE from linux/prctl.h (not in every libc crate yet).
const PR_SET_MEMORY_MERGE: libc::c_int = 67;
const KSM_RUN: &str = "/sys/kernel/mm/ksm/run";
const KSM_SMART_SCAN: &str = "/sys/kernel/mm/ksm/smart_scan";

/// Marks this process (and so the workers it forks) mergeable. An error
/// (a kernel without it, a sandbox that forbids it) stops the start: the
/// operator asked for it.
pub(super) fn enable() -> Result<(), String> {
    // SAFETY: prctl with integer arguments only.
    if unsafe {
        libc::prctl(PR_SET_MEMORY_MERGE, 1 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong)
    } != 0
    {
        let err = std::io::Error::last_os_error();
        return Err(format!(
            "--memory-merge: the kernel refused to merge this process's pages (prctl PR_SET_MEMORY_MERGE: {err}); it needs Linux 6.4 or later with KSM (CONFIG_KSM)"
        ));
    }
    match std::fs::read_to_string(KSM_RUN).map(|s| s.trim().to_owned()) {
        Ok(run) if run == "1" => crate::log::info!("Memory merging (KSM) on for the master and its workers"),
        // The host's administrator turns the scanner on (it is one switch
        // for the whole machine); the processes are marked meanwhile.
        Ok(run) => crate::log::warning!(
            "--memory-merge: the kernel's page merging is off on this host ({KSM_RUN} is {run}): nothing is merged until an administrator runs `echo 1 > {KSM_RUN}`"
        ),
        Err(e) => crate::log::warning!("--memory-merge: cannot read {KSM_RUN} ({e}): whether pages get merged is unknown"),
    }
    // Smart scan (Linux 6.7, on by default) skips a page that found no twin
    // in its last passes, for up to 8 passes out of 9. A worker's pages age that way
    // while they are still the master's own; when a request later copies
    // one, the copy and the master's page are only compared in a pass
    // that scans both, and their cycles can stay out of step for good. A
    // second worker forked at the same time has its copies in step, so
    // pools of two or more usually merge; a lone worker may never.
    if std::fs::read_to_string(KSM_SMART_SCAN).is_ok_and(|s| s.trim() == "1") {
        crate::log::warning!(
            "--memory-merge: the kernel's smart scan is on ({KSM_SMART_SCAN} is 1): it skips pages that long found no twin, so pages a worker copies late may merge back slowly or, with one worker, never; an administrator can run `echo 0 > {KSM_SMART_SCAN}`"
        );
    }
    Ok(())
}
