//! Settings: one declarative table (`table.rs`) drives the command line,
//! config files, `GUNICORN_CMD_ARGS`/`FERROCORN_CMD_ARGS`, `--print-config`
//! and docs/settings.md. Sources apply in Gunicorn's order: defaults, config
//! file, GUNICORN_CMD_ARGS, FERROCORN_CMD_ARGS, command line.

pub mod cli;
pub mod docs;
pub mod input;
pub mod pyvalue;
pub mod spec;
pub mod table;
pub mod validate;

pub use spec::{Action, Origin, Spec, Support};
pub use table::{spec, Settings, SPECS};

use input::Input;
use pyo3::prelude::*;
use std::fmt;

#[derive(Debug)]
pub enum SettingError {
    Unknown(String),
    Invalid { name: &'static str, value: String, reason: String },
}

impl Settings {
    /// `--backlog` as listen(2) takes it (the setting's type allows more).
    pub fn listen_backlog(&self) -> i32 {
        i32::try_from(self.backlog).unwrap_or(i32::MAX)
    }
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingError::Unknown(name) => write!(f, "No configuration setting for: {name}"),
            SettingError::Invalid { name, value, reason } => {
                write!(f, "Invalid value for {name}: {value}: {reason}")
            }
        }
    }
}

/// Why loading the settings ended the program before it started: the text to
/// print on stderr (stdout for --help/--version) and the exit status.
#[derive(Debug)]
pub struct Exit {
    pub message: String,
    pub status: i32,
}

impl Exit {
    fn error(message: impl fmt::Display) -> Exit {
        // Gunicorn prints configuration errors as "\nError: ..." and exits 1.
        Exit { message: format!("\nError: {message}\n"), status: 1 }
    }
}

/// Settings ready to serve with, and what was learned while loading them.
pub struct Loaded {
    pub settings: Settings,
    /// APP_MODULE from the command line, else `wsgi_app` from a config file.
    pub app_uri: String,
    /// Where the config file came from, if one was read.
    pub config_file: Option<String>,
    /// Settings given a value ferrocorn accepts without needing it, with why.
    pub unneeded: Vec<(&'static str, &'static str)>,
    /// Extra positional arguments, which Gunicorn ignores.
    pub ignored_args: Vec<String>,
    /// What became of a worker class given as a Python class path.
    pub worker_class_notes: Vec<crate::workers::python_class::Note>,
}

/// Reads every source. `argv` excludes the program name.
pub fn load(py: Python<'_>, argv: &[String]) -> Result<Loaded, Exit> {
    let with_prog =
        |args: &[String]| std::iter::once("ferrocorn".to_owned()).chain(args.iter().cloned()).collect::<Vec<_>>();
    let cmdline = cli::parse(with_prog(argv)).map_err(|e| Exit { message: e.message, status: e.status })?;
    cli::check_types(py, &cmdline).map_err(|e| Exit { message: e.message, status: e.status })?;
    let mut env_sources = Vec::new();
    for var in ["GUNICORN_CMD_ARGS", "FERROCORN_CMD_ARGS"] {
        if let Ok(value) = std::env::var(var) {
            let words = cli::shell_split(py, &value).map_err(|e| Exit::error(format!("{var}: {e}")))?;
            // Gunicorn reads these with the command line's parser: the same
            // usage errors, which name the variable here.
            let in_var = |e: cli::CliExit| Exit {
                message: e.message.replacen("error: ", &format!("error: {var}: "), 1),
                status: e.status,
            };
            let parsed = cli::parse(with_prog(&words)).map_err(in_var)?;
            cli::check_types(py, &parsed).map_err(in_var)?;
            env_sources.push(parsed);
        }
    }

    let mut settings = Settings::defaults(py).map_err(Exit::error)?;
    let mut explicit: Vec<&'static str> = Vec::new();

    let config_file = config_location(&cmdline, &env_sources);
    if let Some(location) = &config_file {
        for (name, value) in read_config_file(py, location)? {
            if let Some(spec) = spec(&name) {
                settings.set(py, spec.name, &value).map_err(|e| {
                    Exit::error(format!("Invalid value for {}: {}\n{}", spec.name, value.describe(), reason_of(&e)))
                })?;
                explicit.push(spec.name);
            }
        }
    }
    for source in env_sources.iter().chain(std::iter::once(&cmdline)) {
        for (name, value) in &source.settings {
            settings.set(py, name, value).map_err(Exit::error)?;
            explicit.push(name);
        }
    }

    let mut positionals = cmdline.positionals.into_iter();
    let app_uri = match settings.paste.clone() {
        Some(paste) => paste_app(py, &mut settings, paste, &explicit)?,
        None => match positionals.next() {
            Some(uri) => {
                settings.default_proc_name = uri.clone();
                uri
            }
            None => settings.wsgi_app.clone().ok_or_else(|| Exit::error("No application module specified."))?,
        },
    };

    let worker_class_notes =
        crate::workers::python_class::adopt(py, &mut settings).map_err(|e| Exit::error(e.to_string()))?;
    refuse_unsupported(py, &settings)?;
    check_combinations(py, &settings)?;
    let unneeded = SPECS
        .iter()
        .filter_map(|s| match s.support {
            Support::Unneeded(why) if explicit.contains(&s.name) => Some((s.name, why)),
            _ => None,
        })
        .collect();
    Ok(Loaded { settings, app_uri, config_file, unneeded, ignored_args: positionals.collect(), worker_class_notes })
}

