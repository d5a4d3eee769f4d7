//! The one declaration of every Gunicorn 27 setting: name, section, flags,
//! default, validator, whether ferrocorn supports it, and help. The command
//! line, config files, `GUNICORN_CMD_ARGS`, `--print-config` and
//! docs/settings.md are all generated from these rows; a test compares them
//! with Gunicorn's own list (tests/data/gunicorn-27-settings.json).
//! ferrocorn's own settings (extensions Gunicorn does not have) are declared
//! in a second group after Gunicorn's, so that list stays exact and the
//! docs can show them apart.
//! Help texts are Gunicorn's one-line summaries (MIT, the Gunicorn authors).

use super::input::Input;
use super::pyvalue::{ClassRef, PyValue, ToPy};
use super::spec::{Action, AddrList, Origin, PyCallable, Show, Spec, StatsdHost, Support};
use super::validate::{self as v, Validated};
use super::SettingError;
use crate::http::policy::HeaderMapPolicy;
use crate::log::statsd::StatsdAddr;
use crate::net::proxy_protocol::ProxyMode;
use pyo3::prelude::*;

type Validator<T> = fn(Python<'_>, &Input) -> Validated<T>;

macro_rules! settings_table {
    ( gunicorn: { $( $name:ident : $ty:ty = {
            section: $section:literal,
            cli: [$($flag:literal),*],
            meta: $meta:expr,
            action: $action:expr,
            default: $default:expr,
            doc_default: $doc_default:literal,
            validate: $validate:expr,
            support: $support:expr,
            help: $help:literal $(,)?
        } ),* $(,)? }
      ferrocorn: { $( $xname:ident : $xty:ty = {
            section: $xsection:literal,
            cli: [$($xflag:literal),*],
            meta: $xmeta:expr,
            action: $xaction:expr,
            default: $xdefault:expr,
            doc_default: $xdoc_default:literal,
            validate: $xvalidate:expr,
            help: $xhelp:literal $(,)?
        } ),* $(,)? } ) => {
        /// Every setting's effective value, typed: Gunicorn's, then
        /// ferrocorn's extensions.
        #[derive(Debug)]
        pub struct Settings {
            $( pub $name: $ty, )*
            $( pub $xname: $xty, )*
        }

        /// Gunicorn's settings in Gunicorn's order, then the extensions.
        pub static SPECS: &[Spec] = &[
            $( Spec {
                name: stringify!($name),
                section: $section,
                cli: &[$($flag),*],
                meta: $meta,
                action: $action,
                doc_default: $doc_default,
                support: $support,
                origin: Origin::Gunicorn,
                help: $help,
            }, )*
            $( Spec {
                name: stringify!($xname),
                section: $xsection,
                cli: &[$($xflag),*],
                meta: $xmeta,
                action: $xaction,
                doc_default: $xdoc_default,
                support: Support::Yes,
                origin: Origin::Ferrocorn,
                help: $xhelp,
            }, )*
        ];

        impl Settings {
            /// Gunicorn's defaults (a few are read from the environment, as
            /// Gunicorn reads them: PORT, WEB_CONCURRENCY, FORWARDED_ALLOW_IPS).
            pub fn defaults(py: Python<'_>) -> Result<Settings, SettingError> {
                Ok(Settings {
                    $( $name: {
                        let input: Input = $default;
                        let f: Validator<$ty> = $validate;
                        f(py, &input).map_err(|e| SettingError::Invalid {
                            name: stringify!($name), value: input.describe(), reason: e })?
                    }, )*
                    $( $xname: {
                        let input: Input = $xdefault;
                        let f: Validator<$xty> = $xvalidate;
                        f(py, &input).map_err(|e| SettingError::Invalid {
                            name: stringify!($xname), value: input.describe(), reason: e })?
                    }, )*
                })
            }

            /// Validates `input` and stores it; the error names the setting.
            pub fn set(&mut self, py: Python<'_>, name: &str, input: &Input) -> Result<(), SettingError> {
                match name {
                    $( stringify!($name) => {
                        let f: Validator<$ty> = $validate;
                        self.$name = f(py, input).map_err(|e| SettingError::Invalid {
                            name: stringify!($name), value: input.describe(), reason: e })?;
                    } )*
                    $( stringify!($xname) => {
                        let f: Validator<$xty> = $xvalidate;
                        self.$xname = f(py, input).map_err(|e| SettingError::Invalid {
                            name: stringify!($xname), value: input.describe(), reason: e })?;
                    } )*
                    _ => return Err(SettingError::Unknown(name.to_owned())),
                }
                Ok(())
            }

            /// Every setting's Python value, by name (what Gunicorn's
            /// `Config.__getattr__` returns).
            pub fn to_py_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
                let d = pyo3::types::PyDict::new(py);
                $( d.set_item(stringify!($name), ToPy::to_py(&self.$name, py)?)?; )*
                $( d.set_item(stringify!($xname), ToPy::to_py(&self.$xname, py)?)?; )*
                Ok(d)
            }

            /// The value as `--print-config` shows it.
            pub fn show(&self, name: &str) -> Option<String> {
                match name {
                    $( stringify!($name) => Some(Show::show(&self.$name)), )*
                    $( stringify!($xname) => Some(Show::show(&self.$xname)), )*
                    _ => None,
                }
            }
        }
    };
}

fn env_or(var: &str, fallback: Input) -> Input {
    match std::env::var(var) {
        Ok(s) => Input::Str(s),
        Err(_) => fallback,
    }
}

fn default_bind() -> Input {
    match std::env::var("PORT") {
        Ok(port) => Input::List(vec![Input::Str(format!("0.0.0.0:{port}"))]),
        Err(_) => Input::List(vec![Input::Str("127.0.0.1:8000".into())]),
    }
}

fn cwd() -> Input {
    Input::Str(std::env::current_dir().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| ".".into()))
}

fn str_in(s: &str) -> Input {
    Input::Str(s.to_owned())
}

fn hook(arity: usize) -> Validator<PyCallable> {
    // One function per arity keeps the rows declarative while the validator
    // stays a plain fn pointer.
    match arity {
        1 => |py, i| v::callable(py, i, Some(1)).map(PyCallable),
        2 => |py, i| v::callable(py, i, Some(2)).map(PyCallable),
        _ => |py, i| v::callable(py, i, Some(3)).map(PyCallable),
    }
}

