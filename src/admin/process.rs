//! The process figures of `/metrics` and `/status.json`, with the names and units of the Prometheus
//! client libraries' process collector (`process_start_time_seconds`, `process_resident_memory_bytes`,
//! `process_cpu_seconds_total`, `process_open_fds`, `process_max_fds`), read from Linux's `/proc/self`
//! at scrape time as they read it (proc(5)).
//!
//! The parsing is pure (text in, numbers out) and tested on sample text; [`read`] only gathers the files.
//! Elsewhere than Linux, or when a file cannot be read, a figure is absent rather than made up.

/// What `/proc/self` says about this process; each figure absent when it could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_s: Option<f64>,
    /// Resident set size in bytes.
    pub resident_bytes: Option<u64>,
    /// User and system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// File descriptors open now.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors (`RLIMIT_NOFILE`); absent when unlimited.
    pub max_fds: Option<u64>,
}

/// The fields of `/proc/self/stat` used here, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 14, `utime`: user time in clock ticks.
    pub utime_ticks: u64,
    /// Field 15, `stime`: system time in clock ticks.
    pub stime_ticks: u64,
    /// Field 22, `starttime`: clock ticks after boot at which the process started.
    pub start_ticks: u64,
    /// Field 24, `rss`: resident pages.
    pub rss_pages: u64,
}

/// Parses `/proc/self/stat`. The command name (field 2) is in parentheses and may itself hold spaces
/// and parentheses, so the fields are counted from the *last* `)`, as procps does.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // After the name: field 3 (`state`) is index 0, so field n is index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime_ticks: field(14)?,
        stime_ticks: field(15)?,
        start_ticks: field(22)?,
        rss_pages: field(24)?,
    })
}

/// The boot time in seconds since the Unix epoch: the `btime` line of `/proc/stat`.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("btime")?.trim().parse().ok())
}

/// The soft limit of the `Max open files` line of `/proc/self/limits`; `None` when it is `unlimited`
/// or missing.
pub fn parse_max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// The figures from the texts of `/proc/self/stat` and `/proc/stat`, the soft fd limit and the open fd
/// count, given the clock tick rate and the page size.
pub fn figures(
    stat: Option<&str>,
    proc_stat: Option<&str>,
    max_fds: Option<u64>,
    open_fds: Option<u64>,
    (ticks_per_s, page_size): (u64, u64),
) -> Figures {
    let stat = stat.and_then(parse_stat);
    let ticks = ticks_per_s.max(1) as f64;
    let boot = proc_stat.and_then(parse_boot_time);
    Figures {
        start_time_s: stat.zip(boot).map(|(s, boot)| boot as f64 + s.start_ticks as f64 / ticks),
        resident_bytes: stat.map(|s| s.rss_pages.saturating_mul(page_size)),
        cpu_seconds: stat.map(|s| (s.utime_ticks + s.stime_ticks) as f64 / ticks),
        open_fds,
        max_fds,
    }
}

/// Reads the figures of this process now: a handful of small procfs reads, no allocation beyond them.
pub fn read() -> Figures {
    if !cfg!(target_os = "linux") {
        return Figures::default();
    }
    let file = |p: &str| std::fs::read_to_string(p).ok();
    let limits = file("/proc/self/limits");
    let open_fds = std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64);
    figures(
        file("/proc/self/stat").as_deref(),
        file("/proc/stat").as_deref(),
        limits.as_deref().and_then(parse_max_open_files),
        open_fds,
        (rustix::param::clock_ticks_per_second(), rustix::param::page_size() as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `/proc/self/stat` line, with a command name that holds a space and a parenthesis.
    const STAT: &str = "4242 (tether (x) y) S 1 4242 4242 0 -1 4194560 2811 0 0 0 150 25 0 0 20 0 9 0 \
                        123400 1103024128 3000 18446744073709551615 1 1 0 0 0 0 0 4096 17663 0 0 0 17 1 0 0 \
                        0 0 0 0 0 0 0 0 0 0 0\n";

    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units     \n\
                          Max cpu time              unlimited            unlimited            seconds   \n\
                          Max open files            1024                 524288               files     \n";

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let s = parse_stat(STAT).expect("stat");
        assert_eq!(s, Stat { utime_ticks: 150, stime_ticks: 25, start_ticks: 123_400, rss_pages: 3000 });
        assert_eq!(parse_stat("4242 (cut"), None);
        assert_eq!(parse_stat("4242 (short) S 1 2"), None);
    }

    #[test]
    fn limits_give_the_soft_limit_unless_unlimited() {
        assert_eq!(parse_max_open_files(LIMITS), Some(1024));
        assert_eq!(
            parse_max_open_files("Max open files            unlimited            unlimited  files"),
            None
        );
        assert_eq!(parse_max_open_files("Max processes 10 10 processes"), None);
    }

    #[test]
    fn figures_are_in_base_units() {
        let proc_stat = "cpu  1 2 3\nbtime 1764720000\nprocesses 9\n";
        assert_eq!(parse_boot_time(proc_stat), Some(1_764_720_000));
        let f = figures(Some(STAT), Some(proc_stat), Some(1024), Some(12), (100, 4096));
        assert_eq!(f.start_time_s, Some(1_764_720_000.0 + 1234.0));
        assert_eq!(f.resident_bytes, Some(3000 * 4096));
        assert_eq!(f.cpu_seconds, Some(1.75));
        assert_eq!((f.open_fds, f.max_fds), (Some(12), Some(1024)));
        assert_eq!(figures(None, Some(proc_stat), None, None, (100, 4096)), Figures::default());
    }

    #[test]
    fn this_process_is_read() {
        let f = read();
        if cfg!(target_os = "linux") {
            assert!(f.resident_bytes.is_some_and(|b| b > 0) && f.open_fds.is_some_and(|n| n > 0), "{f:?}");
            assert!(f.start_time_s.is_some_and(|s| s > 1.6e9), "{f:?}");
        }
    }
}
