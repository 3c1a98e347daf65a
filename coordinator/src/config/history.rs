//! Where the scan history is, how findings are judged, and `--export FORMAT=FILE`:
//! read and checked before anything runs.

use std::path::{Path, PathBuf};

use scanfleet_common::config::Sources;
use scanfleet_common::config::args::RedisArg;

use crate::cli::{HistoryStoreArgs, JudgeArgs};
use crate::error::CliError;
use crate::export::Format;
use crate::findings::{Judge, RuleSet, Suppressions};
use crate::history::Location;
use crate::report::Output;

/// The default state directory: `$XDG_STATE_HOME/scanfleet`, else
/// `$HOME/.local/state/scanfleet`, else `/var/lib/scanfleet` (a service account
/// without a home, as systemd units often run).
pub fn default_state_dir(xdg_state_home: Option<&str>, home: Option<&str>) -> PathBuf {
    match (
        xdg_state_home.filter(|s| !s.is_empty()),
        home.filter(|s| !s.is_empty()),
    ) {
        (Some(x), _) => Path::new(x).join("scanfleet"),
        (None, Some(h)) => Path::new(h).join(".local/state/scanfleet"),
        (None, None) => PathBuf::from("/var/lib/scanfleet"),
    }
}

/// The state directory: `--state-dir`, `SCANFLEET_STATE_DIR`, or the default.
///
/// # Errors
/// [`CliError::Input`] when the path names something that is not a directory.
pub fn state_dir(args: &HistoryStoreArgs) -> Result<PathBuf, CliError> {
    let (dir, from) = match (&args.state_dir, std::env::var_os("SCANFLEET_STATE_DIR")) {
        (Some(d), _) => (d.clone(), "--state-dir".to_string()),
        (None, Some(d)) if !d.is_empty() => (PathBuf::from(d), "SCANFLEET_STATE_DIR".to_string()),
        _ => (
            default_state_dir(
                std::env::var("XDG_STATE_HOME").ok().as_deref(),
                std::env::var("HOME").ok().as_deref(),
            ),
            "the default state directory".to_string(),
        ),
    };
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::Input(format!(
            "{from} {}: is not a directory",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Where a command reads the history: Redis when `--redis` (or
/// `SCANFLEET_REDIS`, or the config file's `fleet.redis`) is given, else the
/// state directory.
///
/// # Errors
/// [`CliError::Input`] for a bad URL or state directory.
pub fn location(
    store: &HistoryStoreArgs,
    redis: &RedisArg,
    src: &Sources,
) -> Result<Location, CliError> {
    if redis.given(src)? {
        if store.state_dir.is_some() {
            return Err(CliError::Input(
                "--state-dir and --redis name two histories: give one".into(),
            ));
        }
        return Ok(Location::Redis(redis.resolve(src)?.value));
    }
    Ok(Location::Dir(state_dir(store)?))
}

/// The rules and suppressions.
///
/// # Errors
/// [`CliError::Input`] naming the file, the rule or suppression, and what is wrong.
pub fn judge(args: &JudgeArgs) -> Result<Judge, CliError> {
    let rules = RuleSet::load(args.rules.as_deref()).map_err(|e| CliError::Input(e.0))?;
    let suppressions = Suppressions::load(args.suppressions.as_deref()).map_err(CliError::Input)?;
    Ok(Judge {
        rules,
        suppressions,
    })
}

/// One `--export FORMAT=FILE`, its file checked writable.
#[derive(Debug, Clone)]
pub struct ExportTo {
    pub format: Format,
    pub output: Output,
}

/// Parse and check every `--export FORMAT=FILE`.
///
/// # Errors
/// [`CliError::Input`] naming the spec and what is wrong.
pub fn exports(specs: &[String]) -> Result<Vec<ExportTo>, CliError> {
    let mut out: Vec<ExportTo> = Vec::new();
    for spec in specs {
        let shown = scanfleet_common::text::echo(spec);
        let Some((fmt, file)) = spec.split_once('=') else {
            return Err(CliError::Input(format!(
                "--export {shown}: expected FORMAT=FILE, such as html=report.html"
            )));
        };
        let format: Format = fmt
            .parse()
            .map_err(|e: String| CliError::Input(format!("--export {shown}: {e}")))?;
        if file.is_empty() {
            return Err(CliError::Input(format!(
                "--export {shown}: no file after ="
            )));
        }
        let output = Output::check(Some(Path::new(file))).map_err(|e| match e {
            CliError::Input(m) => {
                CliError::Input(m.replacen("-o ", &format!("--export {fmt}="), 1))
            }
            other => other,
        })?;
        if out.iter().any(|o| o.output.path() == output.path()) {
            return Err(CliError::Input(format!(
                "--export {shown}: {file} is the target of another --export too"
            )));
        }
        out.push(ExportTo { format, output });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_state_dir_follows_xdg_then_home_then_var_lib() {
        assert_eq!(
            default_state_dir(Some("/x"), Some("/h")),
            PathBuf::from("/x/scanfleet")
        );
        assert_eq!(
            default_state_dir(None, Some("/h")),
            PathBuf::from("/h/.local/state/scanfleet")
        );
        assert_eq!(
            default_state_dir(Some(""), Some("/h")),
            PathBuf::from("/h/.local/state/scanfleet")
        );
        assert_eq!(
            default_state_dir(None, None),
            PathBuf::from("/var/lib/scanfleet")
        );
    }

    #[test]
    fn export_specs_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.html");
        let ok = exports(&[format!("html={}", f.display())]).unwrap();
        assert_eq!(ok[0].format, Format::Html);
        let e = |s: &str| match exports(&[s.to_string()]) {
            Err(CliError::Input(m)) => m,
            other => panic!("{s}: {other:?}"),
        };
        assert!(e("html").contains("expected FORMAT=FILE"));
        assert!(e("pdf=x.pdf").contains("unknown export format \"pdf\""));
        assert!(e("csv=").contains("no file"));
        let m = e("csv=/nonexistent/dir/x.csv");
        assert!(
            m.starts_with("--export csv=/nonexistent/dir/x.csv: directory"),
            "{m}"
        );
        let twice = format!("csv={}", f.display());
        assert!(
            matches!(exports(&[twice.clone(), twice]), Err(CliError::Input(m)) if m.contains("another --export"))
        );
    }
}
