//! docs/settings.md, generated from the table so the docs cannot drift.
//! `FERROCORN_WRITE_DOCS=1 cargo test settings::docs` rewrites the file; the
//! test otherwise fails when the committed file is stale.

use super::spec::{Action, Origin, Spec, Support};
use super::table::SPECS;

pub fn render() -> String {
    let mut out = String::from(
        "# Settings\n\n\
         Generated from `src/settings/table.rs` (do not edit by hand). Every Gunicorn 27 setting is listed, \
         with Gunicorn's flags and defaults, then [ferrocorn's own settings](#ferrocorn-extensions). Status:\n\n\
         - **yes**: works as in Gunicorn.\n\
         - **not yet**: recognised; any value other than the default stops ferrocorn at start-up, naming the setting.\n\
         - **accepted**: validated, with no effect because ferrocorn does not need it (the reason is given).\n\n\
         Values come from, in increasing precedence: the defaults, the config file (`-c`, else \
         `./ferrocorn.conf.py`, else `./gunicorn.conf.py`), `GUNICORN_CMD_ARGS`, `FERROCORN_CMD_ARGS`, the command line.\n",
    );
    let gunicorn: Vec<&Spec> = SPECS.iter().filter(|s| s.origin == Origin::Gunicorn).collect();
    let mut sections: Vec<&str> = Vec::new();
    for s in &gunicorn {
        if !sections.contains(&s.section) {
            sections.push(s.section);
        }
    }
    for section in sections {
        out.push_str(&format!("\n## {section}\n\n"));
        table(&mut out, gunicorn.iter().copied().filter(|s| s.section == section));
    }
    out.push_str(
        "\n## ferrocorn extensions\n\n\
         Settings Gunicorn does not have, read from the same sources. Gunicorn ignores names it does not \
         know in a config file, so a config file shared with Gunicorn may set them. See \
         [operations.md](operations.md) for how they are used.\n\n",
    );
    table(&mut out, SPECS.iter().filter(|s| s.origin == Origin::Ferrocorn));
    out
}

fn table<'a>(out: &mut String, specs: impl Iterator<Item = &'a Spec>) {
    out.push_str("| setting | flags | default | status | description |\n|---|---|---|---|---|\n");
    for s in specs {
        let flags = match s.action {
            _ if s.cli.is_empty() => "(config file)".to_owned(),
            Action::Store | Action::Int | Action::AutoInt | Action::Append => {
                let meta = s.meta.unwrap_or("VALUE");
                s.cli.iter().map(|f| format!("`{f} {meta}`")).collect::<Vec<_>>().join(", ")
            }
            Action::OptionalValue(_) => {
                let meta = s.meta.unwrap_or("VALUE");
                s.cli.iter().map(|f| format!("`{f} [{meta}]`")).collect::<Vec<_>>().join(", ")
            }
            Action::StoreTrue | Action::StoreFalse => {
                s.cli.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
            }
        };
        let status = match s.support {
            Support::Yes => "yes".to_owned(),
            Support::NotYet(feature) => format!("not yet ({feature})"),
            Support::Unneeded(why) => format!("accepted: {why}"),
        };
        let default = s.doc_default.replace('|', "\\|");
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} | {} |\n",
            s.name,
            flags,
            if default.is_empty() { "''".to_owned() } else { default },
            status,
            s.help.replace('|', "\\|")
        ));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_doc_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/settings.md");
        let want = super::render();
        if std::env::var_os("FERROCORN_WRITE_DOCS").is_some() {
            std::fs::write(path, &want).expect("write docs/settings.md");
            return;
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(have == want, "docs/settings.md is stale: run FERROCORN_WRITE_DOCS=1 cargo test settings::docs");
    }
}
