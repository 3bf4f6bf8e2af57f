//! Where a scenario result goes: `--out DIR` (`result.json`, `events.jsonl`) and
//! `--json` (stdout). Nothing here adds a clock or a host name: the files of two runs
//! with the same scenario, seed and command line are byte-identical.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use results::scenario::ScenarioResult;

/// The result, pretty JSON.
pub const RESULT_FILE: &str = "result.json";
/// The event log, one JSON object per line.
pub const EVENTS_FILE: &str = "events.jsonl";

/// The result as pretty JSON with a trailing newline.
pub fn to_json(result: &ScenarioResult) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(result).context("serializing the result")?;
    text.push('\n');
    Ok(text)
}

/// The event log: one [`results::scenario::Event`] per line.
pub fn to_jsonl(result: &ScenarioResult) -> anyhow::Result<String> {
    let mut text = String::new();
    for event in &result.events {
        text.push_str(&serde_json::to_string(event).context("serializing an event")?);
        text.push('\n');
    }
    Ok(text)
}

/// Writes `result.json` and `events.jsonl` into `dir` (created if missing). Each file
/// is written beside its target and renamed into place, so an interrupted write never
/// leaves half a file; both are written before either is renamed.
pub fn write_dir(dir: &Path, result: &ScenarioResult) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        (dir.join(RESULT_FILE), to_json(result)?),
        (dir.join(EVENTS_FILE), to_jsonl(result)?),
    ];
    let mut staged: Vec<(PathBuf, &PathBuf)> = Vec::new();
    for (path, text) in &files {
        let tmp = tmp_path(path);
        if let Err(e) = std::fs::write(&tmp, text) {
            for (t, _) in &staged {
                let _ = std::fs::remove_file(t);
            }
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("writing {}", tmp.display()));
        }
        staged.push((tmp, path));
    }
    for (tmp, path) in staged {
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    }
    Ok(())
}

/// Prints the result JSON on stdout.
pub fn print_json(result: &ScenarioResult) -> anyhow::Result<()> {
    let text = to_json(result)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the result to stdout")
}

/// `DIR/.NAME.tmp`: hidden, beside the target, on the same file system.
fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp"))
}
