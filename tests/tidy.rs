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
fn the_deploy_configuration_loads_and_shares_its_store() {
    let config: lienthong_broker::Config =
        toml::from_str(&fs::read_to_string(root().join("deploy/broker.toml")).unwrap()).unwrap();
    assert!(
        config.store.is_shared(),
        "deploy/ runs several nodes on Redis"
    );
    assert!(
        config.store.sealing_key.is_none() && config.account_id_secret.is_none(),
        "secrets come from the environment, not the file"
    );
}

#[test]
fn the_shipped_roster_loads() {
    let roster =
        lienthong_mock_idp::Roster::load(&root().join("config/mock-idp/citizens.json")).unwrap();
    assert!(roster.citizens().len() >= 20);
}

/// The rows of ARCHITECTURE.md's code map: crate directory -> what it must never depend on.
fn forbidden_dependencies() -> Vec<(String, Vec<String>)> {
    let architecture = fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    architecture
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | `crates/x` (`lienthong-x`) | what it is | must never depend on |
            let dir = cells.get(1)?.strip_prefix("`crates/")?.split('`').next()?;
            let never = cells.get(3)?;
            let names = never
                .split(',')
                .map(|n| n.trim().trim_matches('`').to_owned())
                .filter(|n| !n.is_empty() && n != "—")
                .collect();
            Some((dir.to_owned(), names))
        })
        .collect()
}

/// A crate's transitive normal and build dependencies (no dev-dependencies), by name: what
/// `cargo build -p` compiles for it on this platform. (From `cargo tree`, not `cargo metadata`,
/// whose resolve unifies features across every target and so lists crates that never build
/// here — it shows `ring` under rustls-webpki, which `cargo tree --target all` does not.)
fn dependency_closure(package: &str) -> std::collections::BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--locked", "-e", "normal,build", "--prefix", "none"])
        .args(["--format", "{p}", "-p", package])
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1) // the package itself
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn no_crate_depends_on_what_the_architecture_forbids() {
    let rows = forbidden_dependencies();
    assert!(rows.len() >= 7, "the code map lists every crate: {rows:?}");
    for (dir, never) in rows {
        let package = if dir == "gateway" {
            "lienthong".to_owned()
        } else {
            format!("lienthong-{dir}")
        };
        let deps = dependency_closure(&package);
        assert!(!deps.is_empty(), "no package {package} for crates/{dir}");
        for name in never {
            assert!(
                !deps.contains(&name),
                "{package} depends on {name}, which docs/ARCHITECTURE.md forbids"
            );
        }
    }
}

