//! The settings table against Gunicorn 27's own list of settings
//! (tests/data/gunicorn-27-settings.json, from `gunicorn.config.KNOWN_SETTINGS`):
//! the same names, the same flags, the same defaults, except where ferrocorn
//! documents a difference (docs/compatibility.md).

use _ferrocorn::settings::{Origin, Spec, SPECS};
use serde_json::Value;

/// The table's rows for Gunicorn's own settings (the extensions are checked
/// apart, in `extensions_stay_apart`).
fn ours() -> impl Iterator<Item = &'static Spec> {
    SPECS.iter().filter(|s| s.origin == Origin::Gunicorn)
}

/// Settings whose default ferrocorn shows differently, and why.
const DEFAULT_DIFFERENCES: &[(&str, &str)] = &[
    // Process titles read "ferrocorn: master [...]" when no app name is known.
    ("default_proc_name", "ferrocorn"),
];

fn gunicorn() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gunicorn-27-settings.json");
    let text = std::fs::read_to_string(path).expect("read the Gunicorn settings list");
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");
    doc["settings"].as_array().expect("a settings list").clone()
}

/// Python's `str()` of a default, as `--help` and the docs show it.
fn python_str(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(python_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter().map(|(k, v)| format!("'{k}': {}", python_repr(v))).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn python_repr(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        other => python_str(other),
    }
}

#[test]
fn same_names_in_the_same_order() {
    let ours: Vec<&str> = ours().map(|s| s.name).collect();
    let theirs: Vec<String> = gunicorn().iter().map(|s| s["name"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(ours, theirs);
}

#[test]
fn same_flags() {
    for g in gunicorn() {
        let name = g["name"].as_str().unwrap_or_default();
        let spec = _ferrocorn::settings::spec(name).unwrap_or_else(|| panic!("{name} missing"));
        let flags: Vec<&str> =
            g["cli"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        assert_eq!(spec.cli, flags.as_slice(), "flags of {name}");
    }
}

#[test]
fn same_defaults() {
    for g in gunicorn() {
        let name = g["name"].as_str().unwrap_or_default();
        let spec = _ferrocorn::settings::spec(name).unwrap_or_else(|| panic!("{name} missing"));
        let expected = match DEFAULT_DIFFERENCES.iter().find(|(n, _)| *n == name) {
            Some((_, ours)) => (*ours).to_owned(),
            None => python_str(&g["default"]),
        };
        assert_eq!(spec.doc_default, expected, "default of {name}");
    }
}

/// ferrocorn's own settings come after all of Gunicorn's, and share no
/// name or flag with them, so a Gunicorn setting can never be shadowed.
#[test]
fn extensions_stay_apart() {
    let first_extension = SPECS.iter().position(|s| s.origin == Origin::Ferrocorn).expect("some extensions");
    assert!(SPECS[first_extension..].iter().all(|s| s.origin == Origin::Ferrocorn), "extensions come last");
    let theirs = gunicorn();
    let names: Vec<&str> = theirs.iter().filter_map(|g| g["name"].as_str()).collect();
    let flags: Vec<&str> =
        theirs.iter().filter_map(|g| g["cli"].as_array()).flatten().filter_map(Value::as_str).collect();
    for ext in &SPECS[first_extension..] {
        assert!(!names.contains(&ext.name), "{} is a Gunicorn setting", ext.name);
        for flag in ext.cli {
            assert!(!flags.contains(flag), "{flag} is a Gunicorn flag");
            assert!(!flags.iter().any(|g| g.starts_with(flag)), "{flag} is a prefix of a Gunicorn flag");
            // Long flags may be abbreviated (argparse, clap's infer_long_args):
            // an abbreviation that named one Gunicorn setting must still do.
            for end in 3..flag.len() {
                let prefix = &flag[..end];
                let theirs: std::collections::BTreeSet<&str> = theirs
                    .iter()
                    .filter(|g| {
                        g["cli"]
                            .as_array()
                            .is_some_and(|c| c.iter().filter_map(Value::as_str).any(|f| f.starts_with(prefix)))
                    })
                    .filter_map(|g| g["name"].as_str())
                    .collect();
                assert!(theirs.len() != 1, "{prefix} abbreviated {theirs:?} and now also {flag}");
            }
        }
    }
    let ext: Vec<&str> = SPECS[first_extension..].iter().map(|s| s.name).collect();
    assert_eq!(
        ext,
        [
            "metrics_bind",
            "max_worker_memory",
            "preload_freeze",
            "memory_merge",
            "request_timeout",
            "access_log_json",
            "access_log_json_headers",
            "error_log_json",
            "request_head_timeout"
        ]
    );
}
