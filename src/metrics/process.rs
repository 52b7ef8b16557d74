//! The standard `process_*` series that Prometheus' own clients export (CPU seconds, resident
//! and virtual memory, open and allowed file descriptors, threads, start time), read from
//! `/proc/self` at each scrape. prometheus-client has no process collector, and the crates that
//! do bring a `/proc` parser far larger than these few lines; off Linux the series are left out.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Linux reports CPU times and the start time in clock ticks of USER_HZ, which is 100 on every
/// architecture it exposes to user space.
const USER_HZ: f64 = 100.0;

#[derive(Debug, Default)]
pub(super) struct ProcessCollector;

impl ProcessCollector {
    pub(super) fn new() -> Self {
        ProcessCollector
    }
}

/// One reading of `/proc/self`.
#[derive(Debug, Default, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    start_time_seconds: Option<f64>,
    threads: Option<i64>,
    resident_bytes: Option<i64>,
    virtual_bytes: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(r) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(r.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds.",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, Option<Unit>, Option<f64>); 6] = [
            (
                "process_start_time",
                "Start time of the process since unix epoch in seconds.",
                Some(Unit::Seconds),
                r.start_time_seconds,
            ),
            (
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(Unit::Bytes),
                r.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Some(Unit::Bytes),
                r.virtual_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                r.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                r.max_fds.map(|v| v as f64),
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                None,
                r.threads.map(|v| v as f64),
            ),
        ];
        for (name, help, unit, value) in gauges {
            let Some(v) = value else { continue };
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?)?;
        }
        Ok(())
    }
}

fn read() -> Option<Reading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_boot_time(&s));
    let mut r = parse(&stat, &status, &limits, boot_time)?;
    r.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as i64);
    Some(r)
}

/// Pure: a reading from the text of `/proc/self/stat`, `/proc/self/status` and
/// `/proc/self/limits`, and the boot time from `/proc/stat`.
fn parse(stat: &str, status: &str, limits: &str, boot_time: Option<f64>) -> Option<Reading> {
    // The command name (field 2) is in parentheses and may hold spaces: count after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields are numbered from 1 in proc(5); `rest` starts at field 3 (state).
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let cpu_seconds = (field(14)? + field(15)?) / USER_HZ;
    let start_time_seconds = boot_time
        .zip(field(22))
        .map(|(boot, ticks)| boot + ticks / USER_HZ);
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<i64>().ok())
            .map(|v| v * 1024)
    };
    let max_fds = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<i64>().ok());
    Some(Reading {
        cpu_seconds,
        start_time_seconds,
        threads: field(20).map(|v| v as i64),
        resident_bytes: kb("VmRSS:"),
        virtual_bytes: kb("VmSize:"),
        open_fds: None,
        max_fds,
    })
}

fn parse_boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (back space) S 1 4242 4242 0 -1 4194560 3000 0 0 0 250 50 0 0 20 0 9 0 12345 734003200 5000 18446744073709551615 1 1 0 0 0 0 0 4096 17415 0 0 0 17 1 0 0 0 0 0";
    const STATUS: &str =
        "Name:\tbackspace\nVmSize:\t  716800 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
    const LIMITS: &str = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";

    #[test]
    fn proc_files_give_the_standard_process_series() {
        let r = parse(STAT, STATUS, LIMITS, Some(1_700_000_000.0)).unwrap();
        assert_eq!(
            r,
            Reading {
                cpu_seconds: 3.0,
                start_time_seconds: Some(1_700_000_123.45),
                threads: Some(9),
                resident_bytes: Some(20480 * 1024),
                virtual_bytes: Some(716800 * 1024),
                open_fds: None,
                max_fds: Some(1024),
            }
        );
        assert_eq!(parse_boot_time("cpu 1 2\nbtime 1700000000\n"), Some(1.7e9));
    }

    #[test]
    fn this_process_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let r = read().expect("a reading of /proc/self");
            assert!(r.resident_bytes.unwrap_or(0) > 0 && r.open_fds.unwrap_or(0) > 0);
        }
    }
}
