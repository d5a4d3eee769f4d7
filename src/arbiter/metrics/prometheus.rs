//! The metrics page in Prometheus' text exposition format (version 0.0.4),
//! aggregated over every worker: counters are the master's totals of
//! workers already gone plus what live workers have in their slots, so they
//! never go backwards when a worker is replaced.

use super::super::dirty::DirtyView;
use super::super::observe::{Snapshot, WorkerView};
use super::super::stats::{Cause, MasterStats, RequestCounts, BUCKET_BOUNDS_US, STATUS_CLASSES};
use std::fmt::Write;

/// The content type Prometheus expects for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the page shows, apart from where it comes from (so it can be
/// rendered in a test without a running master).
pub struct Page<'a> {
    pub requests: &'a RequestCounts,
    pub stats: &'a MasterStats,
    pub workers: &'a [WorkerView],
    pub target: usize,
    /// Each listener's accept queue, where the kernel reports one.
    pub backlog: Vec<(String, i64)>,
    /// The dirty arbiter's pool and calls, while one runs.
    pub dirty: Option<&'a DirtyView>,
}

pub fn render(s: &Snapshot<'_>) -> String {
    let backlog = s.listeners.iter().map(|l| (l.to_string(), l.backlog())).filter(|(_, n)| *n >= 0).collect();
    render_page(&Page {
        requests: &s.requests,
        stats: s.stats,
        workers: &s.workers,
        target: s.target,
        backlog,
        dirty: s.dirty.as_ref(),
    })
}

