//! `/deps`: the application's dependency tree, from the `Cargo.lock` embedded at compile time
//! (so a deployed binary needs no cargo).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// How deep the tree goes, as `npm ls --depth=10` did.
const MAX_DEPTH: usize = 10;

/// The application's name and version, and its lock file if it was embedded.
#[derive(Clone, Debug)]
pub(crate) struct Dependencies {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) cargo_lock: Option<&'static str>,
}

pub(crate) async fn serve(deps: Dependencies) -> Response {
    static TREE: OnceLock<Result<Arc<Value>, String>> = OnceLock::new();
    let tree = TREE.get_or_init(|| {
        let lock = deps.cargo_lock.ok_or_else(|| {
            "no Cargo.lock was embedded: #[cluster2::main] embeds it, or call \
             Builder::dependencies(include_str!(\"../Cargo.lock\"))"
                .to_owned()
        })?;
        tree(lock, &deps.name, &deps.version).map(Arc::new)
    });
    match tree {
        Ok(tree) => Json(tree.as_ref().clone()).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, Json(json!({ "error": e }))).into_response(),
    }
}

#[derive(Debug)]
struct Package {
    name: String,
    version: String,
    source: Option<String>,
    dependencies: Vec<String>,
}

fn tree(lock: &str, name: &str, version: &str) -> Result<Value, String> {
    let table: toml::Table =
        toml::from_str(lock).map_err(|e| format!("unreadable Cargo.lock: {e}"))?;
    let packages: Vec<Package> = table
        .get("package")
        .and_then(|p| p.as_array())
        .ok_or("Cargo.lock lists no packages")?
        .iter()
        .filter_map(|p| {
            let p = p.as_table()?;
            Some(Package {
                name: p.get("name")?.as_str()?.to_owned(),
                version: p.get("version")?.as_str()?.to_owned(),
                source: p.get("source").and_then(|s| s.as_str()).map(str::to_owned),
                dependencies: p
                    .get("dependencies")
                    .and_then(|d| d.as_array())
                    .map(|d| {
                        d.iter()
                            .filter_map(|s| s.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect();
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in packages.iter().enumerate() {
        by_name.entry(p.name.as_str()).or_default().push(i);
    }
    let root = by_name
        .get(name)
        .and_then(|ids| {
            ids.iter()
                .find(|&&i| packages[i].version == version)
                .or_else(|| ids.first())
        })
        .copied()
        .ok_or_else(|| format!("the package `{name}` is not in the embedded Cargo.lock"))?;
    // A dependency entry is `name`, `name version` or `name version (source)`.
    let resolve = |entry: &str| -> Option<usize> {
        let mut parts = entry.split_whitespace();
        let dep = parts.next()?;
        let ids = by_name.get(dep)?;
        match parts.next() {
            Some(v) => ids.iter().find(|&&i| packages[i].version == v).copied(),
            None => ids.first().copied(),
        }
    };
    fn node(
        packages: &[Package],
        i: usize,
        depth: usize,
        resolve: &dyn Fn(&str) -> Option<usize>,
    ) -> Value {
        let p = &packages[i];
        let mut out = Map::new();
        out.insert("version".into(), json!(p.version));
        out.insert(
            "source".into(),
            json!(p.source.clone().unwrap_or_else(|| "local".to_owned())),
        );
        if depth < MAX_DEPTH && !p.dependencies.is_empty() {
            let mut children = Map::new();
            for entry in &p.dependencies {
                if let Some(child) = resolve(entry) {
                    let c = &packages[child];
                    let key = if children.contains_key(&c.name) {
                        format!("{}@{}", c.name, c.version)
                    } else {
                        c.name.clone()
                    };
                    children.insert(key, node(packages, child, depth + 1, resolve));
                }
            }
            out.insert("dependencies".into(), Value::Object(children));
        }
        Value::Object(out)
    }
    let mut top = node(&packages, root, 0, &resolve);
    if let Value::Object(map) = &mut top {
        map.insert("name".into(), json!(packages[root].name));
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
version = 4

[[package]]
name = "app"
version = "1.2.3"
dependencies = ["tokio", "serde 1.0.0"]

[[package]]
name = "tokio"
version = "1.45.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = ["pin-project-lite"]

[[package]]
name = "pin-project-lite"
version = "0.2.16"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "serde"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#;

    #[test]
    fn the_tree_nests_versions_and_sources() {
        let t = tree(LOCK, "app", "1.2.3").unwrap();
        assert_eq!(t["name"], "app");
        assert_eq!(t["source"], "local");
        assert_eq!(t["dependencies"]["tokio"]["version"], "1.45.0");
        assert_eq!(
            t["dependencies"]["tokio"]["dependencies"]["pin-project-lite"]["version"],
            "0.2.16"
        );
        assert!(
            t["dependencies"]["serde"]["source"]
                .as_str()
                .unwrap()
                .starts_with("registry+")
        );
    }

    #[test]
    fn a_missing_package_is_an_error() {
        assert!(
            tree(LOCK, "other", "0.1.0")
                .unwrap_err()
                .contains("`other`")
        );
        assert!(tree("not toml [", "app", "1").is_err());
    }
}
