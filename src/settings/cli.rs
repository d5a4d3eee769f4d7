//! The command line, generated from the settings table with Gunicorn's flags.
//! The same parser reads `GUNICORN_CMD_ARGS` and `FERROCORN_CMD_ARGS`.

use super::input::Input;
use super::spec::{Action, Spec, Support};
use super::table::SPECS;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use pyo3::prelude::*;

/// What one command line (or env var) said: only the settings it named, in
/// table order, and the positional arguments.
#[derive(Debug, Default)]
pub struct CliArgs {
    pub settings: Vec<(&'static str, Input)>,
    pub positionals: Vec<String>,
}

/// Why parsing stopped: --help and --version as clap prints them (status
/// 0), or a usage error as Gunicorn's argparse prints one (status 2).
#[derive(Debug)]
pub struct CliExit {
    pub message: String,
    pub status: i32,
}

const USAGE: &str = "ferrocorn [OPTIONS] [APP_MODULE]";

impl CliExit {
    /// argparse's `error()`: the usage line, then `prog: error: message`.
    pub fn usage(message: &str) -> CliExit {
        CliExit { message: format!("usage: {USAGE}\nferrocorn: error: {message}\n"), status: 2 }
    }
}

pub fn command() -> Command {
    let mut cmd = Command::new("ferrocorn")
        .version(concat!("(version ", env!("CARGO_PKG_VERSION"), ")"))
        .about("A Gunicorn-compatible WSGI server with a Rust engine")
        .override_usage(USAGE)
        // argparse lets a later flag win and accepts unambiguous prefixes.
        .args_override_self(true)
        .infer_long_args(true)
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .short('v')
                .long("version")
                .action(ArgAction::Version)
                .help("show program's version number and exit"),
        )
        .arg(Arg::new("args").num_args(0..).value_name("APP_MODULE").help("The WSGI application, MODULE:VARIABLE"));
    for spec in SPECS.iter().filter(|s| !s.cli.is_empty()) {
        cmd = cmd.arg(arg_for(spec));
    }
    cmd
}

fn arg_for(spec: &'static Spec) -> Arg {
    let mut arg = Arg::new(spec.name);
    let mut longs = spec.cli.iter().filter_map(|f| f.strip_prefix("--"));
    if let Some(first) = longs.next() {
        arg = arg.long(first);
    }
    for alias in longs {
        arg = arg.visible_alias(alias);
    }
    if let Some(short) = spec.cli.iter().find(|f| f.len() == 2 && !f.starts_with("--")) {
        if let Some(c) = short.chars().nth(1) {
            arg = arg.short(c);
        }
    }
    if let Some(meta) = spec.meta {
        arg = arg.value_name(meta);
    }
    let help = match spec.support {
        Support::NotYet(feature) => {
            format!("{} [{}] (not available in ferrocorn yet: comes with {feature})", spec.help, spec.doc_default)
        }
        _ => format!("{} [{}]", spec.help, spec.doc_default),
    };
    arg = arg.help(help);
    match spec.action {
        Action::Store | Action::Int | Action::AutoInt => {
            arg.action(ArgAction::Set).num_args(1).allow_negative_numbers(true)
        }
        Action::Append => arg.action(ArgAction::Append).num_args(1).allow_negative_numbers(true),
        Action::StoreTrue | Action::StoreFalse => arg.action(ArgAction::SetTrue),
        Action::OptionalValue(missing) => arg.action(ArgAction::Set).num_args(0..=1).default_missing_value(missing),
    }
}

pub fn parse<I, S>(argv: I) -> Result<CliArgs, CliExit>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(argv).map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            CliExit { message: e.render().to_string(), status: e.exit_code() }
        }
        _ => CliExit::usage(&argparse_message(&e)),
    })?;
    Ok(extract(&matches))
}

/// What argparse says for the mistake clap found.
fn argparse_message(e: &clap::Error) -> String {
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    match e.kind() {
        ErrorKind::UnknownArgument => {
            let name = arg.split('=').next().unwrap_or_default();
            let candidates: Vec<&str> = match name.strip_prefix("--") {
                Some(prefix) if !prefix.is_empty() => SPECS
                    .iter()
                    .flat_map(|s| s.cli.iter())
                    .copied()
                    .filter(|f| f.strip_prefix("--").is_some_and(|long| long.starts_with(prefix)))
                    .collect(),
                _ => Vec::new(),
            };
            if candidates.len() > 1 {
                format!("ambiguous option: {name} could match {}", candidates.join(", "))
            } else {
                format!("unrecognized arguments: {arg}")
            }
        }
        // clap names the argument as `--workers <INT>`; argparse by every
        // flag of the setting.
        ErrorKind::InvalidValue | ErrorKind::NoEquals | ErrorKind::TooFewValues => {
            let flag = arg.split(' ').next().unwrap_or_default();
            match SPECS.iter().find(|s| s.cli.contains(&flag)) {
                Some(spec) => format!("argument {}: expected one argument", spec.cli.join("/")),
                None => format!("argument {flag}: expected one argument"),
            }
        }
        _ => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            first.strip_prefix("error: ").unwrap_or(first).to_owned()
        }
    }
}