/// `validate_post_request`: 2, 3 or 4 arguments.
fn post_request(py: Python<'_>, i: &Input) -> Validated<PyCallable> {
    let f = v::callable(py, i, None)?;
    if let Some(obj) = &f {
        let n = v::arity_of(obj.bind(py)).map_err(|e| e.to_string())?;
        if !(2..=4).contains(&n) {
            return Err("Value must have an arity of: 4".into());
        }
    }
    Ok(PyCallable(f))
}

/// `validate_class`: ferrocorn takes the worker or logger class by name.
fn class_name(_: Python<'_>, i: &Input) -> Validated<String> {
    match i {
        Input::Object { repr, .. } => {
            Err(format!("ferrocorn takes a class by its dotted name, not a class object ({repr})"))
        }
        other => v::string(other),
    }
}

/// uid_t and gid_t are 32 bits: a larger id would wrap when the workers
/// switch to it (4294967296 to 0, which is root and also "leave it").
fn id_in_range(n: i64, what: &str) -> Validated<i64> {
    if (0..=i64::from(u32::MAX)).contains(&n) {
        Ok(n)
    } else {
        Err(format!("Invalid {what} id: {n}"))
    }
}

fn user_id(_: Python<'_>, i: &Input) -> Validated<i64> {
    match i {
        // SAFETY: geteuid cannot fail and touches no memory of ours.
        Input::None => Ok(i64::from(unsafe { libc::geteuid() })),
        Input::Int(n) => i64::try_from(*n).map_err(|e| e.to_string()).and_then(|n| id_in_range(n, "user")),
        Input::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().map_err(|_| format!("Invalid user id: {s}")).and_then(|n| id_in_range(n, "user"))
        }
        Input::Str(s) => crate::util::users::uid_by_name(s).ok_or_else(|| format!("No such user: '{s}'")),
        other => Err(format!("Invalid user: {}", other.describe())),
    }
}

fn group_id(_: Python<'_>, i: &Input) -> Validated<i64> {
    match i {
        // SAFETY: getegid cannot fail and touches no memory of ours.
        Input::None => Ok(i64::from(unsafe { libc::getegid() })),
        Input::Int(n) => i64::try_from(*n).map_err(|e| e.to_string()).and_then(|n| id_in_range(n, "group")),
        Input::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().map_err(|_| format!("Invalid group id: {s}")).and_then(|n| id_in_range(n, "group"))
        }
        Input::Str(s) => crate::util::users::gid_by_name(s).ok_or_else(|| format!("No such group: '{s}'")),
        other => Err(format!("Invalid group: {}", other.describe())),
    }
}

fn proxy_protocol(_: Python<'_>, i: &Input) -> Validated<ProxyMode> {
    match i {
        Input::None => Ok(ProxyMode::Off),
        Input::Bool(b) => Ok(if *b { ProxyMode::Auto } else { ProxyMode::Off }),
        Input::Str(s) => s.parse(),
        _ => Err("proxy_protocol must be string or bool".into()),
    }
}

fn lowered_choice(allowed: &'static [&'static str], what: &'static str) -> impl Fn(&Input) -> Validated<String> {
    move |i| match i {
        Input::None => Ok(allowed[0].to_owned()),
        other => v::choice(other, allowed, what, true),
    }
}

/// Gunicorn takes any string and serves HTTP for all but `uwsgi`; a typo
/// here stops the start instead.
fn protocol(_: Python<'_>, i: &Input) -> Validated<String> {
    let p = v::string(i)?;
    match p.as_str() {
        "http" | "uwsgi" => Ok(p),
        _ => Err(format!("Invalid protocol: {p} (valid: http, uwsgi)")),
    }
}

fn http_protocols(_: Python<'_>, i: &Input) -> Validated<String> {
    let s = match i {
        Input::None => return Ok("h1".into()),
        Input::Str(s) => s.trim().to_ascii_lowercase(),
        _ => return Err("http_protocols must be a string".into()),
    };
    let protos: Vec<&str> = s.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if protos.is_empty() {
        return Ok("h1".into());
    }
    for p in &protos {
        if *p != "h1" && *p != "h2" {
            return Err(format!("Invalid http protocol: {p} (valid: h1, h2)"));
        }
    }
    Ok(protos.join(","))
}

fn http2_cleartext(_: Python<'_>, i: &Input) -> Validated<String> {
    match i {
        Input::None => Ok("off".into()),
        Input::Bool(b) => Ok(if *b { "prior-knowledge" } else { "off" }.into()),
        other => v::choice(other, &["off", "prior-knowledge", "upgrade", "both"], "http2_cleartext", true),
    }
}

fn ranged(py: Python<'_>, i: &Input, lo: i64, hi: i64, what: &str) -> Validated<i64> {
    let n = v::pos_int(py, i)?;
    if n < lo || n > hi {
        return Err(format!("{what} must be between {lo} and {hi}, got {n}"));
    }
    Ok(n)
}

fn statsd_address(py: Python<'_>, i: &Input) -> Validated<StatsdHost> {
    match v::opt_string(i)? {
        None => Ok(StatsdHost(None)),
        Some(addr) => StatsdAddr::parse(py, &addr).map(|a| StatsdHost(Some(a))),
    }
}

fn files_or_patterns(_: Python<'_>, i: &Input) -> Validated<Vec<String>> {
    let items = v::string_list(i)?;
    for item in &items {
        let is_glob = item.contains(['*', '?', '[']);
        if !is_glob && !std::path::Path::new(item).exists() {
            return Err(format!("File {item} does not exists."));
        }
    }
    Ok(items)
}

fn control_socket_default() -> Input {
    match std::env::var("XDG_RUNTIME_DIR") {
        // Gunicorn only takes XDG_RUNTIME_DIR when it is a directory.
        Ok(dir) if !dir.is_empty() && std::path::Path::new(&dir).is_dir() => Input::Str(format!("{dir}/gunicorn.ctl")),
        _ => {
            let home = std::env::var("HOME").unwrap_or_else(|_| "~".into());
            Input::Str(format!("{home}/.gunicorn/gunicorn.ctl"))
        }
    }
}

