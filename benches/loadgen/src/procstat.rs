//! Process and host accounting read from /proc: CPU (utime + stime), RSS, host busy time.

use std::fs;
use std::time::Instant;

/// Clock ticks per second for `/proc/<pid>/stat` (USER_HZ; 100 on every Linux/x86_64 and aarch64
/// build in practice; `getconf CLK_TCK` confirms it on this machine).
const CLK_TCK: f64 = 100.0;

/// CPU seconds (user + system) of a process, and of its waited-for children.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub own_s: f64,
    pub children_s: f64,
}

/// Reads utime + stime (and cutime + cstime) of `/proc/<who>/stat`; `who` is a pid or "self".
pub fn cpu(who: &str) -> Option<Cpu> {
    let text = fs::read_to_string(format!("/proc/{who}/stat")).ok()?;
    // The command name may contain spaces and parentheses: the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14 → index 11.
    let n = |i: usize| -> Option<f64> { f.get(i)?.parse::<f64>().ok() };
    Some(Cpu {
        own_s: (n(11)? + n(12)?) / CLK_TCK,
        children_s: (n(13)? + n(14)?) / CLK_TCK,
    })
}

/// VmRSS of a process in bytes.
pub fn rss_bytes(who: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Aggregate host CPU jiffies: (busy, total), from the first line of /proc/stat.
pub fn host_jiffies() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return None;
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4];
    Some((total - idle, total))
}

pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn ncpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// One snapshot at a phase boundary.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: Instant,
    pub server_cpu_s: Option<f64>,
    pub server_rss: Option<u64>,
    pub self_cpu_s: f64,
    pub host: Option<(u64, u64)>,
}

impl Sample {
    /// `server`: the server's pid, if known. `self` CPU includes waited-for children
    /// (shard processes of this load generator).
    pub fn take(server: Option<u32>) -> Sample {
        let at = Instant::now();
        let (server_cpu_s, server_rss) = match server {
            Some(pid) => {
                let p = pid.to_string();
                (cpu(&p).map(|c| c.own_s), rss_bytes(&p))
            }
            None => (None, None),
        };
        let me = cpu("self").unwrap_or_default();
        Sample {
            at,
            server_cpu_s,
            server_rss,
            self_cpu_s: me.own_s + me.children_s,
            host: host_jiffies(),
        }
    }
}

/// What happened between two samples.
#[derive(Clone, Copy, Debug)]
pub struct Delta {
    pub secs: f64,
    pub server_cpu_s: Option<f64>,
    pub self_cpu_s: f64,
    /// Busy share of all cores of the host over the interval, in % of one core.
    pub host_busy_core_pct: Option<f64>,
}

impl Delta {
    pub fn between(a: &Sample, b: &Sample) -> Delta {
        let secs = b.at.duration_since(a.at).as_secs_f64();
        let server_cpu_s = match (a.server_cpu_s, b.server_cpu_s) {
            (Some(x), Some(y)) => Some(y - x),
            _ => None,
        };
        let host_busy_core_pct = match (a.host, b.host) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                Some((b1 - b0) as f64 / (t1 - t0) as f64 * 100.0 * ncpus() as f64)
            }
            _ => None,
        };
        Delta {
            secs,
            server_cpu_s,
            self_cpu_s: b.self_cpu_s - a.self_cpu_s,
            host_busy_core_pct,
        }
    }

    /// Server CPU in % of one core over the interval.
    pub fn server_pct(&self) -> Option<f64> {
        self.server_cpu_s.map(|c| c / self.secs * 100.0)
    }

    pub fn self_pct(&self) -> f64 {
        self.self_cpu_s / self.secs * 100.0
    }

    /// Host busy time not accounted for by the server or this load generator (other tenants).
    pub fn other_pct(&self) -> Option<f64> {
        let host = self.host_busy_core_pct?;
        Some((host - self.server_pct().unwrap_or(0.0) - self.self_pct()).max(0.0))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "secs": round3(self.secs),
            "server_cpu_s": self.server_cpu_s.map(round3),
            "server_cpu_pct": self.server_pct().map(round3),
            "loadgen_cpu_s": round3(self.self_cpu_s),
            "loadgen_cpu_pct": round3(self.self_pct()),
            "host_busy_core_pct": self.host_busy_core_pct.map(round3),
            "other_busy_core_pct": self.other_pct().map(round3),
        })
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
