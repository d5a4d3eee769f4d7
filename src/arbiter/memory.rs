//! The memory guard (`--max-worker-memory MiB`): the master reads each
//! worker's resident memory from /proc and recycles a worker past the limit
//! the way HUP replaces a generation, replacement first, then TERM to the
//! old one, which finishes its requests. Workers that grow alike would
//! cross the limit together, so each waits a random moment first, and only
//! one replacement boots at a time.

use super::stats::StopAsked;
use super::{Arbiter, Interrupt};
use pyo3::prelude::*;
use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};

/// The longest random wait between a worker found over the limit and its
/// recycling.
const JITTER_MS: u64 = 2000;
/// /proc is read at most this often, however busy the loop is.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A worker's resident set size in bytes (`/proc/PID/statm`, which the
/// kernel keeps without walking the page tables, unlike smaps). Shared
/// pages (the code and the `--preload`ed app inherited from the master)
/// count in every worker, as `ps` shows them.
pub fn rss_bytes(pid: i32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: u64 = text
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/PID/statm"))?;
    Ok(pages.saturating_mul(page_size()))
}

/// How much of a process's memory is its own: PSS (each resident page
/// divided by the number of processes mapping it) and USS (pages mapped by
/// it alone, which its exit would free). Read from /proc/PID/smaps_rollup,
/// which walks the page tables: fine for a scrape or a control command,
/// too dear for every turn of the master's loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sharing {
    pub pss: u64,
    pub uss: u64,
}

pub fn sharing(pid: i32) -> io::Result<Sharing> {
    parse_rollup(&std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?)
}

