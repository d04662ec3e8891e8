//! `cargo xtask bench NAME`: measurements printed and recorded in
//! docs/benchmarks.md, each beside a baseline measured in the same run.

mod datapath;
mod failover;
mod switchover;

use std::{fs, path::Path, time::Duration};

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("datapath") => datapath::run(),
        Some("switchover") => switchover::run(),
        Some("failover") => failover::run(),
        other => bail!("unknown benchmark {other:?}; known: datapath, switchover, failover"),
    }
}

/// The median of `samples` (sorted in place).
fn median(samples: &mut [Duration]) -> Duration {
    percentile(samples, 50.0)
}

/// The `p`-th percentile of `samples` (sorted in place), nearest rank.
fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Replaces this benchmark's section of docs/benchmarks.md (between its
/// markers), keeping the other benchmarks' sections.
fn record(name: &str, body: &str) -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md");
    let begin = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->");
    let section = format!("{begin}\n## {name}\n\n{body}{end}\n");
    let current = fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) => format!(
            "{}{section}{}",
            &current[..b],
            current[e + end.len()..].trim_start_matches('\n')
        ),
        _ => format!("{current}\n{section}"),
    };
    fs::write(&path, updated).with_context(|| format!("write {}", path.display()))?;
    println!("recorded in {}", path.display());
    Ok(())
}