/// The values argparse's `type=` reads on the command line (Gunicorn's
/// `int` and `auto_int` settings): one it cannot read is a usage error,
/// as argparse reports it.
pub fn check_types(py: Python<'_>, args: &CliArgs) -> Result<(), CliExit> {
    use super::validate::{auto_int_text, python_int, IntError};
    for (name, input) in &args.settings {
        let (Some(spec), Input::Str(value)) = (super::table::spec(name), input) else { continue };
        let (kind, read) = match spec.action {
            Action::Int => ("int", python_int(py, value, 10)),
            Action::AutoInt => ("auto_int", python_int(py, &auto_int_text(value), 0)),
            _ => continue,
        };
        // An int too large for the setting is read all the same: the
        // setting's validation refuses it, as Gunicorn's does.
        if let Err(IntError::Invalid(_)) = read {
            let repr = super::spec::py_str_repr(value);
            return Err(CliExit::usage(&format!("argument {}: invalid {kind} value: {repr}", spec.cli.join("/"))));
        }
    }
    Ok(())
}

fn extract(m: &ArgMatches) -> CliArgs {
    let mut out = CliArgs::default();
    for spec in SPECS.iter().filter(|s| !s.cli.is_empty()) {
        if m.value_source(spec.name) != Some(ValueSource::CommandLine) {
            continue;
        }
        let input = match spec.action {
            Action::StoreTrue => Input::Bool(true),
            Action::StoreFalse => Input::Bool(false),
            Action::Append => Input::List(
                m.get_many::<String>(spec.name)
                    .map(|vals| vals.map(|v| Input::Str(v.clone())).collect())
                    .unwrap_or_default(),
            ),
            Action::Store | Action::Int | Action::AutoInt | Action::OptionalValue(_) => {
                match m.get_one::<String>(spec.name) {
                    Some(v) => Input::Str(v.clone()),
                    None => continue,
                }
            }
        };
        out.settings.push((spec.name, input));
    }
    out.positionals = m.get_many::<String>("args").map(|v| v.cloned().collect()).unwrap_or_default();
    out
}

/// Python's `shlex.split`, which Gunicorn splits `GUNICORN_CMD_ARGS` (and
/// its control server splits commands) with; the error is shlex's
/// ValueError text ("No closing quotation").
pub fn shell_split(py: Python<'_>, s: &str) -> Result<Vec<String>, String> {
    let split = || -> PyResult<Vec<String>> { py.import("shlex")?.call_method1("split", (s,))?.extract() };
    split().map_err(|e| crate::python::exception_text(py, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_of(args: &[&str]) -> Vec<(&'static str, String)> {
        let mut argv = vec!["ferrocorn"];
        argv.extend_from_slice(args);
        parse(argv).expect("parses").settings.into_iter().map(|(n, i)| (n, i.describe())).collect()
    }

    #[test]
    fn gunicorn_flag_forms() {
        assert_eq!(settings_of(&["-w", "4"]), vec![("workers", "4".into())]);
        assert_eq!(settings_of(&["-w4"]), vec![("workers", "4".into())]);
        assert_eq!(settings_of(&["--workers=4"]), vec![("workers", "4".into())]);
        // argparse accepts unambiguous prefixes, and refuses ambiguous ones
        assert_eq!(settings_of(&["--graceful", "3"]), vec![("graceful_timeout", "3".into())]);
        assert!(parse(["ferrocorn", "--work", "3"]).is_err());
        // the last occurrence wins
        assert_eq!(settings_of(&["-t", "5", "-t", "7"]), vec![("timeout", "7".into())]);
        assert_eq!(settings_of(&["--limit-request-field_size", "0"]), vec![("limit_request_field_size", "0".into())]);
        assert_eq!(settings_of(&["--log-file", "-"]), vec![("errorlog", "-".into())]);
    }

    #[test]
    fn append_flags_collect() {
        assert_eq!(
            settings_of(&["-b", "127.0.0.1:1", "--bind", "unix:/tmp/s"]),
            vec![("bind", "['127.0.0.1:1', 'unix:/tmp/s']".into())]
        );
    }

    #[test]
    fn flags_and_optional_values() {
        assert_eq!(settings_of(&["--preload"]), vec![("preload_app", "True".into())]);
        assert_eq!(settings_of(&["--no-sendfile"]), vec![("sendfile", "False".into())]);
        assert_eq!(settings_of(&["--proxy-protocol"]), vec![("proxy_protocol", "auto".into())]);
        assert_eq!(settings_of(&["--proxy-protocol", "v2"]), vec![("proxy_protocol", "v2".into())]);
    }

    #[test]
    fn positionals() {
        let a = parse(["ferrocorn", "-w", "2", "app:app"]).expect("parses");
        assert_eq!(a.positionals, vec!["app:app".to_owned()]);
        let b = parse(["ferrocorn", "app:app", "--preload"]).expect("parses");
        assert_eq!(b.positionals, vec!["app:app".to_owned()]);
    }

    #[test]
    fn usage_errors_and_version() {
        let e = parse(["ferrocorn", "--no-such-flag"]).expect_err("refused");
        assert_eq!(e.status, 2);
        let v = parse(["ferrocorn", "--version"]).expect_err("version exits");
        assert_eq!(v.status, 0);
        assert!(v.message.contains(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn shell_split_is_shlex() {
        let split = |s: &str| crate::python::with_python(|py| shell_split(py, s));
        assert_eq!(
            split("-w 3  --bind '127.0.0.1:1'"),
            Ok(vec!["-w".into(), "3".into(), "--bind".into(), "127.0.0.1:1".into()])
        );
        // In double quotes a backslash escapes only `"` and `\` (not `$`),
        // and only ASCII whitespace separates words.
        assert_eq!(
            split(concat!(r#"-n "a\$\"b" c\ d"#, "\u{a0}e")),
            Ok(vec!["-n".into(), r#"a\$"b"#.into(), "c d\u{a0}e".into()])
        );
        assert_eq!(split("'open"), Err("No closing quotation".into()));
        assert_eq!(split("end\\"), Err("No escaped character".into()));
    }
}
