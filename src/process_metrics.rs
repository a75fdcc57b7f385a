//! The standard Prometheus process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_start_time_seconds`),
//! read from `/proc/self` on Linux at each gauge refresh, as the client
//! libraries' process collector exports them. Elsewhere none are set.

use metrics::gauge;

/// Kernel clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`,
/// 100 on every Linux architecture sagaflow is built for).
const TICKS_PER_SECOND: f64 = 100.0;

/// What one read of `/proc/self` found.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub open_fds: f64,
    pub max_fds: f64,
    pub start_time_seconds: f64,
}

/// Reads the process's figures; `None` where `/proc` is not there.
pub fn sample() -> Option<ProcessSample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may
    // hold spaces: state is field 3, utime 14, stime 15, starttime 22,
    // vsize 23, rss 24 (counted from 1).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())?;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    Some(ProcessSample {
        cpu_seconds: (num(14)? + num(15)?) / TICKS_PER_SECOND,
        resident_bytes: rss_kb * 1024.0,
        virtual_bytes: num(23)?,
        open_fds,
        max_fds,
        start_time_seconds: boot + num(22)? / TICKS_PER_SECOND,
    })
}

/// Sets the process gauges from a fresh sample.
pub fn refresh() {
    let Some(s) = sample() else {
        return;
    };
    // A counter in Prometheus terms; set as an absolute value, which the
    // exporter keeps as given.
    gauge!("process_cpu_seconds_total").set(s.cpu_seconds);
    gauge!("process_resident_memory_bytes").set(s.resident_bytes);
    gauge!("process_virtual_memory_bytes").set(s.virtual_bytes);
    gauge!("process_open_fds").set(s.open_fds);
    gauge!("process_max_fds").set(s.max_fds);
    gauge!("process_start_time_seconds").set(s.start_time_seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_sample_reads_this_process() {
        let s = sample().expect("/proc/self is readable on Linux");
        assert!(s.resident_bytes > 1e6, "{s:?}");
        assert!(s.virtual_bytes >= s.resident_bytes, "{s:?}");
        assert!(s.open_fds >= 3.0 && s.max_fds >= s.open_fds, "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        assert!(
            s.start_time_seconds <= now + 1.0 && s.start_time_seconds > now - 86_400.0,
            "{s:?}"
        );
        assert!(s.cpu_seconds >= 0.0);
    }
}