/// `validate_pos_int` on an `auto_int` (0o600, 0600 or 384).
fn socket_mode(py: Python<'_>, i: &Input) -> Validated<i64> {
    let n = v::auto_int(py, i)?;
    if n < 0 {
        return Err(format!("Value must be positive: {n}"));
    }
    Ok(n)
}

/// `--metrics-bind`: a TCP HOST:PORT (the endpoint is HTTP on TCP only).
fn metrics_address(py: Python<'_>, i: &Input) -> Validated<Option<String>> {
    let Some(text) = v::opt_string(i)? else { return Ok(None) };
    match crate::net::bind::BindSpec::parse(py, &text)? {
        crate::net::bind::BindSpec::Tcp { .. } => Ok(Some(text)),
        _ => Err(format!("'{text}' is not a TCP address (HOST:PORT)")),
    }
}

/// `dirty_apps`: a list of `module:Class` or `module:Class:N` (Gunicorn
/// fails on a bad entry when its master builds the dirty arbiter).
fn dirty_apps(i: &Input) -> Validated<Vec<String>> {
    let list = v::string_list(i)?;
    crate::dirty::spec::AppSpec::parse_all(&list).map_err(|e| e.to_string())?;
    Ok(list)
}

settings_table! {
gunicorn: {
    config: String = {
        section: "Config File", cli: ["-c", "--config"], meta: Some("CONFIG"), action: Action::Store,
        default: str_in("./gunicorn.conf.py"), doc_default: "./gunicorn.conf.py",
        validate: |_, i| v::string(i), support: Support::Yes,
        help: "The config file: PATH, file:PATH, or python:MODULE_NAME.",
    },
    wsgi_app: Option<String> = {
        section: "Config File", cli: [], meta: Some("STRING"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i), support: Support::Yes,
        help: "A WSGI application path in pattern $(MODULE_NAME):$(VARIABLE_NAME).",
    },
    bind: Vec<String> = {
        section: "Server Socket", cli: ["-b", "--bind"], meta: Some("ADDRESS"), action: Action::Append,
        default: default_bind(), doc_default: "['127.0.0.1:8000']",
        validate: |_, i| v::string_list(i), support: Support::Yes,
        help: "The socket to bind: HOST, HOST:PORT, unix:PATH, fd://FD (repeatable).",
    },
    backlog: usize = {
        section: "Server Socket", cli: ["--backlog"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(2048), doc_default: "2048",
        validate: |py, i| v::count(py, i), support: Support::Yes,
        help: "The maximum number of pending connections.",
    },
    workers: usize = {
        section: "Worker Processes", cli: ["-w", "--workers"], meta: Some("INT"), action: Action::Int,
        default: env_or("WEB_CONCURRENCY", Input::Int(1)), doc_default: "1",
        validate: |py, i| v::count(py, i), support: Support::Yes,
        help: "The number of worker processes for handling requests.",
    },
    worker_class: String = {
        section: "Worker Processes", cli: ["-k", "--worker-class"], meta: Some("STRING"), action: Action::Store,
        default: str_in("sync"), doc_default: "sync",
        validate: class_name, support: Support::Yes,
        help: "The type of workers to use.",
    },
    threads: usize = {
        section: "Worker Processes", cli: ["--threads"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(1), doc_default: "1",
        validate: |py, i| v::count(py, i), support: Support::Yes,
        help: "The number of worker threads for handling requests.",
    },
    worker_connections: usize = {
        section: "Worker Processes", cli: ["--worker-connections"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(1000), doc_default: "1000",
        validate: |py, i| v::count(py, i), support: Support::Yes,
        help: "The maximum number of simultaneous clients.",
    },
    max_requests: u64 = {
        section: "Worker Processes", cli: ["--max-requests"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(0), doc_default: "0",
        validate: |py, i| v::amount(py, i), support: Support::Yes,
        help: "The maximum number of requests a worker will process before restarting.",
    },
    max_requests_jitter: u64 = {
        section: "Worker Processes", cli: ["--max-requests-jitter"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(0), doc_default: "0",
        validate: |py, i| v::amount(py, i), support: Support::Yes,
        help: "The maximum jitter to add to the max_requests setting.",
    },
    timeout: std::time::Duration = {
        section: "Worker Processes", cli: ["-t", "--timeout"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(30), doc_default: "30",
        validate: |py, i| v::seconds(py, i), support: Support::Yes,
        help: "Workers silent for more than this many seconds are killed and restarted.",
    },
    graceful_timeout: std::time::Duration = {
        section: "Worker Processes", cli: ["--graceful-timeout"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(30), doc_default: "30",
        validate: |py, i| v::seconds(py, i), support: Support::Yes,
        help: "Timeout for graceful workers restart in seconds.",
    },
    keepalive: std::time::Duration = {
        section: "Worker Processes", cli: ["--keep-alive"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(2), doc_default: "2",
        validate: |py, i| v::seconds(py, i), support: Support::Yes,
        help: "The number of seconds to wait for requests on a Keep-Alive connection.",
    },
    limit_request_line: usize = {
        section: "Security", cli: ["--limit-request-line"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(4094), doc_default: "4094",
        validate: |py, i| v::count(py, i), support: Support::Yes,
        help: "The maximum size of HTTP request line in bytes.",
    },
    limit_request_fields: usize = {
        section: "Security", cli: ["--limit-request-fields"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(100), doc_default: "100",
        validate: |py, i| v::count(py, i), support: Support::Yes,
        help: "Limit the number of HTTP headers fields in a request.",
    },
    limit_request_field_size: usize = {
        section: "Security", cli: ["--limit-request-field_size"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(8190), doc_default: "8190",
        validate: |py, i| v::count(py, i), support: Support::Yes,
        help: "Limit the allowed size of an HTTP request header field.",
    },
    reload: bool = {
        section: "Debugging", cli: ["--reload"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Restart workers when code changes.",
    },
    reload_engine: String = {
        section: "Debugging", cli: ["--reload-engine"], meta: Some("STRING"), action: Action::Store,
        default: str_in("auto"), doc_default: "auto",
        validate: |_, i| lowered_choice(&["auto", "poll", "inotify"], "reload_engine")(i),
        support: Support::Yes,
        help: "The implementation that should be used to power reload.",
    },
    reload_extra_files: Vec<String> = {
        section: "Debugging", cli: ["--reload-extra-file"], meta: Some("FILES"), action: Action::Append,
        default: Input::List(vec![]), doc_default: "[]",
        validate: files_or_patterns, support: Support::Yes,
        help: "Extends reload option to also watch and reload on additional files.",
    },
    spew: bool = {
        section: "Debugging", cli: ["--spew"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Install a trace function that spews every line executed by the server.",
    },
    check_config: bool = {
        section: "Debugging", cli: ["--check-config"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Check the configuration and exit (status 0 if the configuration and app load).",
    },
    print_config: bool = {
        section: "Debugging", cli: ["--print-config"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Print the configuration settings as fully resolved. Implies check-config.",
    },
    preload_app: bool = {
        section: "Server Mechanics", cli: ["--preload"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Load application code before the worker processes are forked.",
    },
    sendfile: bool = {
        section: "Server Mechanics", cli: ["--no-sendfile"], meta: None, action: Action::StoreFalse,
        default: env_or("SENDFILE", Input::Bool(true)), doc_default: "None",
        validate: |_, i| match i {
            // Gunicorn reads SENDFILE as y/1/yes/true when the setting is unset.
            Input::Str(s) => Ok(matches!(s.to_ascii_lowercase().as_str(), "y" | "1" | "yes" | "true")),
            Input::None => Ok(true),
            other => v::boolean(other),
        },
        support: Support::Yes,
        help: "Disables the use of sendfile().",
    },
    reuse_port: bool = {
        section: "Server Mechanics", cli: ["--reuse-port"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Set the SO_REUSEPORT flag on the listening socket.",
    },
    chdir: String = {
        section: "Server Mechanics", cli: ["--chdir"], meta: None, action: Action::Store,
        default: cwd(), doc_default: "<the current directory at start>",
        validate: |_, i| v::chdir(i), support: Support::Yes,
        help: "Change directory to specified directory before loading apps.",
    },
    daemon: bool = {
        section: "Server Mechanics", cli: ["-D", "--daemon"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Daemonize the Gunicorn process.",
    },
    raw_env: Vec<String> = {
        section: "Server Mechanics", cli: ["-e", "--env"], meta: Some("ENV"), action: Action::Append,
        default: Input::List(vec![]), doc_default: "[]",
        validate: |_, i| v::string_list(i), support: Support::Yes,
        help: "Set environment variables in the execution environment (KEY=VALUE, repeatable).",
    },
    pidfile: Option<String> = {
        section: "Server Mechanics", cli: ["-p", "--pid"], meta: Some("FILE"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i), support: Support::Yes,
        help: "A filename to use for the PID file.",
    },
    worker_tmp_dir: Option<String> = {
        section: "Server Mechanics", cli: ["--worker-tmp-dir"], meta: Some("DIR"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i),
        support: Support::Unneeded("the worker heartbeat lives in shared memory, not in temporary files"),
        help: "A directory to use for the worker heartbeat temporary file.",
    },
    user: i64 = {
        section: "Server Mechanics", cli: ["-u", "--user"], meta: Some("USER"), action: Action::Store,
        default: Input::None, doc_default: "<os.geteuid()>",
        validate: user_id, support: Support::Yes,
        help: "Switch worker processes to run as this user.",
    },
    group: i64 = {
        section: "Server Mechanics", cli: ["-g", "--group"], meta: Some("GROUP"), action: Action::Store,
        default: Input::None, doc_default: "<os.getegid()>",
        validate: group_id, support: Support::Yes,
        help: "Switch worker process to run as this group.",
    },
    umask: i64 = {
        section: "Server Mechanics", cli: ["-m", "--umask"], meta: Some("INT"), action: Action::AutoInt,
        default: Input::Int(0), doc_default: "0",
        validate: |py, i| v::auto_int(py, i).and_then(|n| if n < 0 { Err(format!("Value must be positive: {n}")) } else { Ok(n) }),
        support: Support::Yes,
        help: "A bit mask for the file mode on files written by Gunicorn.",
    },
    initgroups: bool = {
        section: "Server Mechanics", cli: ["--initgroups"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Set the worker process's group access list with all of the groups of the user.",
    },
    tmp_upload_dir: Option<String> = {
        section: "Server Mechanics", cli: [], meta: Some("DIR"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i),
        support: Support::Unneeded("Gunicorn 27 does not use it either; request bodies are streamed, never spooled"),
        help: "Directory to store temporary request data as they are read.",
    },
    secure_scheme_headers: Vec<(String, String)> = {
        section: "Server Mechanics", cli: [], meta: None, action: Action::Store,
        default: Input::Dict(vec![
            (str_in("X-FORWARDED-PROTOCOL"), str_in("ssl")),
            (str_in("X-FORWARDED-PROTO"), str_in("https")),
            (str_in("X-FORWARDED-SSL"), str_in("on")),
        ]),
        doc_default: "{'X-FORWARDED-PROTOCOL': 'ssl', 'X-FORWARDED-PROTO': 'https', 'X-FORWARDED-SSL': 'on'}",
        validate: |_, i| v::string_dict(i), support: Support::Yes,
        help: "Headers and values that the front-end proxy uses to indicate HTTPS requests.",
    },
    forwarded_allow_ips: AddrList = {
        section: "Server Mechanics", cli: ["--forwarded-allow-ips"], meta: Some("STRING"), action: Action::Store,
        default: env_or("FORWARDED_ALLOW_IPS", str_in("127.0.0.1,::1")), doc_default: "127.0.0.1,::1",
        validate: |_, i| v::addr_list(i), support: Support::Yes,
        help: "Front-end's IP addresses or networks from which allowed to handle set secure headers.",
    },
    accesslog: Option<String> = {
        section: "Logging", cli: ["--access-logfile"], meta: Some("FILE"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i), support: Support::Yes,
        help: "The Access log file to write to ('-' means stdout).",
    },
    disable_redirect_access_to_syslog: bool = {
        section: "Logging", cli: ["--disable-redirect-access-to-syslog"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Disable redirect access logs to syslog.",
    },
    access_log_format: String = {
        section: "Logging", cli: ["--access-logformat"], meta: Some("STRING"), action: Action::Store,
        default: str_in(r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#),
        doc_default: r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#,
        validate: |_, i| v::string(i), support: Support::Yes,
        help: "The access log format.",
    },
    errorlog: String = {
        section: "Logging", cli: ["--error-logfile", "--log-file"], meta: Some("FILE"), action: Action::Store,
        default: str_in("-"), doc_default: "-",
        validate: |_, i| v::string(i), support: Support::Yes,
        help: "The Error log file to write to ('-' means stderr).",
    },
    loglevel: String = {
        section: "Logging", cli: ["--log-level"], meta: Some("LEVEL"), action: Action::Store,
        default: str_in("info"), doc_default: "info",
        validate: |_, i| v::string(i), support: Support::Yes,
        help: "The granularity of Error log outputs (debug, info, warning, error, critical).",
    },
    capture_output: bool = {
        section: "Logging", cli: ["--capture-output"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Redirect stdout/stderr to specified file in errorlog.",
    },
    logger_class: ClassRef = {
        section: "Logging", cli: ["--logger-class"], meta: Some("STRING"), action: Action::Store,
        default: str_in("gunicorn.glogging.Logger"), doc_default: "gunicorn.glogging.Logger",
        validate: ClassRef::validate, support: Support::Yes,
        help: "The logger you want to use to log events in Gunicorn.",
    },
    logconfig: Option<String> = {
        section: "Logging", cli: ["--log-config"], meta: Some("FILE"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i), support: Support::Yes,
        help: "The log config file to use.",
    },
    logconfig_dict: PyValue = {
        section: "Logging", cli: [], meta: None, action: Action::Store,
        default: Input::Dict(vec![]), doc_default: "{}",
        validate: PyValue::dict, support: Support::Yes,
        help: "The log config dictionary to use (Python logging.config.dictConfig).",
    },
    logconfig_json: Option<String> = {
        section: "Logging", cli: ["--log-config-json"], meta: Some("FILE"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i), support: Support::Yes,
        help: "The log config to read config from a JSON file.",
    },
    syslog_addr: String = {
        section: "Logging", cli: ["--log-syslog-to"], meta: Some("SYSLOG_ADDR"), action: Action::Store,
        default: str_in("udp://localhost:514"), doc_default: "udp://localhost:514",
        validate: |_, i| v::string(i), support: Support::Yes,
        help: "Address to send syslog messages.",
    },
    syslog: bool = {
        section: "Logging", cli: ["--log-syslog"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Send Gunicorn logs to syslog.",
    },
    syslog_prefix: Option<String> = {
        section: "Logging", cli: ["--log-syslog-prefix"], meta: Some("SYSLOG_PREFIX"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i), support: Support::Yes,
        help: "Makes Gunicorn use the parameter as program-name in the syslog entries.",
    },
    syslog_facility: String = {
        section: "Logging", cli: ["--log-syslog-facility"], meta: Some("SYSLOG_FACILITY"), action: Action::Store,
        default: str_in("user"), doc_default: "user",
        validate: |_, i| v::string(i), support: Support::Yes,
        help: "Syslog facility name.",
    },
    enable_stdio_inheritance: bool = {
        section: "Logging", cli: ["-R", "--enable-stdio-inheritance"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Enable stdio inheritance.",
    },
    statsd_host: StatsdHost = {
        section: "Logging", cli: ["--statsd-host"], meta: Some("STATSD_ADDR"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: statsd_address, support: Support::Yes,
        help: "The address of the StatsD server to log to.",
    },
    dogstatsd_tags: String = {
        section: "Logging", cli: ["--dogstatsd-tags"], meta: Some("DOGSTATSD_TAGS"), action: Action::Store,
        default: str_in(""), doc_default: "",
        validate: |_, i| v::string(i), support: Support::Yes,
        help: "A comma-delimited list of datadog statsd (dogstatsd) tags to append to statsd metrics.",
    },
    statsd_prefix: String = {
        section: "Logging", cli: ["--statsd-prefix"], meta: Some("STATSD_PREFIX"), action: Action::Store,
        default: str_in(""), doc_default: "",
        validate: |_, i| v::string(i), support: Support::Yes,
        help: "Prefix to use when emitting statsd metrics.",
    },
    enable_backlog_metric: bool = {
        section: "Logging", cli: ["--enable-backlog-metric"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Enable socket backlog metric (only supported on Linux).",
    },
    proc_name: Option<String> = {
        section: "Process Naming", cli: ["-n", "--name"], meta: Some("STRING"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i), support: Support::Yes,
        help: "A base to use with setproctitle for process naming.",
    },
    default_proc_name: String = {
        section: "Process Naming", cli: [], meta: None, action: Action::Store,
        default: str_in("ferrocorn"), doc_default: "ferrocorn",
        validate: |_, i| v::string(i), support: Support::Yes,
        help: "Internal setting that is adjusted for each type of application.",
    },
    pythonpath: Option<String> = {
        section: "Server Mechanics", cli: ["--pythonpath"], meta: Some("STRING"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i), support: Support::Yes,
        help: "A comma-separated list of directories to add to the Python path.",
    },
    paste: Option<String> = {
        section: "Server Mechanics", cli: ["--paste", "--paster"], meta: Some("STRING"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i), support: Support::Yes,
        help: "Load a PasteDeploy config file.",
    },
    on_starting: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable on_starting(1 args)>",
        validate: hook(1), support: Support::Yes,
        help: "Called just before the master process is initialized.",
    },
    on_reload: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable on_reload(1 args)>",
        validate: hook(1), support: Support::Yes,
        help: "Called to recycle workers during a reload via SIGHUP.",
    },
    when_ready: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable when_ready(1 args)>",
        validate: hook(1), support: Support::Yes,
        help: "Called just after the server is started.",
    },
    pre_fork: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable pre_fork(2 args)>",
        validate: hook(2), support: Support::Yes,
        help: "Called just before a worker is forked.",
    },
    post_fork: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable post_fork(2 args)>",
        validate: hook(2), support: Support::Yes,
        help: "Called just after a worker has been forked.",
    },
    post_worker_init: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable post_worker_init(1 args)>",
        validate: hook(1), support: Support::Yes,
        help: "Called just after a worker has initialized the application.",
    },
    worker_int: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable worker_int(1 args)>",
        validate: hook(1), support: Support::Yes,
        help: "Called just after a worker exited on SIGINT or SIGQUIT.",
    },
    worker_abort: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable worker_abort(1 args)>",
        validate: hook(1), support: Support::Yes,
        help: "Called when a worker received the SIGABRT signal.",
    },
    pre_exec: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable pre_exec(1 args)>",
        validate: hook(1), support: Support::Yes,
        help: "Called just before a new master process is forked.",
    },
    pre_request: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable pre_request(2 args)>",
        validate: hook(2), support: Support::Yes,
        help: "Called just before a worker processes the request.",
    },
    post_request: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable post_request(4 args)>",
        validate: post_request, support: Support::Yes,
        help: "Called after a worker processes the request.",
    },
    child_exit: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable child_exit(2 args)>",
        validate: hook(2), support: Support::Yes,
        help: "Called just after a worker has been exited, in the master process.",
    },
    worker_exit: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable worker_exit(2 args)>",
        validate: hook(2), support: Support::Yes,
        help: "Called just after a worker has been exited, in the worker process.",
    },
    nworkers_changed: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable nworkers_changed(3 args)>",
        validate: hook(3), support: Support::Yes,
        help: "Called just after num_workers has been changed.",
    },
    on_exit: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable on_exit(1 args)>",
        validate: hook(1), support: Support::Yes,
        help: "Called just before exiting Gunicorn.",
    },
    ssl_context: PyCallable = {
        section: "Server Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable ssl_context(2 args)>",
        validate: hook(2), support: Support::Yes,
        help: "Called when SSLContext is needed.",
    },
    proxy_protocol: ProxyMode = {
        section: "Server Mechanics", cli: ["--proxy-protocol"], meta: Some("MODE"), action: Action::OptionalValue("auto"),
        default: str_in("off"), doc_default: "off",
        validate: proxy_protocol, support: Support::Yes,
        help: "Enable PROXY protocol support (off, v1, v2, auto; the flag alone means auto).",
    },
    proxy_allow_ips: AddrList = {
        section: "Server Mechanics", cli: ["--proxy-allow-from"], meta: None, action: Action::Store,
        default: str_in("127.0.0.1,::1"), doc_default: "127.0.0.1,::1",
        validate: |_, i| v::addr_list(i), support: Support::Yes,
        help: "Front-end's IP addresses or networks from which allowed accept proxy requests.",
    },
    protocol: String = {
        section: "Server Mechanics", cli: ["--protocol"], meta: Some("STRING"), action: Action::Store,
        default: str_in("http"), doc_default: "http",
        validate: protocol, support: Support::Yes,
        help: "The protocol for incoming connections (http or uwsgi).",
    },
    uwsgi_allow_ips: AddrList = {
        section: "Server Mechanics", cli: ["--uwsgi-allow-from"], meta: None, action: Action::Store,
        default: str_in("127.0.0.1,::1"), doc_default: "127.0.0.1,::1",
        validate: |_, i| v::addr_list(i), support: Support::Yes,
        help: "IPs allowed to send uWSGI protocol requests (comma separated).",
    },
    keyfile: Option<String> = {
        section: "SSL", cli: ["--keyfile"], meta: Some("FILE"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i), support: Support::Yes,
        help: "SSL key file.",
    },
    certfile: Option<String> = {
        section: "SSL", cli: ["--certfile"], meta: Some("FILE"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i), support: Support::Yes,
        help: "SSL certificate file.",
    },
    ssl_version: i64 = {
        section: "SSL", cli: ["--ssl-version"], meta: None, action: Action::Store,
        default: Input::Int(2), doc_default: "2",
        validate: |py, i| v::pos_int(py, i), support: Support::Unneeded("deprecated, and ignored as Gunicorn ignores it: TLS 1.2 and 1.3 are offered (ssl_context can narrow them)"),
        help: "SSL version to use (deprecated and ignored by Gunicorn; use ssl_context).",
    },
    cert_reqs: i64 = {
        section: "SSL", cli: ["--cert-reqs"], meta: None, action: Action::Store,
        default: Input::Int(0), doc_default: "0",
        validate: |py, i| v::pos_int(py, i), support: Support::Yes,
        help: "Whether client certificate is required (see stdlib ssl module's).",
    },
    ca_certs: Option<String> = {
        section: "SSL", cli: ["--ca-certs"], meta: Some("FILE"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i), support: Support::Yes,
        help: "CA certificates file.",
    },
    suppress_ragged_eofs: bool = {
        section: "SSL", cli: ["--suppress-ragged-eofs"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(true), doc_default: "True",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Suppress ragged EOFs (see stdlib ssl module's).",
    },
    do_handshake_on_connect: bool = {
        section: "SSL", cli: ["--do-handshake-on-connect"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Unneeded("the engine runs every handshake as data arrives, without blocking the worker, whatever this says"),
        help: "Whether to perform SSL handshake on socket connect (see stdlib ssl module's).",
    },
    ciphers: Option<String> = {
        section: "SSL", cli: ["--ciphers"], meta: None, action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |_, i| v::opt_string(i), support: Support::Yes,
        help: "SSL Cipher suite to use, in the format of an OpenSSL cipher list.",
    },
    http_protocols: String = {
        section: "HTTP/2", cli: ["--http-protocols"], meta: Some("STRING"), action: Action::Store,
        default: str_in("h1"), doc_default: "h1",
        validate: http_protocols, support: Support::Yes,
        help: "HTTP protocol versions to support (comma-separated, order = preference).",
    },
    http2_cleartext: String = {
        section: "HTTP/2", cli: ["--http2-cleartext"], meta: Some("STRING"), action: Action::Store,
        default: str_in("off"), doc_default: "off",
        validate: http2_cleartext, support: Support::Yes,
        help: "Accept HTTP/2 over cleartext TCP (h2c), and by which mechanism.",
    },
    http2_max_concurrent_streams: i64 = {
        section: "HTTP/2", cli: ["--http2-max-concurrent-streams"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(100), doc_default: "100",
        validate: |py, i| ranged(py, i, 1, i64::MAX, "HTTP/2 max concurrent streams"), support: Support::Yes,
        help: "Maximum number of concurrent HTTP/2 streams per connection.",
    },
    http2_initial_window_size: i64 = {
        section: "HTTP/2", cli: ["--http2-initial-window-size"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(65535), doc_default: "65535",
        validate: |py, i| ranged(py, i, 0, 2_147_483_647, "HTTP/2 window size"), support: Support::Yes,
        help: "Initial HTTP/2 flow control window size in bytes.",
    },
    http2_max_frame_size: i64 = {
        section: "HTTP/2", cli: ["--http2-max-frame-size"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(16384), doc_default: "16384",
        validate: |py, i| ranged(py, i, 16384, 16_777_215, "http2_max_frame_size"), support: Support::Yes,
        help: "Maximum HTTP/2 frame payload size in bytes.",
    },
    http2_max_header_list_size: i64 = {
        section: "HTTP/2", cli: ["--http2-max-header-list-size"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(65536), doc_default: "65536",
        validate: |py, i| v::pos_int(py, i), support: Support::Yes,
        help: "Maximum size of HTTP/2 header list in bytes (HPACK protection).",
    },
    raw_paste_global_conf: Vec<String> = {
        section: "Server Mechanics", cli: ["--paste-global"], meta: Some("CONF"), action: Action::Append,
        default: Input::List(vec![]), doc_default: "[]",
        validate: |_, i| v::string_list(i), support: Support::Yes,
        help: "Set a PasteDeploy global config variable in key=value form.",
    },
    permit_obsolete_folding: bool = {
        section: "Server Mechanics", cli: ["--permit-obsolete-folding"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Permit requests employing obsolete HTTP line folding mechanism.",
    },
    strip_header_spaces: bool = {
        section: "Server Mechanics", cli: ["--strip-header-spaces"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Strip spaces present between the header name and the ':'.",
    },
    permit_unconventional_http_method: bool = {
        section: "Server Mechanics", cli: ["--permit-unconventional-http-method"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Permit HTTP methods not matching conventions, such as IANA registration guidelines.",
    },
    permit_unconventional_http_version: bool = {
        section: "Server Mechanics", cli: ["--permit-unconventional-http-version"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Permit HTTP version not matching conventions of 2023.",
    },
    casefold_http_method: bool = {
        section: "Server Mechanics", cli: ["--casefold-http-method"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Transform received HTTP methods to uppercase.",
    },
    forwarder_headers: Vec<String> = {
        section: "Server Mechanics", cli: ["--forwarder-headers"], meta: None, action: Action::Store,
        default: str_in("SCRIPT_NAME,PATH_INFO"), doc_default: "SCRIPT_NAME,PATH_INFO",
        validate: |_, i| v::comma_list(i), support: Support::Yes,
        help: "Upper-case header field names that the front-end proxy may set, overriding environ.",
    },
    header_map: HeaderMapPolicy = {
        section: "Server Mechanics", cli: ["--header-map"], meta: None, action: Action::Store,
        default: str_in("drop"), doc_default: "drop",
        validate: |_, i| lowered_choice(&["drop", "refuse", "dangerous"], "header_map")(i).and_then(|m| m.parse()),
        support: Support::Yes,
        help: "How header field names with underscores are mapped into environ (drop, refuse, dangerous).",
    },
    asgi_loop: String = {
        section: "Worker Processes", cli: ["--asgi-loop"], meta: Some("STRING"), action: Action::Store,
        default: str_in("auto"), doc_default: "auto",
        validate: |_, i| lowered_choice(&["auto", "asyncio", "uvloop"], "asgi_loop")(i),
        support: Support::Yes,
        help: "Event loop implementation for ASGI workers.",
    },
    asgi_lifespan: String = {
        section: "Worker Processes", cli: ["--asgi-lifespan"], meta: Some("STRING"), action: Action::Store,
        default: str_in("auto"), doc_default: "auto",
        validate: |_, i| lowered_choice(&["auto", "on", "off"], "asgi_lifespan")(i),
        support: Support::Yes,
        help: "Control ASGI lifespan protocol handling.",
    },
    asgi_disconnect_grace_period: std::time::Duration = {
        section: "Worker Processes", cli: ["--asgi-disconnect-grace-period"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(3), doc_default: "3",
        validate: |py, i| v::seconds(py, i), support: Support::Yes,
        help: "Grace period (seconds) for ASGI apps to handle client disconnects.",
    },
    websocket_max_message_size: u64 = {
        section: "Worker Processes", cli: ["--websocket-max-message-size"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(16_777_216), doc_default: "16777216",
        validate: |py, i| v::amount(py, i), support: Support::Yes,
        help: "Largest WebSocket message, in bytes, the asgi worker accepts.",
    },
    http_parser: String = {
        section: "Worker Processes", cli: ["--http-parser"], meta: Some("STRING"), action: Action::Store,
        default: str_in("auto"), doc_default: "auto",
        validate: |_, i| lowered_choice(&["auto", "fast", "python"], "http_parser")(i),
        support: Support::Unneeded("ferrocorn always parses with its own Rust parser, which follows the rules of Gunicorn's python parser (including the compatibility flags the fast parser refuses)"),
        help: "HTTP parser implementation (auto, fast, python).",
    },
    root_path: String = {
        section: "Server Mechanics", cli: ["--root-path"], meta: Some("STRING"), action: Action::Store,
        default: str_in(""), doc_default: "",
        validate: |_, i| v::string(i), support: Support::Yes,
        help: "The root path for ASGI applications.",
    },
    dirty_apps: Vec<String> = {
        section: "Dirty Arbiters", cli: ["--dirty-app"], meta: Some("STRING"), action: Action::Append,
        default: Input::List(vec![]), doc_default: "[]",
        validate: |_, i| dirty_apps(i), support: Support::Yes,
        help: "Dirty applications to load in the dirty worker pool.",
    },
    dirty_workers: usize = {
        section: "Dirty Arbiters", cli: ["--dirty-workers"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(0), doc_default: "0",
        validate: |py, i| v::count(py, i), support: Support::Yes,
        help: "The number of dirty worker processes.",
    },
    dirty_timeout: std::time::Duration = {
        section: "Dirty Arbiters", cli: ["--dirty-timeout"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(300), doc_default: "300",
        validate: |py, i| v::seconds(py, i), support: Support::Yes,
        help: "Timeout for dirty task execution in seconds.",
    },
    dirty_threads: usize = {
        section: "Dirty Arbiters", cli: ["--dirty-threads"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(1), doc_default: "1",
        validate: |py, i| v::count(py, i), support: Support::Yes,
        help: "The number of threads per dirty worker.",
    },
    dirty_graceful_timeout: std::time::Duration = {
        section: "Dirty Arbiters", cli: ["--dirty-graceful-timeout"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(30), doc_default: "30",
        validate: |py, i| v::seconds(py, i), support: Support::Yes,
        help: "Timeout for graceful dirty worker shutdown in seconds.",
    },
    on_dirty_starting: PyCallable = {
        section: "Dirty Arbiter Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable on_dirty_starting(1 args)>",
        validate: hook(1), support: Support::Yes,
        help: "Called just before the dirty arbiter process is initialized.",
    },
    dirty_post_fork: PyCallable = {
        section: "Dirty Arbiter Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable dirty_post_fork(2 args)>",
        validate: hook(2), support: Support::Yes,
        help: "Called just after a dirty worker has been forked.",
    },
    dirty_worker_init: PyCallable = {
        section: "Dirty Arbiter Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable dirty_worker_init(1 args)>",
        validate: hook(1), support: Support::Yes,
        help: "Called just after a dirty worker has initialized all applications.",
    },
    dirty_worker_exit: PyCallable = {
        section: "Dirty Arbiter Hooks", cli: [], meta: None, action: Action::Store,
        default: Input::None, doc_default: "<callable dirty_worker_exit(2 args)>",
        validate: hook(2), support: Support::Yes,
        help: "Called when a dirty worker has exited.",
    },
    control_socket: String = {
        section: "Control", cli: ["--control-socket"], meta: Some("PATH"), action: Action::Store,
        default: control_socket_default(), doc_default: "<$XDG_RUNTIME_DIR/gunicorn.ctl, else ~/.gunicorn/gunicorn.ctl>",
        validate: |_, i| v::string(i), support: Support::Yes,
        help: "Unix socket path for control interface.",
    },
    control_socket_mode: i64 = {
        section: "Control", cli: ["--control-socket-mode"], meta: Some("INT"), action: Action::AutoInt,
        default: Input::Int(0o600), doc_default: "384",
        validate: |py, i| socket_mode(py, i), support: Support::Yes,
        help: "Permission mode for control socket.",
    },
    control_socket_disable: bool = {
        section: "Control", cli: ["--no-control-socket"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i), support: Support::Yes,
        help: "Disable control socket.",
    },
}
ferrocorn: {
    metrics_bind: Option<String> = {
        section: "ferrocorn extensions", cli: ["--metrics-bind"], meta: Some("ADDRESS"), action: Action::Store,
        default: Input::None, doc_default: "None",
        validate: |py, i| metrics_address(py, i),
        help: "HOST:PORT where the master serves Prometheus metrics (aggregated over all workers) at /metrics; off when None.",
    },
    max_worker_memory: u64 = {
        section: "ferrocorn extensions", cli: ["--max-worker-memory"], meta: Some("MiB"), action: Action::Store,
        default: Input::Int(0), doc_default: "0",
        validate: |py, i| v::amount(py, i),
        help: "Recycle a worker gracefully once its resident memory (RSS) passes this many MiB (0: never).",
    },
    preload_freeze: bool = {
        section: "ferrocorn extensions", cli: ["--no-preload-freeze"], meta: None, action: Action::StoreFalse,
        default: Input::Bool(true), doc_default: "True",
        validate: |_, i| v::boolean(i),
        help: "With --preload, do not gc.freeze() the preloaded heap before forking (freezing keeps the workers' garbage collector off the pages they share).",
    },
    memory_merge: bool = {
        section: "ferrocorn extensions", cli: ["--memory-merge"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i),
        help: "Let the kernel merge identical memory pages of the master and its workers (KSM; Linux 6.4+, and the host's /sys/kernel/mm/ksm/run must be 1): with --preload, the pages a worker copies when it uses preloaded objects merge back once their reference counts are restored. Read at start. See docs/operations.md.",
    },
    request_timeout: std::time::Duration = {
        section: "ferrocorn extensions", cli: ["--request-timeout"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(0), doc_default: "0",
        validate: |py, i| v::seconds(py, i),
        help: "Seconds a request may run before its handler is interrupted (504 if no response started, else the connection closes) while the worker goes on serving; a handler still running a grace period later gets its worker replaced gracefully. 0: no limit. Not the worker heartbeat --timeout. sync, gthread, gevent, eventlet and asgi workers (refused at start-up with the others). See docs/request-timeout.md.",
    },
    access_log_json: bool = {
        section: "ferrocorn extensions", cli: ["--access-log-json"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i),
        help: "Write the access log as JSON lines with OpenTelemetry HTTP field names, every value escaped (instead of --access-logformat).",
    },
    access_log_json_headers: Vec<String> = {
        section: "ferrocorn extensions", cli: ["--access-log-json-header"], meta: Some("NAME"), action: Action::Append,
        default: Input::List(Vec::new()), doc_default: "[]",
        validate: |_, i| v::string_list(i),
        help: "A request header to include in JSON access lines as http.request.header.NAME (repeatable).",
    },
    error_log_json: bool = {
        section: "ferrocorn extensions", cli: ["--log-json"], meta: None, action: Action::StoreTrue,
        default: Input::Bool(false), doc_default: "False",
        validate: |_, i| v::boolean(i),
        help: "Write the error log (--log-file) as JSON lines with OpenTelemetry log record fields.",
    },
    request_head_timeout: std::time::Duration = {
        section: "ferrocorn extensions", cli: ["--request-head-timeout"], meta: Some("INT"), action: Action::Int,
        default: Input::Int(30), doc_default: "30",
        validate: |py, i| v::seconds(py, i),
        help: "Seconds a client may take to send a whole request head once it has begun (0: no limit).",
    },
}
}

pub fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}
