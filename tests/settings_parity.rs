//! The settings table against Gunicorn 27's own list of settings
//! (tests/data/gunicorn-27-settings.json, from `gunicorn.config.KNOWN_SETTINGS`):
//! the same names, the same flags, the same defaults, except where ferrocorn
//! documents a difference (docs/compatibility.md).

use _ferrocorn::settings::SPECS;
use serde_json::Value;

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
    let ours: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
    let theirs: Vec<String> = gunicorn().iter().map(|s| s["name"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(ours, theirs);
}

#[test]
fn same_flags() {
    for g in gunicorn() {
        let name = g["name"].as_str().unwrap_or_default();
        let spec = _ferrocorn::settings::spec(name).unwrap_or_else(|| panic!("{name} missing"));
        let flags: Vec<&str> = g["cli"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
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
