//! Control commands, parsed as Gunicorn 27's control server parses them
//! (`ControlSocketServer._dispatch` and `_execute_command`): shell-split
//! words plus `args`, case-insensitive verbs, Python's `int()` for counts
//! and pids, and the same error texts.

use crate::settings::validate::{python_int, IntError};
use pyo3::Python;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    All,
    Workers,
    Dirty,
    Config,
    Stats,
    Listeners,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Show(Show),
    WorkerAdd(i64),
    WorkerRemove(i64),
    WorkerKill(i64),
    DirtyAdd(i64),
    DirtyRemove(i64),
    Reload,
    Reopen,
    /// "quick" is INT; anything else is TERM, echoed as given.
    Shutdown(String),
    Help,
}

/// Why a command was refused: the `error` text of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Empty,
    /// Gunicorn's ValueError: shown as "Invalid argument: ...".
    Invalid(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Empty => f.write_str("Empty command"),
            Refused::Invalid(why) => write!(f, "Invalid argument: {why}"),
        }
    }
}

/// Gunicorn's list, word for word (`CommandHandlers.help`).
pub const HELP: &[(&str, &str)] = &[
    ("show all", "Show all processes (arbiter, web workers, dirty workers)"),
    ("show workers", "List HTTP workers with their status"),
    ("show dirty", "List dirty workers and apps"),
    ("show config", "Show current effective configuration"),
    ("show stats", "Show server statistics"),
    ("show listeners", "Show bound sockets"),
    ("worker add [N]", "Spawn N workers (default 1)"),
    ("worker remove [N]", "Remove N workers (default 1)"),
    ("worker kill <PID>", "Gracefully terminate specific worker"),
    ("dirty add [N]", "Spawn N dirty workers (default 1)"),
    ("dirty remove [N]", "Remove N dirty workers (default 1)"),
    ("reload", "Graceful reload (HUP)"),
    ("reopen", "Reopen log files (USR1)"),
    ("shutdown [graceful|quick]", "Shutdown server (TERM/INT)"),
    ("help", "Show this help message"),
];

pub fn parse(py: Python<'_>, command: &str, args: &[String]) -> Result<Command, Refused> {
    let command = command.trim();
    if command.is_empty() {
        return Err(Refused::Empty);
    }
    let mut parts = crate::settings::cli::shell_split(py, command).map_err(Refused::Invalid)?;
    parts.extend(args.iter().cloned());
    let Some((cmd, rest)) = parts.split_first() else {
        return Err(Refused::Empty);
    };
    let invalid = |m: String| Refused::Invalid(m);
    match cmd.to_lowercase().as_str() {
        "show" => {
            let target = rest
                .first()
                .ok_or_else(|| invalid("Missing show target (all|workers|dirty|config|stats|listeners)".into()))?
                .to_lowercase();
            Ok(Command::Show(match target.as_str() {
                "all" => Show::All,
                "workers" => Show::Workers,
                "dirty" => Show::Dirty,
                "config" => Show::Config,
                "stats" => Show::Stats,
                "listeners" => Show::Listeners,
                _ => return Err(invalid(format!("Unknown show target: {target}"))),
            }))
        }
        "worker" => {
            let action =
                rest.first().ok_or_else(|| invalid("Missing worker action (add|remove|kill)".into()))?.to_lowercase();
            let arg = rest.get(1);
            match action.as_str() {
                "add" => Ok(Command::WorkerAdd(count(py, arg)?)),
                "remove" => Ok(Command::WorkerRemove(count(py, arg)?)),
                "kill" => {
                    let pid = arg.ok_or_else(|| invalid("Missing PID for worker kill".into()))?;
                    Ok(Command::WorkerKill(int(py, pid)?))
                }
                _ => Err(invalid(format!("Unknown worker action: {action}"))),
            }
        }
        "dirty" => {
            let action =
                rest.first().ok_or_else(|| invalid("Missing dirty action (add|remove)".into()))?.to_lowercase();
            match action.as_str() {
                "add" => Ok(Command::DirtyAdd(count(py, rest.get(1))?)),
                "remove" => Ok(Command::DirtyRemove(count(py, rest.get(1))?)),
                _ => Err(invalid(format!("Unknown dirty action: {action}"))),
            }
        }
        "reload" => Ok(Command::Reload),
        "reopen" => Ok(Command::Reopen),
        "shutdown" => Ok(Command::Shutdown(rest.first().cloned().unwrap_or_else(|| "graceful".into()))),
        "help" => Ok(Command::Help),
        other => Err(invalid(format!("Unknown command: {other}"))),
    }
}