/// `--paste FILE[#name]` (Gunicorn's `WSGIApplication.init`): the ini file
/// is the application and the process name, and its `[loggers]` section,
/// if any, the logging configuration unless one was given.
fn paste_app(py: Python<'_>, settings: &mut Settings, paste: String, explicit: &[&str]) -> Result<String, Exit> {
    let cwd = std::env::current_dir().map_err(|e| Exit::error(format!("can't read the current directory: {e}")))?;
    let config_uri = cwd.join(&paste).to_string_lossy().into_owned();
    let config_file = config_uri.split('#').next().unwrap_or(&config_uri).to_owned();
    if !std::path::Path::new(&config_file).exists() {
        return Err(Exit::error(format!("{} not found", spec::py_str_repr(&config_file))));
    }
    settings.default_proc_name = config_file.clone();
    let has_loggers = std::fs::read_to_string(&config_file)
        .map(|text| text.lines().any(|l| l.trim() == "[loggers]"))
        .unwrap_or(false);
    if has_loggers && !explicit.contains(&"logconfig") {
        settings.set(py, "logconfig", &Input::Str(config_file)).map_err(Exit::error)?;
    }
    Ok(config_uri)
}

fn reason_of(e: &SettingError) -> String {
    match e {
        SettingError::Invalid { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// `-c` from the command line, else from the env vars, else
/// ./ferrocorn.conf.py or ./gunicorn.conf.py when present.
fn config_location(cmdline: &cli::CliArgs, env_sources: &[cli::CliArgs]) -> Option<String> {
    let given = |args: &cli::CliArgs| {
        args.settings.iter().find(|(n, _)| *n == "config").and_then(|(_, v)| match v {
            Input::Str(s) => Some(s.trim().to_owned()),
            _ => None,
        })
    };
    if let Some(c) = given(cmdline) {
        return Some(c);
    }
    if let Some(c) = env_sources.iter().rev().find_map(given) {
        return Some(c);
    }
    let cwd = std::env::current_dir().ok()?;
    ["ferrocorn.conf.py", "gunicorn.conf.py"]
        .iter()
        .map(|f| cwd.join(f))
        .find(|p| p.exists())
        .map(|p| p.to_string_lossy().into_owned())
}

/// Executes the config file as Python (Gunicorn's way: a module named
/// `__config__`) and returns its global names that look like settings.
fn read_config_file(py: Python<'_>, location: &str) -> Result<Vec<(String, Input)>, Exit> {
    let loaded = py.import("ferrocorn._config").and_then(|m| m.call_method1("load", (location,))).map_err(|e| {
        let traceback = crate::python::format_exception(py, &e);
        Exit { message: format!("Failed to read config file: {location}\n{traceback}"), status: 1 }
    })?;
    let dict = loaded
        .cast::<pyo3::types::PyDict>()
        .map_err(|_| Exit::error(format!("config file {location} did not give a namespace")))?;
    let mut out = Vec::new();
    for (k, v) in dict.iter() {
        let Ok(name) = k.extract::<String>() else { continue };
        if spec(&name).is_none() {
            continue;
        }
        let value = Input::from_py(&v).map_err(|e| Exit::error(format!("Invalid value for {name}: {e}")))?;
        out.push((name, value));
    }
    Ok(out)
}

/// A setting ferrocorn cannot honour yet must not be silently ignored: any
/// value other than Gunicorn's default stops the start, naming the setting,
/// its flags and the feature that will bring it.
fn refuse_unsupported(py: Python<'_>, settings: &Settings) -> Result<(), Exit> {
    let defaults = Settings::defaults(py).map_err(Exit::error)?;
    let mut refused = Vec::new();
    for s in SPECS {
        if let Support::NotYet(feature) = s.support {
            if settings.show(s.name) != defaults.show(s.name) {
                let flags = if s.cli.is_empty() { "config file".to_owned() } else { s.cli.join("/") };
                refused.push(format!("ferrocorn does not support {} ({flags}) yet: it comes with {feature}", s.name));
            }
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    refused.push("Remove these settings to start.".to_owned());
    Err(Exit::error(refused.join("\n")))
}

/// Checks that need more than one setting, or the environment, done once
/// everything is loaded (Gunicorn's `Config.validate` and the checks its
/// arbiter makes before binding).
fn check_combinations(py: Python<'_>, settings: &Settings) -> Result<(), Exit> {
    for bind in &settings.bind {
        crate::net::bind::BindSpec::parse(py, bind).map_err(Exit::error)?;
    }
    for e in &settings.raw_env {
        if !e.contains('=') {
            return Err(Exit::error(format!("environment setting '{e}' invalid")));
        }
    }
    let kind = crate::workers::WorkerKind::resolve(&settings.worker_class, settings.threads).map_err(Exit::error)?;
    if let Some(refused) = crate::workers::timeout::refused(kind).filter(|_| !settings.request_timeout.is_zero()) {
        return Err(Exit::error(refused));
    }
    if let Some(warning) = crate::workers::timeout::warning(settings, kind) {
        eprintln!("{warning}");
    }
    // Gunicorn's Config.validate warns on stderr and goes on.
    if let Some(warning) = crate::http2::check_settings(settings, kind).map_err(Exit::error)? {
        eprintln!("{warning}");
    }
    crate::uwsgi::check_settings(settings, kind).map_err(Exit::error)?;
    crate::log::AccessFormat::configured(
        &settings.access_log_format,
        settings.access_log_json,
        &settings.access_log_json_headers,
    )
    .map_err(|e| Exit::error(format!("Invalid access_log_format: {e}")))?;
    check_json_logs(py, settings)?;
    if settings.syslog {
        // Gunicorn finds these when it sets up its logger, before binding.
        crate::log::syslog::SyslogAddr::parse(py, &settings.syslog_addr).map_err(Exit::error)?;
        crate::log::syslog::facility(&settings.syslog_facility).map_err(Exit::error)?;
    }
    Ok(())
}

/// The JSON logs are written by ferrocorn: a Python logging configuration
/// (which formats records itself) or captured stdout/stderr (raw lines in
/// the error log file) would mix other lines into them.
fn check_json_logs(py: Python<'_>, settings: &Settings) -> Result<(), Exit> {
    let json = [("access_log_json", settings.access_log_json), ("error_log_json", settings.error_log_json)];
    for (name, on) in json {
        if on && crate::hooks::context::wants_python_logging(py, settings) {
            return Err(Exit::error(format!(
                "{name} cannot be used with a Python logging configuration (logconfig, logconfig_dict, \
                 logconfig_json, logger_class): that configuration formats the records"
            )));
        }
    }
    if settings.error_log_json && settings.capture_output {
        return Err(Exit::error(
            "error_log_json cannot be used with capture_output: what the application prints would not be JSON",
        ));
    }
    Ok(())
}

/// `--print-config`: every setting, sorted, as `name = value` (Gunicorn's
/// `str(cfg)` layout).
pub fn print_config(settings: &Settings) -> String {
    let mut names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
    names.sort_unstable();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    names
        .iter()
        .map(|n| format!("{n:width$} = {}", settings.show(n).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
}
