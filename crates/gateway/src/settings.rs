//! Loading a TOML configuration file, with single values overridable from the environment.
//!
//! `PREFIX__SECTION__KEY=value` sets `[section] key = value` (keys lower-cased, `__` between
//! levels). The value is read as TOML when it parses (numbers, booleans, arrays), else as a
//! string. So `LIENTHONG__UPSTREAM__CLIENT_SECRET=...` keeps a secret out of the file.

use std::path::Path;

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use toml::{Table, Value};

pub fn load<T: DeserializeOwned>(path: &Path, env_prefix: &str) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut table: Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    apply_env(&mut table, env_prefix, std::env::vars())?;
    Value::Table(table)
        .try_into()
        .with_context(|| format!("invalid configuration in {}", path.display()))
}

fn apply_env(
    table: &mut Table,
    prefix: &str,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    for (name, raw) in vars {
        let Some(path) = name.strip_prefix(prefix).and_then(|p| p.strip_prefix("__")) else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            bail!("environment variable {name}: empty key");
        }
        let value = toml::from_str::<Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(Value::String(raw));
        let (last, parents) = keys.split_last().expect("at least one key");
        let mut cursor = &mut *table;
        for key in parents {
            let entry = cursor
                .entry(key.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            cursor = match entry {
                Value::Table(t) => t,
                _ => bail!("environment variable {name}: {key} is not a section"),
            };
        }
        cursor.insert(last.clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_nested_values_with_types() {
        let mut t: Table =
            toml::from_str("issuer = \"a\"\n[upstream]\nclient_secret = \"x\"\n").unwrap();
        let vars = [
            ("LT__UPSTREAM__CLIENT_SECRET", "s3cret"),
            ("LT__SESSIONS__IDLE_SECS", "60"),
            ("OTHER__ISSUER", "ignored"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()));
        apply_env(&mut t, "LT", vars.into_iter()).unwrap();
        assert_eq!(t["upstream"]["client_secret"].as_str(), Some("s3cret"));
        assert_eq!(t["sessions"]["idle_secs"].as_integer(), Some(60));
        assert_eq!(t["issuer"].as_str(), Some("a"));
    }
}
