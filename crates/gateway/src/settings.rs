//! Loading a TOML configuration file, with single values overridable from the environment.
//!
//! `PREFIX__SECTION__KEY=value` sets `[section] key = value` (keys lower-cased, `__` between
//! levels). The value is kept as the string it is — never guessed at as TOML, so an all-digit
//! secret stays a secret and not an integer — and becomes a number, a boolean or a list only
//! where the configuration's own field asks for one (`LIENTHONG__SESSIONS__IDLE_SECS=60`,
//! `LIENTHONG__UPSTREAM__SCOPES='["openid", "profile"]'`). So
//! `LIENTHONG__UPSTREAM__CLIENT_SECRET=...` keeps a secret out of the file.

use std::path::Path;

use anyhow::{Context, bail};
use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use toml::{Table, Value};

pub fn load<T: DeserializeOwned>(path: &Path, env_prefix: &str) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut table: Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    apply_env(&mut table, env_prefix, std::env::vars())?;
    typed(table).with_context(|| format!("invalid configuration in {}", path.display()))
}

/// Applies this process's `PREFIX__...` variables to a configuration already read.
pub fn apply_environment(table: &mut Table, env_prefix: &str) -> anyhow::Result<()> {
    apply_env(table, env_prefix, std::env::vars())
}

/// The configuration a table (overrides applied) describes.
pub fn typed<T: DeserializeOwned>(table: Table) -> Result<T, Error> {
    T::deserialize(Coercing(Value::Table(table)))
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
        cursor.insert(last.clone(), Value::String(raw));
    }
    Ok(())
}

/// A TOML value that reads a string as the scalar or list the target type asks for. The file's
/// own typed values pass through as they are.
struct Coercing(Value);

type Error = de::value::Error;

impl Coercing {
    fn parsed<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, Error> {
        s.trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("expected {what}, found {s:?}")))
    }
}

/// Integers: from a TOML integer, or a string of digits.
macro_rules! coerce_int {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::String(s) => visitor.$visit(Self::parsed::<$ty>(&s, "a number")?),
                other => Coercing(other).deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Coercing {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(s) => visitor.visit_string(s),
            Value::Integer(i) => visitor.visit_i64(i),
            Value::Float(f) => visitor.visit_f64(f),
            Value::Boolean(b) => visitor.visit_bool(b),
            Value::Datetime(d) => visitor.visit_string(d.to_string()),
            Value::Array(items) => {
                visitor.visit_seq(SeqDeserializer::new(items.into_iter().map(Coercing)))
            }
            Value::Table(t) => visitor.visit_map(MapDeserializer::new(
                t.into_iter().map(|(k, v)| (k, Coercing(v))),
            )),
        }
    }

    coerce_int! {
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_f32 => visit_f32: f32,
        deserialize_f64 => visit_f64: f64,
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(s) => visitor.visit_bool(Self::parsed(&s, "true or false")?),
            other => Coercing(other).deserialize_any(visitor),
        }
    }

    /// A list from the environment is written as a TOML array: `'["a", "b"]'`.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(s) => {
                let array = toml::from_str::<Table>(&format!("v = {s}"))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .filter(Value::is_array)
                    .ok_or_else(|| {
                        de::Error::custom(format!(
                            "expected a list like [\"a\", \"b\"], found {s:?}"
                        ))
                    })?;
                Coercing(array).deserialize_any(visitor)
            }
            other => Coercing(other).deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            other => other
                .deserialize_enum(name, variants, visitor)
                .map_err(de::Error::custom),
        }
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct tuple tuple_struct map struct
        identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, Error> for Coercing {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Sample {
        issuer: String,
        upstream: Upstream,
        #[serde(default)]
        sessions: Sessions,
    }
    #[derive(serde::Deserialize, Debug)]
    struct Upstream {
        client_secret: String,
        #[serde(default)]
        scopes: Vec<String>,
        #[serde(default)]
        strict: bool,
    }
    #[derive(serde::Deserialize, Debug, Default)]
    struct Sessions {
        idle_secs: Option<u64>,
    }

    fn load_with(file: &str, vars: &[(&str, &str)]) -> Result<Sample, Error> {
        let mut t: Table = toml::from_str(file).unwrap();
        let vars = vars.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned()));
        apply_env(&mut t, "LT", vars).unwrap();
        typed(t)
    }

    #[test]
    fn env_overrides_nested_values_with_the_fields_types() {
        let s = load_with(
            "issuer = \"a\"\n[upstream]\nclient_secret = \"x\"\n",
            &[
                ("LT__UPSTREAM__CLIENT_SECRET", "s3cret"),
                ("LT__SESSIONS__IDLE_SECS", "60"),
                ("LT__UPSTREAM__SCOPES", "[\"openid\", \"profile\"]"),
                ("LT__UPSTREAM__STRICT", "true"),
                ("OTHER__ISSUER", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(s.upstream.client_secret, "s3cret");
        assert_eq!(s.sessions.idle_secs, Some(60));
        assert_eq!(s.upstream.scopes, ["openid", "profile"]);
        assert!(s.upstream.strict);
        assert_eq!(s.issuer, "a");
    }

    #[test]
    fn an_all_digit_secret_stays_a_string() {
        let s = load_with(
            "issuer = \"a\"\n[upstream]\nclient_secret = \"x\"\n",
            &[("LT__UPSTREAM__CLIENT_SECRET", "0123456789")],
        )
        .unwrap();
        assert_eq!(s.upstream.client_secret, "0123456789");
        let err = load_with(
            "issuer = \"a\"\n[upstream]\nclient_secret = \"x\"\n",
            &[("LT__SESSIONS__IDLE_SECS", "soon")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("expected a number"), "{err}");
    }

    #[test]
    fn the_example_configuration_loads_through_the_coercing_reader() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lienthong.example.toml");
        let config: lienthong_broker::Config = load(&path, "LIENTHONG_TEST_UNSET_PREFIX").unwrap();
        assert_eq!(config.clients.len(), 1);
    }
}
