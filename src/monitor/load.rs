//! Finding and reading monitor files and the scripts they name; duplicate ids across files.

use super::parse::parse_monitor;
use super::{Monitor, MonitorError};
use crate::script::ScriptEngine;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Where scripts and policies are looked up while loading.
#[derive(Debug, Clone)]
pub struct LoadContext<'a> {
    /// the scripts directory (`--scripts`)
    pub scripts_dir: &'a Path,
    /// known policy ids; `default` is always known
    pub policies: &'a [String],
    /// the engine that compiles rules and scripts
    pub engine: &'a ScriptEngine,
    /// known `[[datasources]]` ids; `None` when no config was given (then a monitor's
    /// `datasource` is not checked against it)
    pub datasources: Option<&'a [String]>,
}

/// The outcome of loading: the valid monitors and every error.
#[derive(Debug, Default)]
pub struct Loaded {
    /// valid monitors, sorted by id
    pub monitors: Vec<Monitor>,
    /// errors, by file then line
    pub errors: Vec<MonitorError>,
    /// files read
    pub files: usize,
}

/// Lists the `*.toml` files of the given directories and files (directories not recursed
/// beyond their own entries), sorted.
pub fn monitor_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, MonitorError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| MonitorError {
                file: p.clone(),
                line: 0,
                field: String::new(),
                message: format!("cannot read directory: {e}"),
            })?;
            for entry in rd.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|x| x == "toml") && path.is_file() {
                    files.push(path);
                }
            }
        } else if p.exists() {
            files.push(p.clone());
        } else {
            return Err(MonitorError {
                file: p.clone(),
                line: 0,
                field: String::new(),
                message: "no such file or directory".into(),
            });
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// Loads and validates monitor files; duplicate ids are errors on the later file.
pub fn load(paths: &[PathBuf], ctx: &LoadContext) -> Loaded {
    let mut loaded = Loaded::default();
    let files = match monitor_files(paths) {
        Ok(f) => f,
        Err(e) => {
            loaded.errors.push(e);
            return loaded;
        }
    };
    let mut seen: HashSet<String> = HashSet::new();
    for file in files {
        loaded.files += 1;
        match load_file(&file, ctx) {
            Ok(m) => {
                if !seen.insert(m.id.clone()) {
                    loaded.errors.push(MonitorError {
                        file: file.clone(),
                        line: 1,
                        field: "id".into(),
                        message: format!(
                            "id = {:?}: already used by another monitor; ids must be unique",
                            m.id
                        ),
                    });
                } else {
                    loaded.monitors.push(m);
                }
            }
            Err(errs) => loaded.errors.extend(errs),
        }
    }
    super::composite::check_refs(&mut loaded.monitors, &mut loaded.errors);
    // The composites' errors came last: back in file order (stable, so a file's own order stays).
    loaded.errors.sort_by(|a, b| a.file.cmp(&b.file));
    loaded.monitors.sort_by(|a, b| a.id.cmp(&b.id));
    loaded
}

/// Loads one monitor file, returning every error found in it.
pub fn load_file(file: &Path, ctx: &LoadContext) -> Result<Monitor, Vec<MonitorError>> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        vec![MonitorError {
            file: file.to_path_buf(),
            line: 0,
            field: String::new(),
            message: format!("cannot read file: {e}"),
        }]
    })?;
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_monitor(&text, file, &stem, ctx)
}

/// Finds a script in the scripts directories: `--scripts`, else next to the monitor file, else
/// `../scripts` beside the monitors directory.
///
/// A monitor file must not make tocsin open files elsewhere (its compile errors would show
/// their text through the API), so an absolute path is refused, and so is a name that
/// resolves out of its directory through `..` or a symlink; the error never shows the file.
pub(super) fn load_script(
    name: &str,
    monitor_file: &Path,
    ctx: &LoadContext,
) -> Result<(PathBuf, String), String> {
    let p = Path::new(name);
    if p.has_root() || p.is_absolute() {
        return Err(format!(
            "an absolute path is not allowed: the script must be inside the scripts directory ({}); give its name relative to it",
            ctx.scripts_dir.display()
        ));
    }
    let mut dirs = vec![ctx.scripts_dir.to_path_buf()];
    if let Some(dir) = monitor_file.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        dirs.push(dir.to_path_buf());
        dirs.push(dir.join("..").join("scripts"));
    }
    let mut outside = false;
    for dir in &dirs {
        let candidate = dir.join(p);
        if !candidate.is_file() {
            continue;
        }
        let (Ok(root), Ok(real)) = (dir.canonicalize(), candidate.canonicalize()) else {
            continue;
        };
        if !real.starts_with(&root) {
            outside = true;
            continue;
        }
        return std::fs::read_to_string(&real)
            .map(|s| (candidate.clone(), s))
            .map_err(|e| format!("cannot read {}: {e}", candidate.display()));
    }
    if outside {
        return Err(format!(
            "the script must be inside the scripts directory ({}): this name leads out of it (through .. or a symlink)",
            ctx.scripts_dir.display()
        ));
    }
    Err(format!(
        "script not found; looked in {}",
        dirs.iter()
            .map(|d| d.join(p).display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}
