//! One layered configuration for both binaries: defaults, then the TOML file
//! (`--config FILE` or `SCANFLEET_CONFIG`), then the environment (`SCANFLEET_*`),
//! then flags. Every value remembers where it came from ([`Origin`]), so that an
//! error names the flag, the variable or the file key the user actually wrote:
//! `SCANFLEET_WORKERS=0` is reported as the environment variable, never as
//! `--workers 0`.
//!
//! [`file`] is the schema of the config file (one file serves `scanfleet` and
//! `scanfleet-worker`; unknown keys are errors); [`args`] holds the flags both
//! binaries share, each defined once.

pub mod args;
pub mod file;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use file::FileConfig;

use crate::types::escape_bytes;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A key of the config file, such as `scan.workers`.
    File { path: PathBuf, key: &'static str },
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag, such as `--workers`.
    Flag(&'static str),
}

impl Origin {
    /// The origin itself, without a value: `--zone`, `environment variable
    /// SCANFLEET_ZONE`, `config sf.toml: worker.zone`, `default`.
    pub fn name(&self) -> String {
        match self {
            Origin::Default => "default".into(),
            Origin::File { path, key } => format!("config {}: {key}", path.display()),
            Origin::Env(name) => format!("environment variable {name}"),
            Origin::Flag(flag) => (*flag).to_string(),
        }
    }

    /// How the user wrote `raw` at this origin: `--workers 0`,
    /// `environment variable SCANFLEET_WORKERS="0"`, `config sf.toml: scan.workers = 0`.
    pub fn describe(&self, raw: &str) -> String {
        let raw = escape_bytes(raw.as_bytes(), 120);
        match self {
            Origin::Default => format!("default {raw}"),
            Origin::File { path, key } => format!("config {}: {key} = {raw}", path.display()),
            Origin::Env(name) => format!("environment variable {name}={raw:?}"),
            Origin::Flag(flag) => format!("{flag} {raw}"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T: fmt::Display> Setting<T> {
    /// An error about this value that names where it came from.
    pub fn invalid(&self, why: impl fmt::Display) -> ConfigError {
        ConfigError(format!(
            "{}: {why}",
            self.origin.describe(&self.value.to_string())
        ))
    }
}

/// A configuration error: bad input, reported before anything is sent or
/// connected (exit status 2). The message names the input and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Reads the layers under the flags: the config file (already parsed) and the
/// environment. Tests give an environment of their own instead of the process's.
pub struct Sources {
    /// The parsed config file; empty without `--config`.
    pub file: FileConfig,
    path: Option<PathBuf>,
    env: Option<HashMap<String, String>>,
}

impl Sources {
    /// The config file at `path` (if any) and the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file when it cannot be read or parsed (the TOML
    /// error names the key).
    pub fn load(path: Option<&Path>) -> Result<Sources, ConfigError> {
        let file = match path {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        Ok(Sources {
            file,
            path: path.map(Path::to_path_buf),
            env: None,
        })
    }

    /// Layers for tests: a parsed file and a fixed environment.
    pub fn fixed(file: FileConfig, path: Option<&Path>, env: &[(&str, &str)]) -> Sources {
        Sources {
            file,
            path: path.map(Path::to_path_buf),
            env: Some(
                env.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    /// The config file's path, for messages.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn env_var(&self, name: &str) -> Option<String> {
        match &self.env {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
    }

    /// An environment variable as given (empty counts as unset), with its origin.
    pub fn env_raw(&self, name: &'static str) -> Option<Setting<String>> {
        self.env_var(name)
            .filter(|v| !v.is_empty())
            .map(|value| Setting {
                value,
                origin: Origin::Env(name),
            })
    }

    /// The origin of a file key.
    pub fn file_origin(&self, key: &'static str) -> Origin {
        Origin::File {
            path: self.path.clone().unwrap_or_else(|| PathBuf::from("-")),
            key,
        }
    }

    /// Layer one setting: the flag wins, then the environment variable (parsed
    /// here, so that a bad value names the variable), then the file, then the
    /// default. `None` when no layer has a value.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable when its value does not parse.
    pub fn pick<T>(
        &self,
        flag: (&'static str, Option<T>),
        env: Option<&'static str>,
        file: (&'static str, Option<T>),
        default: Option<T>,
    ) -> Result<Option<Setting<T>>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        if let Some(value) = flag.1 {
            return Ok(Some(Setting {
                value,
                origin: Origin::Flag(flag.0),
            }));
        }
        if let Some(raw) = env.and_then(|name| self.env_raw(name)) {
            return match raw.value.trim().parse::<T>() {
                Ok(value) => Ok(Some(Setting {
                    value,
                    origin: raw.origin,
                })),
                Err(e) => Err(ConfigError(format!(
                    "{}: {e}",
                    raw.origin.describe(&raw.value)
                ))),
            };
        }
        if let Some(value) = file.1 {
            return Ok(Some(Setting {
                value,
                origin: self.file_origin(file.0),
            }));
        }
        Ok(default.map(|value| Setting {
            value,
            origin: Origin::Default,
        }))
    }

    /// [`Sources::pick`] with a default, so there is always a value.
    ///
    /// # Errors
    /// As [`Sources::pick`].
    pub fn pick_or<T>(
        &self,
        flag: (&'static str, Option<T>),
        env: Option<&'static str>,
        file: (&'static str, Option<T>),
        default: T,
    ) -> Result<Setting<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.pick(flag, env, file, Some(default))
            .map(|s| s.unwrap_or_else(|| unreachable!("a default was given")))
    }
}

/// A number within `lo..=hi`, or an error naming where it came from.
///
/// # Errors
/// [`ConfigError`] "expected LO to HI".
pub fn in_range<T>(s: &Setting<T>, lo: T, hi: T) -> Result<T, ConfigError>
where
    T: PartialOrd + Copy + fmt::Display,
{
    if s.value < lo || s.value > hi {
        return Err(s.invalid(format_args!("expected {lo} to {hi}")));
    }
    Ok(s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_over_env_over_file_over_default() {
        let file =
            FileConfig::parse("[fleet]\ndelivery_limit = 4\n", Path::new("sf.toml")).unwrap();
        let src = Sources::fixed(file, Some(Path::new("sf.toml")), &[("SCANFLEET_X", "7")]);
        let f = src.file.fleet.delivery_limit;
        let pick = |flag: Option<u32>, env| {
            src.pick_or(
                ("--delivery-limit", flag),
                env,
                ("fleet.delivery_limit", f),
                5,
            )
            .unwrap()
        };
        assert_eq!(pick(Some(9), Some("SCANFLEET_X")).value, 9);
        assert_eq!(
            pick(None, Some("SCANFLEET_X")).origin,
            Origin::Env("SCANFLEET_X")
        );
        assert_eq!(pick(None, None).value, 4);
        let none = Sources::fixed(FileConfig::default(), None, &[]);
        let d = none
            .pick_or(
                ("--delivery-limit", None),
                None,
                ("fleet.delivery_limit", None),
                5u32,
            )
            .unwrap();
        assert_eq!((d.value, d.origin), (5, Origin::Default));
    }

    #[test]
    fn errors_name_the_layer_the_value_came_from() {
        let src = Sources::fixed(FileConfig::default(), None, &[("SCANFLEET_WORKERS", "0")]);
        let w = src
            .pick_or(
                ("--workers", None),
                Some("SCANFLEET_WORKERS"),
                ("scan.workers", None),
                2usize,
            )
            .unwrap();
        let e = in_range(&w, 1, 64).unwrap_err().to_string();
        assert_eq!(
            e,
            "environment variable SCANFLEET_WORKERS=\"0\": expected 1 to 64"
        );
        assert!(!e.contains("--workers"));

        let src = Sources::fixed(
            FileConfig::default(),
            None,
            &[("SCANFLEET_WORKERS", "lots")],
        );
        let e = src
            .pick::<usize>(
                ("--workers", None),
                Some("SCANFLEET_WORKERS"),
                ("scan.workers", None),
                None,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("environment variable SCANFLEET_WORKERS=\"lots\": "),
            "{e}"
        );

        let file = FileConfig::parse("[scan]\nworkers = 0\n", Path::new("/etc/sf.toml")).unwrap();
        let src = Sources::fixed(file, Some(Path::new("/etc/sf.toml")), &[]);
        let w = src
            .pick_or(
                ("--workers", None),
                Some("SCANFLEET_WORKERS"),
                ("scan.workers", src.file.scan.workers),
                2,
            )
            .unwrap();
        assert_eq!(
            in_range(&w, 1, 64).unwrap_err().to_string(),
            "config /etc/sf.toml: scan.workers = 0: expected 1 to 64"
        );
    }
}