pub fn render_page(p: &Page<'_>) -> String {
    let mut out = String::with_capacity(4096);
    let o = &mut out;

    header(
        o,
        "ferrocorn_requests_total",
        "counter",
        "Requests served, by status class (as the access log records them).",
    );
    for (i, class) in STATUS_CLASSES.iter().enumerate() {
        // "other" (a status outside 100-599) only shows once it happened.
        if i < 5 || p.requests.status[i] > 0 {
            let _ = writeln!(o, "ferrocorn_requests_total{{code=\"{class}\"}} {}", p.requests.status[i]);
        }
    }

    header(
        o,
        "ferrocorn_request_duration_seconds",
        "histogram",
        "Request duration, from the request head read to the response sent (the access log's request time).",
    );
    let mut cumulative = 0u64;
    for (i, bound) in BUCKET_BOUNDS_US.iter().enumerate() {
        cumulative = cumulative.wrapping_add(p.requests.buckets[i]);
        let _ = writeln!(o, "ferrocorn_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}", seconds(*bound));
    }
    let count = p.requests.count();
    let _ = writeln!(o, "ferrocorn_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(o, "ferrocorn_request_duration_seconds_sum {}", seconds(p.requests.sum_us));
    let _ = writeln!(o, "ferrocorn_request_duration_seconds_count {count}");

    header(
        o,
        "ferrocorn_request_timeouts_total",
        "counter",
        "Requests whose handler was interrupted by --request-timeout.",
    );
    let _ = writeln!(o, "ferrocorn_request_timeouts_total {}", p.requests.timeouts);

    header(o, "ferrocorn_requests_in_flight", "gauge", "Requests the workers are running now.");
    let in_flight: u64 = p.workers.iter().map(|w| w.in_flight).sum();
    let _ = writeln!(o, "ferrocorn_requests_in_flight {in_flight}");

    header(o, "ferrocorn_worker_restarts_total", "counter", "Workers that exited and were replaced, by cause.");
    for cause in Cause::ALL {
        let _ =
            writeln!(o, "ferrocorn_worker_restarts_total{{cause=\"{}\"}} {}", cause.label(), p.stats.restarts(cause));
    }

    header(
        o,
        "ferrocorn_workers",
        "gauge",
        "Workers in the pool (not counting those finishing after a reload or shrink).",
    );
    let _ = writeln!(o, "ferrocorn_workers {}", p.workers.iter().filter(|w| !w.retiring).count());
    header(o, "ferrocorn_workers_target", "gauge", "The pool size the master keeps (--workers, TTIN/TTOU).");
    let _ = writeln!(o, "ferrocorn_workers_target {}", p.target);
    header(o, "ferrocorn_worker_spawns_total", "counter", "Workers forked since the master started.");
    let _ = writeln!(o, "ferrocorn_worker_spawns_total {}", p.stats.spawned);
    header(o, "ferrocorn_reloads_total", "counter", "Reloads (HUP) since the master started.");
    let _ = writeln!(o, "ferrocorn_reloads_total {}", p.stats.reloads);

    header(o, "ferrocorn_worker_rss_bytes", "gauge", "Resident memory of each worker process.");
    for w in p.workers {
        if let Some(rss) = w.rss {
            let _ = writeln!(o, "ferrocorn_worker_rss_bytes{{pid=\"{}\"}} {rss}", w.pid);
        }
    }
    header(
        o,
        "ferrocorn_worker_pss_bytes",
        "gauge",
        "Proportional set size of each worker: its resident pages, each shared one divided among the processes mapping it.",
    );
    for w in p.workers {
        if let Some(m) = w.sharing {
            let _ = writeln!(o, "ferrocorn_worker_pss_bytes{{pid=\"{}\"}} {}", w.pid, m.pss);
        }
    }
    header(o, "ferrocorn_worker_uss_bytes", "gauge", "Unique set size of each worker: the memory only it maps.");
    for w in p.workers {
        if let Some(m) = w.sharing {
            let _ = writeln!(o, "ferrocorn_worker_uss_bytes{{pid=\"{}\"}} {}", w.pid, m.uss);
        }
    }
    header(o, "ferrocorn_worker_heartbeat_age_seconds", "gauge", "Time since each worker's last heartbeat.");
    for w in p.workers {
        let _ = writeln!(o, "ferrocorn_worker_heartbeat_age_seconds{{pid=\"{}\"}} {}", w.pid, w.silent.as_secs_f64());
    }

    if !p.backlog.is_empty() {
        header(o, "ferrocorn_listen_backlog", "gauge", "Connections waiting in a listener's accept queue.");
        for (listener, n) in &p.backlog {
            let _ = writeln!(o, "ferrocorn_listen_backlog{{listener=\"{}\"}} {n}", escape(listener));
        }
    }

    if let Some(d) = p.dirty {
        render_dirty(o, d);
    }

    header(
        o,
        "ferrocorn_master_start_time_seconds",
        "gauge",
        "When the master started, in seconds since the Unix epoch.",
    );
    let started = p.stats.started.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let _ = writeln!(o, "ferrocorn_master_start_time_seconds {}", started.as_secs());
    out
}

/// Dirty calls per app (counted by the dirty arbiter when each ends), and
/// the dirty pool.
fn render_dirty(o: &mut String, d: &DirtyView) {
    header(o, "ferrocorn_dirty_calls_total", "counter", "Dirty app calls finished, whatever their outcome, by app.");
    for a in &d.apps {
        let _ = writeln!(o, "ferrocorn_dirty_calls_total{{app=\"{}\"}} {}", escape(&a.path), a.calls);
    }
    header(
        o,
        "ferrocorn_dirty_call_errors_total",
        "counter",
        "Dirty app calls that ended in an error (timeouts included).",
    );
    for a in &d.apps {
        let _ = writeln!(o, "ferrocorn_dirty_call_errors_total{{app=\"{}\"}} {}", escape(&a.path), a.errors);
    }
    header(o, "ferrocorn_dirty_call_timeouts_total", "counter", "Dirty app calls past dirty_timeout.");
    for a in &d.apps {
        let _ = writeln!(o, "ferrocorn_dirty_call_timeouts_total{{app=\"{}\"}} {}", escape(&a.path), a.timeouts);
    }
    header(o, "ferrocorn_dirty_calls_in_flight", "gauge", "Dirty app calls running now, by app.");
    for a in &d.apps {
        let _ = writeln!(o, "ferrocorn_dirty_calls_in_flight{{app=\"{}\"}} {}", escape(&a.path), a.in_flight);
    }
    header(
        o,
        "ferrocorn_dirty_call_duration_seconds",
        "histogram",
        "Dirty call duration in the dirty arbiter, from the request read to its answer's end.",
    );
    for a in &d.apps {
        let app = escape(&a.path);
        let (buckets, sum_us) = &a.latency;
        let mut cumulative = 0u64;
        for (i, bound) in BUCKET_BOUNDS_US.iter().enumerate() {
            cumulative = cumulative.wrapping_add(buckets[i]);
            let le = seconds(*bound);
            let _ =
                writeln!(o, "ferrocorn_dirty_call_duration_seconds_bucket{{app=\"{app}\",le=\"{le}\"}} {cumulative}");
        }
        let count: u64 = buckets.iter().sum();
        let _ = writeln!(o, "ferrocorn_dirty_call_duration_seconds_bucket{{app=\"{app}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(o, "ferrocorn_dirty_call_duration_seconds_sum{{app=\"{app}\"}} {}", seconds(*sum_us));
        let _ = writeln!(o, "ferrocorn_dirty_call_duration_seconds_count{{app=\"{app}\"}} {count}");
    }
    header(o, "ferrocorn_dirty_calls_queued", "gauge", "Dirty calls waiting for a free dirty worker thread.");
    let _ = writeln!(o, "ferrocorn_dirty_calls_queued {}", d.queued);
    header(o, "ferrocorn_dirty_workers", "gauge", "Dirty workers running.");
    let _ = writeln!(o, "ferrocorn_dirty_workers {}", d.workers.iter().filter(|w| !w.retiring).count());
    header(o, "ferrocorn_dirty_workers_target", "gauge", "The dirty pool size kept (dirty_workers, TTIN/TTOU).");
    let _ = writeln!(o, "ferrocorn_dirty_workers_target {}", d.target);
    header(
        o,
        "ferrocorn_dirty_worker_restarts_total",
        "counter",
        "Dirty workers that exited and were replaced, by cause.",
    );
    for (cause, n) in &d.restarts {
        let _ = writeln!(o, "ferrocorn_dirty_worker_restarts_total{{cause=\"{cause}\"}} {n}");
    }
    header(o, "ferrocorn_dirty_worker_spawns_total", "counter", "Dirty workers forked since the master started.");
    let _ = writeln!(o, "ferrocorn_dirty_worker_spawns_total {}", d.spawned);
    header(o, "ferrocorn_dirty_arbiter_restarts_total", "counter", "Dirty arbiters that died and were replaced.");
    let _ = writeln!(o, "ferrocorn_dirty_arbiter_restarts_total {}", d.arbiter_restarts);
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// Microseconds as seconds, in the shortest form that reads back exactly
/// ("0.005", "1", "2.5").
fn seconds(us: u64) -> String {
    let whole = us / 1_000_000;
    let frac = us % 1_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A label value: backslash, double quote and line feed escaped.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn worker(pid: i32, in_flight: u64, rss: Option<u64>, retiring: bool) -> WorkerView {
        WorkerView {
            pid,
            age: 1,
            uptime: Duration::from_secs(3),
            booted: true,
            aborted: false,
            retiring,
            silent: Duration::from_millis(250),
            requests: 0,
            in_flight,
            rss,
            sharing: rss.map(|r| crate::arbiter::memory::Sharing { pss: r / 2, uss: r / 4 }),
        }
    }

    fn value<'a>(page: &'a str, series: &str) -> &'a str {
        page.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {series} in\n{page}"))
    }

    #[test]
    fn seconds_read_back_exactly() {
        assert_eq!(seconds(5_000), "0.005");
        assert_eq!(seconds(1_000_000), "1");
        assert_eq!(seconds(2_500_000), "2.5");
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(12_345_678), "12.345678");
    }

    #[test]
    fn histogram_is_cumulative_and_counts_match() {
        let mut requests = RequestCounts { status: [0, 3, 1, 2, 1, 0], ..Default::default() };
        requests.buckets[0] = 4; // <= 5 ms
        requests.buckets[3] = 2; // <= 50 ms
        requests.buckets[11] = 1; // > 10 s
        requests.sum_us = 12_061_000;
        let mut stats = MasterStats::new();
        stats.count_restart(Cause::Crash);
        stats.count_restart(Cause::MaxRequests);
        stats.count_restart(Cause::MaxRequests);
        stats.spawned = 5;
        let workers = [worker(10, 2, Some(50 << 20), false), worker(11, 1, None, true)];
        let page = render_page(&Page {
            requests: &requests,
            stats: &stats,
            workers: &workers,
            target: 1,
            backlog: vec![("http://127.0.0.1:8000".into(), 3), ("unix:/tmp/a\"b".into(), 0)],
            dirty: None,
        });
        assert_eq!(value(&page, "ferrocorn_requests_total{code=\"2xx\"}"), "3");
        assert_eq!(value(&page, "ferrocorn_requests_total{code=\"5xx\"}"), "1");
        assert!(!page.contains("code=\"other\""));
        assert_eq!(value(&page, "ferrocorn_request_duration_seconds_bucket{le=\"0.005\"}"), "4");
        assert_eq!(value(&page, "ferrocorn_request_duration_seconds_bucket{le=\"0.025\"}"), "4");
        assert_eq!(value(&page, "ferrocorn_request_duration_seconds_bucket{le=\"0.05\"}"), "6");
        assert_eq!(value(&page, "ferrocorn_request_duration_seconds_bucket{le=\"10\"}"), "6");
        assert_eq!(value(&page, "ferrocorn_request_duration_seconds_bucket{le=\"+Inf\"}"), "7");
        assert_eq!(value(&page, "ferrocorn_request_duration_seconds_count"), "7");
        assert_eq!(value(&page, "ferrocorn_request_duration_seconds_sum"), "12.061");
        assert_eq!(value(&page, "ferrocorn_requests_in_flight"), "3");
        assert_eq!(value(&page, "ferrocorn_worker_restarts_total{cause=\"crash\"}"), "1");
        assert_eq!(value(&page, "ferrocorn_worker_restarts_total{cause=\"max_requests\"}"), "2");
        assert_eq!(value(&page, "ferrocorn_worker_restarts_total{cause=\"max_memory\"}"), "0");
        assert_eq!(value(&page, "ferrocorn_workers"), "1");
        assert_eq!(value(&page, "ferrocorn_workers_target"), "1");
        assert_eq!(value(&page, "ferrocorn_worker_spawns_total"), "5");
        assert_eq!(value(&page, "ferrocorn_worker_rss_bytes{pid=\"10\"}"), (50u64 << 20).to_string());
        assert!(!page.contains("ferrocorn_worker_rss_bytes{pid=\"11\"}"));
        assert_eq!(value(&page, "ferrocorn_worker_pss_bytes{pid=\"10\"}"), (25u64 << 20).to_string());
        assert_eq!(value(&page, "ferrocorn_worker_uss_bytes{pid=\"10\"}"), (50u64 << 18).to_string());
        assert!(!page.contains("ferrocorn_worker_pss_bytes{pid=\"11\"}"));
        assert_eq!(value(&page, "ferrocorn_worker_heartbeat_age_seconds{pid=\"11\"}"), "0.25");
        assert_eq!(value(&page, "ferrocorn_listen_backlog{listener=\"http://127.0.0.1:8000\"}"), "3");
        assert_eq!(value(&page, "ferrocorn_listen_backlog{listener=\"unix:/tmp/a\\\"b\"}"), "0");
    }

    #[test]
    fn every_family_has_help_and_type_once() {
        let requests = RequestCounts::default();
        let stats = MasterStats::new();
        let page = render_page(&Page {
            requests: &requests,
            stats: &stats,
            workers: &[],
            target: 0,
            backlog: vec![],
            dirty: None,
        });
        let mut families = std::collections::BTreeSet::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(families.insert(name.to_owned()), "{name} twice");
                assert!(page.contains(&format!("# HELP {name} ")));
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                let family = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
                assert!(families.contains(name) || families.contains(family), "{line} has no TYPE before it");
            }
        }
        assert!(page.ends_with('\n'));
        assert!(!page.contains("ferrocorn_listen_backlog"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}
