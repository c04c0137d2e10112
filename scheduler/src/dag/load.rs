//! Loading DAG files: YAML in, a validated [`Dag`] or every error found out,
//! each with its file, line and column.
//!
//! The work is split by role: `yaml` parses text into nodes, `node` gives
//! typed access to them, `decode` maps DAG and task keys onto the model,
//! `schedule` parses schedules, durations and dates, and `graph` checks task
//! dependencies.
//!
//! NOTE: YAML anchors, aliases and tags are refused, and a duplicate key stops
//! the parse, so such a file reports that one error only.

mod decode;
mod graph;
mod node;
pub mod schedule;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::model::Dag;

/// One problem found in a DAG file, and where it is.
///
/// Displays as `file:line:column: error: message (hint: ...)`, the format
/// compilers use, so editors and `grep` can jump to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagError {
    /// The file as it was named to the loader, e.g. `dags/etl.yaml`.
    pub file: PathBuf,
    /// 1-based line of the node at fault.
    pub line: usize,
    /// 1-based column of the node at fault.
    pub column: usize,
    /// What is wrong, e.g. ``unknown key `retrys` in task `a` ``.
    pub message: String,
    /// How it might be fixed, e.g. ``did you mean `retries`?``.
    pub hint: Option<String>,
}

impl fmt::Display for DagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let DagError {
            file,
            line,
            column,
            message,
            hint,
        } = self;
        write!(f, "{}:{line}:{column}: error: {message}", file.display())?;
        if let Some(hint) = hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for DagError {}

/// The job kinds a worker can run, as far as DAG validation needs to know.
///
/// The worker's job registry implements it; this crate knows no kind itself.
pub trait KindCatalog {
    /// Whether tasks of this kind can run, e.g. `command`.
    fn is_known(&self, kind: &str) -> bool;

    /// Every known kind, for hints in error messages.
    fn kinds(&self) -> Vec<String>;

    /// Problems with a task's `params` for a known kind, one message each;
    /// empty when the params are valid. `params` is always a JSON object.
    fn check_params(&self, kind: &str, params: &serde_json::Value) -> Vec<String>;
}

/// A catalog that accepts every kind with any params, for tests and for tools
/// that check DAG files without a worker's registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyKind;

impl KindCatalog for AnyKind {
    fn is_known(&self, _kind: &str) -> bool {
        true
    }

    fn kinds(&self) -> Vec<String> {
        Vec::new()
    }

    fn check_params(&self, _kind: &str, _params: &serde_json::Value) -> Vec<String> {
        Vec::new()
    }
}

/// A DAG file that loaded without error.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedDag {
    /// Where the file is, e.g. `dags/etl.yaml`.
    pub path: PathBuf,
    /// The file's text, kept to store each DAG version as written.
    pub source: String,
    /// SHA-256 of `source`, lowercase hex; a new hash means a new version.
    pub hash: String,
    /// The validated DAG.
    pub dag: Dag,
}

/// A DAG file that did not load, with every error found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileErrors {
    /// Where the file is.
    pub path: PathBuf,
    /// The errors in file order; never empty.
    pub errors: Vec<DagError>,
}

/// What loading a DAG folder gave: the DAGs that are valid and the files that
/// are not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FolderLoad {
    /// Valid DAGs, in file name order.
    pub dags: Vec<LoadedDag>,
    /// Files with errors, in file name order.
    pub errors: Vec<FileErrors>,
}

/// Parses and validates one DAG file's text. `file` only names the file in
/// errors.
///
/// Fails with every error found, in file order: YAML syntax, unknown keys,
/// wrong types, invalid schedules, unknown kinds, bad dependencies, cycles.
pub fn parse_dag(file: &Path, source: &str, kinds: &dyn KindCatalog) -> Result<Dag, Vec<DagError>> {
    let parsed = decode::parse(file, source, kinds);
    match parsed.dag {
        Some(dag) if parsed.errors.is_empty() => Ok(dag),
        _ => Err(parsed.errors),
    }
}

/// Reads and validates one DAG file.
///
/// Fails when the file cannot be read, is not UTF-8, or is not a valid DAG.
pub fn load_dag_file(path: &Path, kinds: &dyn KindCatalog) -> Result<LoadedDag, FileErrors> {
    let (source, parsed) = read_and_parse(path, kinds);
    match parsed.dag {
        Some(dag) if parsed.errors.is_empty() => Ok(LoadedDag {
            path: path.to_path_buf(),
            hash: sha256_hex(&source),
            source,
            dag,
        }),
        _ => Err(FileErrors {
            path: path.to_path_buf(),
            errors: parsed.errors,
        }),
    }
}

/// Loads every `*.yaml` and `*.yml` file directly in `dir` (not in
/// subfolders; hidden files are skipped), in file name order.
///
/// A DAG id belongs to the first file that declares it, even if that file has
/// other errors; a later file declaring it again is reported at its `dag_id`.
///
/// Fails only when the folder itself cannot be listed; a file that cannot be
/// read is reported among the errors.
pub fn load_dag_folder(dir: &Path, kinds: &dyn KindCatalog) -> io::Result<FolderLoad> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && !hidden && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();

    let mut load = FolderLoad::default();
    let mut owners: HashMap<String, PathBuf> = HashMap::new();
    for path in paths {
        let (source, mut parsed) = read_and_parse(&path, kinds);

        if let Some((dag_id, pos)) = &parsed.dag_id {
            if let Some(owner) = owners.get(dag_id) {
                parsed.errors.insert(
                    0,
                    DagError {
                        file: path.clone(),
                        line: pos.line,
                        column: pos.column,
                        message: format!(
                            "DAG id `{dag_id}` is already declared in {}",
                            owner.display()
                        ),
                        hint: Some("DAG ids must be unique across the DAG folder".to_owned()),
                    },
                );
                parsed.errors.sort_by_key(|e| (e.line, e.column));
            } else {
                owners.insert(dag_id.clone(), path.clone());
            }
        }

        match parsed.dag {
            Some(dag) if parsed.errors.is_empty() => {
                load.dags.push(LoadedDag {
                    hash: sha256_hex(&source),
                    path,
                    source,
                    dag,
                });
            }
            _ => load.errors.push(FileErrors {
                path,
                errors: parsed.errors,
            }),
        }
    }
    Ok(load)
}

/// Reads a file and parses it; a read failure becomes an error at 1:1.
fn read_and_parse(path: &Path, kinds: &dyn KindCatalog) -> (String, decode::Parsed) {
    match fs::read(path).map(String::from_utf8) {
        Ok(Ok(source)) => {
            let parsed = decode::parse(path, &source, kinds);
            (source, parsed)
        }
        Ok(Err(_)) => (
            String::new(),
            unreadable(path, "file is not valid UTF-8".to_owned()),
        ),
        Err(err) => (
            String::new(),
            unreadable(path, format!("cannot read file: {err}")),
        ),
    }
}

fn unreadable(path: &Path, message: String) -> decode::Parsed {
    decode::Parsed {
        dag: None,
        dag_id: None,
        errors: vec![DagError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message,
            hint: None,
        }],
    }
}

fn sha256_hex(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}