/// The top-level modules a Rust source file refers to through `crate::` (comments aside: a doc
/// link is not an import).
fn crate_references(source: &str) -> Vec<String> {
    let code: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let source = code.as_str();
    let mut found = vec![];
    for (i, _) in source.match_indices("crate::") {
        let rest = &source[i + "crate::".len()..];
        let heads: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').collect()
        } else {
            vec![rest]
        };
        for head in heads {
            let name: String = head
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    use std::collections::{BTreeMap, BTreeSet};
    for entry in fs::read_dir(root().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        let mut files = vec![];
        rust_files(&src, &mut files);
        // Module name (top level) -> modules it refers to.
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let roots = ["lib", "main"];
        for file in &files {
            let rel = file.strip_prefix(&src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_str()
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned();
            let text = fs::read_to_string(file).unwrap();
            let refs = graph.entry(top.clone()).or_default();
            for r in crate_references(&text) {
                if r != top {
                    refs.insert(r);
                }
            }
        }
        let modules: BTreeSet<String> = graph.keys().cloned().collect();
        for (module, refs) in &graph {
            if roots.contains(&module.as_str()) {
                continue;
            }
            // Items live in modules; the crate root only declares, re-exports and wires, so a
            // module that names a root item has a hidden edge back to everything.
            for r in refs {
                assert!(
                    modules.contains(r) && !roots.contains(&r.as_str()),
                    "{}: module {module} refers to crate::{r}, an item of the crate root; \
                     import it from the module that defines it",
                    src.display()
                );
            }
        }
        // Depth-first search for a cycle among the modules.
        fn visit(
            m: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == m) {
                let mut cycle = path[i..].to_vec();
                cycle.push(m.to_owned());
                return Some(cycle);
            }
            if done.contains(m) {
                return None;
            }
            path.push(m.to_owned());
            for next in graph.get(m).into_iter().flatten() {
                if let Some(c) = visit(next, graph, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(m.to_owned());
            None
        }
        let mut done = BTreeSet::new();
        for m in graph.keys().filter(|m| !roots.contains(&m.as_str())) {
            let cycle = visit(m, &graph, &mut vec![], &mut done);
            assert!(
                cycle.is_none(),
                "{}: import cycle {}",
                src.display(),
                cycle.unwrap().join(" -> ")
            );
        }
    }
}

#[test]
fn a_secret_in_configuration_is_a_secret_type_and_never_printed() {
    // By source: no configuration field that holds a secret is a plain string.
    let mut files = vec![];
    rust_files(&root().join("crates"), &mut files);
    for file in files.iter().filter(|f| {
        let name = f.file_name().unwrap().to_str().unwrap();
        name == "config.rs" || name == "policy.rs"
    }) {
        for line in fs::read_to_string(file).unwrap().lines() {
            let Some((field, ty)) = line
                .trim()
                .strip_prefix("pub ")
                .and_then(|l| l.split_once(':'))
            else {
                continue;
            };
            // The mock IdP's fixed test password is public: its login page prints it.
            let public = file.ends_with("mock-idp/src/config.rs") && field == "password";
            if (field.contains("secret") || field.contains("password")) && !public {
                assert!(
                    !ty.contains("String"),
                    "{}: `{field}` is a plain String; use lienthong_protocol::secret::Secret",
                    file.display()
                );
            }
        }
    }
    // By behaviour: the example configuration printed with {:?} shows none of its secrets.
    let text = fs::read_to_string(root().join("config/lienthong.example.toml")).unwrap();
    let config: lienthong_broker::Config = toml::from_str(&text).unwrap();
    let printed = format!("{config:?}");
    for secret in [
        config.upstream.client_secret.expose(),
        config.clients[0].secret.as_ref().unwrap().expose(),
        config.account_id_secret.as_ref().unwrap().expose(),
        config.realms[1].lookup.as_ref().unwrap().secret.expose(),
    ] {
        assert!(!printed.contains(secret), "{secret:?} printed by Debug");
    }
}

#[test]
fn the_architecture_lists_every_test_file_and_links_only_inside_the_repository() {
    let architecture = fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let mut tests = vec![];
    for dir in std::iter::once(root().join("tests")).chain(
        fs::read_dir(root().join("crates"))
            .unwrap()
            .map(|e| e.unwrap().path().join("tests")),
    ) {
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries {
                let path = e.unwrap().path();
                if path.extension().is_some_and(|x| x == "rs") {
                    tests.push(path.strip_prefix(root()).unwrap().to_owned());
                }
            }
        }
    }
    assert!(tests.len() >= 9);
    for t in tests {
        let shown = t.to_str().unwrap();
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(
            architecture.contains(shown) || architecture.contains(&format!("`{name}`")),
            "docs/ARCHITECTURE.md does not mention the test file {shown}"
        );
    }
    for doc in [
        "README.md",
        "docs/ARCHITECTURE.md",
        "docs/integration.md",
        "docs/operations.md",
        "docs/performance.md",
        "docs/performance-log.md",
    ] {
        let text = fs::read_to_string(root().join(doc)).unwrap();
        let base = root().join(doc).parent().unwrap().to_owned();
        for (i, _) in text.match_indices("](") {
            let target: String = text[i + 2..].chars().take_while(|c| *c != ')').collect();
            let target = target.split('#').next().unwrap();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let resolved = base
                .join(target)
                .canonicalize()
                .unwrap_or_else(|_| panic!("{doc} links {target}, which does not exist"));
            assert!(
                resolved.starts_with(root().canonicalize().unwrap()),
                "{doc} links {target}, outside the repository"
            );
        }
    }
}
