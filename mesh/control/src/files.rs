//! Reading the watched configuration paths: files, and directories of `*.yaml` /
//! `*.yml` files (recursive, sorted, hidden entries skipped), as `meshrig validate`
//! reads them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::wire::Source;

/// Most files one set may have.
pub const MAX_FILES: usize = 10_000;
/// Largest file read.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Deepest directory nesting walked.
const MAX_DEPTH: usize = 16;

/// Reads every YAML file under `paths`, in order, each once. The error says which
/// path and why.
pub fn read_sources(paths: &[PathBuf]) -> Result<Vec<Source>, String> {
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let found = if meta.is_dir() {
            let mut found = Vec::new();
            walk(path, 0, &mut found)?;
            if found.is_empty() {
                return Err(format!("{}: no *.yaml or *.yml files", path.display()));
            }
            found
        } else {
            vec![path.clone()]
        };
        for file in found {
            let identity = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
            if seen.insert(identity) {
                files.push(file);
            }
        }
        if files.len() > MAX_FILES {
            return Err(format!("more than {MAX_FILES} configuration files"));
        }
    }
    files.iter().map(|f| read(f)).collect()
}

fn read(file: &Path) -> Result<Source, String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{}: larger than {MAX_FILE_BYTES} bytes",
            file.display()
        ));
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(Source::new(file.display().to_string(), text))
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{}: nested more than {MAX_DEPTH} directories deep",
            dir.display()
        ));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        paths.push(entry.path());
    }
    paths.sort();
    for path in paths {
        if path.is_dir() {
            walk(&path, depth + 1, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
        if out.len() > MAX_FILES {
            return Err(format!("more than {MAX_FILES} configuration files"));
        }
    }
    Ok(())
}
