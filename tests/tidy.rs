//! The codebase checks itself: documentation exists, nothing unfinished slips in, the example
//! configurations load and document every key the code accepts.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.ends_with("node_modules") {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn nothing_unfinished_or_debugging_is_left_in() {
    let mut files = vec![];
    rust_files(&root().join("crates"), &mut files);
    rust_files(&root().join("tests"), &mut files);
    let banned = [
        concat!("TO", "DO"),
        concat!("FIX", "ME"),
        concat!("db", "g!("),
        concat!("to", "do!("),
        concat!("unimple", "mented!("),
    ];
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for word in banned {
            assert!(!text.contains(word), "{} contains {word}", file.display());
        }
    }
}

#[test]
fn every_crate_and_the_architecture_are_documented() {
    let architecture = fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    for entry in fs::read_dir(root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            dir.join("README.md").exists(),
            "crates/{name} has no README.md"
        );
        assert!(
            architecture.contains(&format!("crates/{name}")),
            "ARCHITECTURE.md does not map crates/{name}"
        );
    }
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let ci = fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(readme.contains("cargo run --release -- demo"));
    assert!(
        readme.contains("cargo test --workspace") && ci.contains("cargo test --workspace"),
        "CI runs the README's test command"
    );
}

/// The `pub name:` fields of a config module.
fn config_keys(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub ")?
                .split_once(':')
                .map(|(k, _)| k.trim().to_owned())
        })
        .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

fn assert_documented(config_rs: &str, example: &str) {
    let source = fs::read_to_string(root().join(config_rs)).unwrap();
    let text = fs::read_to_string(root().join(example)).unwrap();
    let keys = config_keys(&source);
    assert!(keys.len() > 5, "found the fields of {config_rs}");
    for key in keys {
        let documented = text.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ']);
            l.starts_with(&format!("{key} ="))
                || l.starts_with(&format!("[{key}]"))
                || l.starts_with(&format!("[[{key}]]"))
                || l.contains(&format!(".{key}]"))
                // a key of an inline table: `lookup = { url = ..., timeout_ms = ... }`
                || l.contains(&format!("{{ {key} ="))
                || l.contains(&format!(", {key} ="))
        });
        assert!(
            documented,
            "{config_rs}: key `{key}` is not documented in {example}"
        );
    }
}

#[test]
fn the_example_configurations_load_and_document_every_key() {
    let broker: lienthong_broker::Config =
        toml::from_str(&fs::read_to_string(root().join("config/lienthong.example.toml")).unwrap())
            .unwrap();
    assert_eq!(broker.clients.len(), 1);
    assert_eq!(broker.realms.len(), 2);
    let idp = lienthong_mock_idp::Config::from_toml(
        &fs::read_to_string(root().join("config/mock-idp.example.toml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        idp.clients[0].redirect_uris,
        [format!("{}/callback", broker.issuer)],
        "the two examples are a working pair"
    );
    assert_eq!(idp.clients[0].secret, broker.upstream.client_secret);
    assert_documented(
        "crates/broker/src/config.rs",
        "config/lienthong.example.toml",
    );
    assert_documented(
        "crates/adapter/src/policy.rs",
        "config/lienthong.example.toml",
    );
    assert_documented(
        "crates/mock-idp/src/config.rs",
        "config/mock-idp.example.toml",
    );
}

#[test]
fn the_shipped_roster_loads() {
    let roster =
        lienthong_mock_idp::Roster::load(&root().join("config/mock-idp/citizens.json")).unwrap();
    assert!(roster.citizens().len() >= 20);
}