/// `int(x) if x else 1`; the handlers then take `max(1, count)`.
fn count(py: Python<'_>, arg: Option<&String>) -> Result<i64, Refused> {
    let Some(text) = arg else { return Ok(1) };
    match python_int(py, text, 10) {
        Ok(n) => Ok(n.max(1)),
        // max(1, n) of a huge negative count.
        Err(IntError::OutOfRange { negative: true, .. }) => Ok(1),
        Err(e) => Err(refused_int(text, e)),
    }
}

fn int(py: Python<'_>, text: &str) -> Result<i64, Refused> {
    python_int(py, text, 10).map_err(|e| refused_int(text, e))
}

fn refused_int(text: &str, e: IntError) -> Refused {
    match e {
        IntError::Invalid(why) => Refused::Invalid(why),
        IntError::OutOfRange { .. } => Refused::Invalid(format!("{text} is too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(cmd: &str) -> Result<Command, Refused> {
        with_args(cmd, &[])
    }

    fn with_args(cmd: &str, args: &[String]) -> Result<Command, Refused> {
        crate::python::with_python(|py| parse(py, cmd, args))
    }

    #[test]
    fn verbs() {
        assert_eq!(p("show workers"), Ok(Command::Show(Show::Workers)));
        assert_eq!(p("SHOW Stats"), Ok(Command::Show(Show::Stats)));
        assert_eq!(p("worker add"), Ok(Command::WorkerAdd(1)));
        assert_eq!(p("worker add 3"), Ok(Command::WorkerAdd(3)));
        assert_eq!(p("worker add 0"), Ok(Command::WorkerAdd(1)));
        assert_eq!(p("worker add -99999999999999999999"), Ok(Command::WorkerAdd(1)));
        assert_eq!(p("worker add ' 1_0 '"), Ok(Command::WorkerAdd(10)));
        assert_eq!(with_args("worker remove", &["2".into()]), Ok(Command::WorkerRemove(2)));
        assert_eq!(p("worker kill 1234"), Ok(Command::WorkerKill(1234)));
        assert_eq!(p("dirty add"), Ok(Command::DirtyAdd(1)));
        assert_eq!(p("reload"), Ok(Command::Reload));
        assert_eq!(p("reopen"), Ok(Command::Reopen));
        assert_eq!(p("shutdown"), Ok(Command::Shutdown("graceful".into())));
        assert_eq!(p("shutdown quick"), Ok(Command::Shutdown("quick".into())));
        assert_eq!(p("help"), Ok(Command::Help));
    }

    #[test]
    fn gunicorns_error_texts() {
        let err = |c: &str| p(c).expect_err("refused").to_string();
        assert_eq!(err("  "), "Empty command");
        assert_eq!(err("show"), "Invalid argument: Missing show target (all|workers|dirty|config|stats|listeners)");
        assert_eq!(err("show nothing"), "Invalid argument: Unknown show target: nothing");
        assert_eq!(err("worker"), "Invalid argument: Missing worker action (add|remove|kill)");
        assert_eq!(err("worker jump"), "Invalid argument: Unknown worker action: jump");
        assert_eq!(err("worker kill"), "Invalid argument: Missing PID for worker kill");
        assert_eq!(err("worker add two"), "Invalid argument: invalid literal for int() with base 10: 'two'");
        assert_eq!(err("dirty"), "Invalid argument: Missing dirty action (add|remove)");
        assert_eq!(err("fly"), "Invalid argument: Unknown command: fly");
        assert_eq!(err("show 'workers"), "Invalid argument: No closing quotation");
        assert_eq!(err("worker add 1e3"), "Invalid argument: invalid literal for int() with base 10: '1e3'");
        assert_eq!(err("worker kill 99999999999999999999"), "Invalid argument: 99999999999999999999 is too large");
    }
}