fn parse_rollup(text: &str) -> io::Result<Sharing> {
    let mut pss = None;
    let mut uss = 0u64;
    let mut private_seen = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        // Values are in kB; the heading line (address range) has no kB.
        let Some(kb) = rest.trim().strip_suffix(" kB").and_then(|n| n.trim().parse::<u64>().ok()) else { continue };
        let bytes = kb.saturating_mul(1024);
        match key {
            "Pss" => pss = Some(bytes),
            "Private_Clean" | "Private_Dirty" | "Private_Hugetlb" => {
                uss = uss.saturating_add(bytes);
                private_seen = true;
            }
            _ => {}
        }
    }
    match pss {
        Some(pss) if private_seen => Ok(Sharing { pss, uss }),
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/PID/smaps_rollup")),
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

pub const MIB: u64 = 1024 * 1024;

#[derive(Default)]
pub struct MemoryGuard {
    /// Workers found over the limit, and when each is to be recycled.
    due: HashMap<i32, Instant>,
    last_check: Option<Instant>,
}

impl MemoryGuard {
    /// Which worker to recycle now, if any. `over` are the workers over
    /// the limit, each with the random wait it gets if newly found there;
    /// while a worker is booting (a replacement, most likely), none is.
    fn choose(&mut self, over: &[(i32, Duration)], booting: bool, now: Instant) -> Option<i32> {
        // Forget workers that are gone or went back under the limit.
        self.due.retain(|pid, _| over.iter().any(|(p, _)| p == pid));
        for (pid, wait) in over {
            self.due.entry(*pid).or_insert(now + *wait);
        }
        if booting {
            return None;
        }
        let (pid, _) = self.due.iter().filter(|(_, at)| **at <= now).min_by_key(|(pid, at)| (**at, **pid))?;
        let pid = *pid;
        self.due.remove(&pid);
        Some(pid)
    }
}

impl Arbiter {
    /// One turn of the guard, from the master's loop.
    pub(super) fn guard_memory(&mut self, py: Python<'_>) -> Result<(), Interrupt> {
        let limit_mib = self.settings.max_worker_memory;
        if limit_mib == 0 {
            self.memory.due.clear();
            return Ok(());
        }
        let now = Instant::now();
        if self.memory.last_check.is_some_and(|t| now.duration_since(t) < CHECK_EVERY) {
            return Ok(());
        }
        self.memory.last_check = Some(now);
        let limit = limit_mib.saturating_mul(MIB);
        let mut over: Vec<(i32, u64)> = Vec::new();
        let mut booting = false;
        for (pid, w) in &self.workers {
            if w.retiring_since.is_some() {
                continue;
            }
            // A worker still loading the app is growing by design; it is
            // judged once it serves.
            if !self.board.slot(w.slot).booted() {
                booting = true;
                continue;
            }
            if let Ok(rss) = rss_bytes(*pid) {
                if rss > limit {
                    over.push((*pid, rss));
                }
            }
        }
        let waits: Vec<(i32, Duration)> =
            over.iter().map(|(pid, _)| (*pid, Duration::from_millis(self.next_random() % (JITTER_MS + 1)))).collect();
        let Some(pid) = self.memory.choose(&waits, booting, now) else {
            return Ok(());
        };
        let rss = over.iter().find(|(p, _)| *p == pid).map_or(0, |(_, r)| *r);
        let served = self
            .workers
            .get(&pid)
            .map_or(0, |w| self.board.slot(w.slot).requests.load(std::sync::atomic::Ordering::Relaxed));
        crate::log::warning!(
            "Worker (pid:{pid}) uses {} MiB, over --max-worker-memory {limit_mib} MiB after {served} requests: recycling it",
            rss / MIB
        );
        if served == 0 {
            crate::log::warning!(
                "A worker that has served nothing is already over --max-worker-memory: the limit is probably too low"
            );
        }
        if let Some(w) = self.workers.get_mut(&pid) {
            w.retiring_since = Some(now);
            w.stop_asked = Some(StopAsked::MaxMemory);
        }
        // The replacement starts before the old worker is asked to stop, as
        // a HUP does, so the pool never runs short.
        self.manage_workers(py)?;
        super::kill(pid, libc::SIGTERM);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_its_jitter_then_recycles_one_at_a_time() {
        let mut g = MemoryGuard::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Two workers cross the limit together, with different waits.
        let over = [(10, ms(1500)), (11, ms(300))];
        assert_eq!(g.choose(&over, false, t0), None);
        assert_eq!(g.choose(&over, false, t0 + ms(299)), None);
        // Later draws do not move a wait already given.
        let redraw = [(10, ms(0)), (11, ms(0))];
        assert_eq!(g.choose(&redraw, false, t0 + ms(300)), Some(11));
        // The next one is due, but its turn waits for the replacement.
        assert_eq!(g.choose(&[(10, ms(0))], true, t0 + ms(1600)), None);
        assert_eq!(g.choose(&[(10, ms(0))], false, t0 + ms(1600)), Some(10));
        assert_eq!(g.choose(&[], false, t0 + ms(2000)), None);
    }

    #[test]
    fn a_worker_back_under_the_limit_is_forgotten() {
        let mut g = MemoryGuard::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(g.choose(&[(10, ms(500))], false, t0), None);
        assert_eq!(g.choose(&[], false, t0 + ms(100)), None);
        // Over again later: a fresh wait from then.
        assert_eq!(g.choose(&[(10, ms(500))], false, t0 + ms(600)), None);
        assert_eq!(g.choose(&[(10, ms(0))], false, t0 + ms(1100)), Some(10));
    }

    #[test]
    fn parses_smaps_rollup() {
        let text = "55d0c0a00000-7ffd4b5f2000 ---p 00000000 00:00 0                          [rollup]\n\
                    Rss:              204800 kB\nPss:               60000 kB\nPss_Anon:          50000 kB\n\
                    Shared_Clean:       4000 kB\nShared_Dirty:     160000 kB\nPrivate_Clean:       800 kB\n\
                    Private_Dirty:     40000 kB\nPrivate_Hugetlb:        0 kB\nSwap:                  0 kB\n";
        let s = parse_rollup(text).expect("parses");
        assert_eq!(s, Sharing { pss: 60000 * 1024, uss: 40800 * 1024 });
        assert!(parse_rollup("Rss: 12 kB\n").is_err());
        assert!(parse_rollup("").is_err());
    }

    #[test]
    fn reads_our_own_sharing() {
        let s = sharing(std::process::id() as i32).expect("smaps_rollup");
        assert!(s.uss > 0 && s.pss >= s.uss, "{s:?}");
        assert!(sharing(-1).is_err());
    }

    #[test]
    fn reads_our_own_rss() {
        let rss = rss_bytes(std::process::id() as i32).expect("statm");
        assert!(rss > MIB, "{rss}");
        assert!(rss_bytes(-1).is_err());
    }
}
