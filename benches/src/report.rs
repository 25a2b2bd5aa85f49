//! The report's building blocks, rendered to docs/performance.md's Markdown: [`Table`] (every table
//! of every section is one), the machine facts every section lists, and how figures are written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::runner;
use crate::speed::Measure;

/// A Markdown table: a header row, then rows of as many cells. Every table of the report is one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// The column headings.
    pub header: Vec<String>,
    /// The rows, each with one cell per heading.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column headings.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; a table's rows have as many cells as it has headings.
    pub fn push<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let row: Vec<String> = cells.into_iter().map(Into::into).collect();
        debug_assert_eq!(row.len(), self.header.len(), "{row:?}");
        self.rows.push(row);
    }

    /// One Markdown line of cells (an empty cell is a single space wide).
    pub fn line(cells: &[String]) -> String {
        let mut line = String::from("|");
        for cell in cells {
            if cell.is_empty() {
                line.push_str(" |");
            } else {
                let _ = write!(line, " {cell} |");
            }
        }
        line
    }

    /// The table as Markdown lines, each ending with a newline.
    pub fn render(&self) -> String {
        let mut s = Self::line(&self.header);
        s.push('\n');
        s.push('|');
        s.push_str(&"---|".repeat(self.header.len()));
        s.push('\n');
        for row in &self.rows {
            s.push_str(&Self::line(row));
            s.push('\n');
        }
        s
    }
}

/// A section's `### Problems` list: `none` when there were none, else one bullet per problem (on one
/// line each).
pub fn problems(w: &mut String, problems: &[String], none: &str) {
    let _ = writeln!(w, "### Problems\n");
    if problems.is_empty() {
        let _ = writeln!(w, "{none}");
    }
    for p in problems {
        let _ = writeln!(w, "- {}", p.replace('\n', " "));
    }
}

/// The report as it is, or an empty text when it does not exist yet.
pub fn read(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A duration in the unit that keeps three significant digits readable.
pub fn format_duration(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else if s >= 1e-6 {
        format!("{:.3} µs", s * 1e6)
    } else {
        format!("{:.1} ns", s * 1e9)
    }
}

pub fn format_measure(m: &Measure) -> String {
    match m.items {
        Some(n) if n > 0 => format!(
            "{} ({:.0} images/s)",
            format_duration(m.median_s),
            n as f64 / m.median_s
        ),
        _ => format_duration(m.median_s),
    }
}

/// What the report says about the machine and the software.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Logical cores available to this process.
    pub cores: usize,
    /// Total memory from /proc/meminfo, when readable.
    pub memory: Option<String>,
    /// `rustc -V`.
    pub rustc: String,
    /// Python package versions (`None`: not importable).
    pub versions: BTreeMap<String, Option<String>>,
    /// The commit measured (`git describe`-like), when git answers.
    pub commit: Option<String>,
    /// 1-minute load average just before the first bench (afterwards it counts our own threads).
    pub load: Option<f64>,
    /// Seconds from the step's bench start to its peer's end (the benches built before).
    pub wall_s: Option<f64>,
    /// The UTC date of the run, `YYYY-MM-DD`.
    pub date: String,
}

impl Machine {
    pub fn detect(root: &Path, versions: &BTreeMap<String, Option<String>>) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let rustc = runner::output(Command::new(rustc).arg("-V"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        let commit = runner::output(
            Command::new("git")
                .current_dir(root)
                .args(["describe", "--always", "--dirty"]),
        )
        .ok()
        .map(|s| s.trim().to_string());
        Machine {
            cpu: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".to_string()),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory: mem_total(&meminfo),
            rustc,
            versions: versions.clone(),
            commit,
            load: None,
            wall_s: None,
            date: utc_date(SystemTime::now()),
        }
    }
}

/// The UTC calendar date of `t` as `YYYY-MM-DD` (days to civil date, after Howard Hinnant's
/// `civil_from_days`), so that xtask needs no date crate.
pub fn utc_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The first `model name` of /proc/cpuinfo.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

/// `MemTotal` of /proc/meminfo in GiB.
pub fn mem_total(meminfo: &str) -> Option<String> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(format!("{:.1} GiB", kib / (1024.0 * 1024.0)))
}

fn version_of(machine: &Machine, name: &str) -> String {
    match machine.versions.get(name) {
        Some(Some(v)) => v.clone(),
        _ => "not installed".to_string(),
    }
}

/// The facts of the machine and the software as a Markdown list (one line each, ending with a
/// newline), shared by every section.
pub fn machine_lines(machine: &Machine) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "- CPU: {}, {} logical cores", machine.cpu, machine.cores);
    if let Some(mem) = &machine.memory {
        let _ = writeln!(w, "- Memory: {mem}");
    }
    let _ = writeln!(w, "- {}", machine.rustc);
    let _ = writeln!(
        w,
        "- Python {}: torch {}, torchvision {}, numpy {}, Pillow {}, fastai {}",
        version_of(machine, "python"),
        version_of(machine, "torch"),
        version_of(machine, "torchvision"),
        version_of(machine, "numpy"),
        version_of(machine, "Pillow"),
        version_of(machine, "fastai"),
    );
    if let Some(commit) = &machine.commit {
        let _ = writeln!(w, "- Commit: `{commit}`");
    }
    if let Some(load) = machine.load {
        let _ = writeln!(
            w,
            "- Load average (1 min) before the step: {load:.2} (other work on the machine slows \
             every figure; the step then loads the cores itself)"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_figures_show_items_per_second() {
        let m = Measure {
            median_s: 0.25,
            items: Some(100),
        };
        assert_eq!(format_measure(&m), "250.000 ms (400 images/s)");
        assert_eq!(format_duration(1.5), "1.500 s");
        assert_eq!(format_duration(2.5e-6), "2.500 µs");
        assert_eq!(format_duration(7e-9), "7.0 ns");
    }

    #[test]
    fn tables_render_as_markdown_with_single_space_empty_cells() {
        let mut table = Table::new(&["", "a", "b"]);
        table.push(["x", "1", ""]);
        table.push(["y", "", "2"]);
        assert_eq!(
            table.render(),
            "| | a | b |\n|---|---|---|\n| x | 1 | |\n| y | | 2 |\n"
        );
    }

    #[test]
    fn machine_facts_are_read_from_proc_files() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n\nprocessor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\n";
        assert_eq!(
            cpu_model(cpuinfo).as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
        let meminfo = "MemTotal:       25165824 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(meminfo).as_deref(), Some("24.0 GiB"));
        assert_eq!(mem_total(""), None);
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        use std::time::Duration;
        let at = |secs: u64| utc_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01");
        assert_eq!(at(951_782_400), "2000-02-29");
        assert_eq!(at(1_778_630_399), "2026-05-12");
        assert_eq!(at(1_778_630_400), "2026-05-13");
    }
}
