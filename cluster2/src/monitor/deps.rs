//! `/deps`: the application's dependencies, from the `Cargo.lock` embedded at compile time (so
//! a deployed binary needs no cargo).
//!
//! `GET /deps` lists every package the application reaches once, sorted by name and version:
//! its name, version, source and the packages it depends on, with the application's own
//! direct dependencies marked. A dependency is named as in the lock file's spirit: `name` when
//! the lock holds one version of it, `name@version` when it holds several.
//!
//! `GET /deps?view=tree` nests the same packages as `cargo tree` does, to show why a package is
//! there: each package's dependencies are spelled out where it first appears (depth first),
//! and every later appearance is `{"name", "version", "deduplicated": true}`. So the tree has
//! at most one node per dependency edge; nesting every path in full would repeat the same
//! crates thousands of times (megabytes for a hello world).
//!
//! Both are computed once, on the first request.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The application's name and version, and its lock file if it was embedded.
#[derive(Clone, Debug)]
pub(crate) struct Dependencies {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) cargo_lock: Option<&'static str>,
}

/// Both views, rendered.
struct Views {
    list: String,
    tree: String,
}

pub(crate) async fn serve(
    deps: Dependencies,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let tree = match query {
        Ok(Query(params)) => match view(&params) {
            Ok(tree) => tree,
            Err(e) => return super::error(StatusCode::BAD_REQUEST, e),
        },
        Err(rejection) => return super::error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    static VIEWS: OnceLock<Result<Views, String>> = OnceLock::new();
    let views = VIEWS.get_or_init(|| {
        let lock = deps.cargo_lock.ok_or_else(|| {
            "no Cargo.lock was embedded: #[cluster2::main] embeds it, or call \
             Builder::dependencies(include_str!(\"../Cargo.lock\"))"
                .to_owned()
        })?;
        let graph = Graph::parse(lock, &deps.name, &deps.version)?;
        Ok(Views {
            list: graph.list().to_string(),
            tree: graph.tree().to_string(),
        })
    });
    match views {
        Ok(views) => (
            [(header::CONTENT_TYPE, "application/json")],
            if tree { &views.tree } else { &views.list }.clone(),
        )
            .into_response(),
        Err(e) => super::error(StatusCode::NOT_FOUND, e.clone()),
    }
}

/// Whether the query asks for the tree; anything but `view=list|tree` is a mistake.
fn view(params: &HashMap<String, String>) -> Result<bool, String> {
    if let Some(other) = params.keys().find(|k| *k != "view") {
        return Err(format!(
            "unknown parameter `{other}`: /deps takes only `view` (`list`, the default, or `tree`)"
        ));
    }
    match params.get("view").map(String::as_str) {
        None | Some("list") => Ok(false),
        Some("tree") => Ok(true),
        Some(other) => Err(format!(
            "`view` must be `list` (the default) or `tree`, not `{other}`"
        )),
    }
}

#[derive(Debug)]
struct Package {
    name: String,
    version: String,
    source: Option<String>,
    dependencies: Vec<String>,
}

/// The lock file's packages and their resolved edges.
struct Graph {
    packages: Vec<Package>,
    /// For each package, the packages it depends on, in the lock's order.
    edges: Vec<Vec<usize>>,
    root: usize,
    /// How many versions of each name the lock holds.
    versions: HashMap<String, usize>,
}

impl Graph {
    fn parse(lock: &str, name: &str, version: &str) -> Result<Self, String> {
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
            let ids = by_name.get(parts.next()?)?;
            match parts.next() {
                Some(v) => ids.iter().find(|&&i| packages[i].version == v).copied(),
                None => ids.first().copied(),
            }
        };
        let edges = packages
            .iter()
            .map(|p| p.dependencies.iter().filter_map(|d| resolve(d)).collect())
            .collect();
        let versions = by_name
            .iter()
            .map(|(name, ids)| ((*name).to_owned(), ids.len()))
            .collect();
        Ok(Self {
            packages,
            edges,
            root,
            versions,
        })
    }

    /// How a dependency is named: `name`, or `name@version` when the name is ambiguous.
    fn reference(&self, i: usize) -> String {
        let p = &self.packages[i];
        if self.versions.get(&p.name).copied().unwrap_or(0) > 1 {
            format!("{}@{}", p.name, p.version)
        } else {
            p.name.clone()
        }
    }

    /// Every package the root reaches, the root excluded, sorted by name and version.
    fn reachable(&self) -> Vec<usize> {
        let mut seen = HashSet::from([self.root]);
        let mut stack = vec![self.root];
        while let Some(i) = stack.pop() {
            for &d in &self.edges[i] {
                if seen.insert(d) {
                    stack.push(d);
                }
            }
        }
        seen.remove(&self.root);
        let mut all: Vec<usize> = seen.into_iter().collect();
        all.sort_by(|&a, &b| {
            let (a, b) = (&self.packages[a], &self.packages[b]);
            (&a.name, &a.version).cmp(&(&b.name, &b.version))
        });
        all
    }

    fn list(&self) -> Value {
        let root = &self.packages[self.root];
        let direct: HashSet<usize> = self.edges[self.root].iter().copied().collect();
        let packages: Vec<Value> = self
            .reachable()
            .into_iter()
            .map(|i| {
                let p = &self.packages[i];
                json!({
                    "name": p.name,
                    "version": p.version,
                    "source": source(p),
                    "direct": direct.contains(&i),
                    "dependencies": self.edges[i].iter().map(|&d| self.reference(d)).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "name": root.name,
            "version": root.version,
            "dependencies": self.edges[self.root].iter().map(|&d| self.reference(d)).collect::<Vec<_>>(),
            "packages": packages,
        })
    }

    fn tree(&self) -> Value {
        let mut expanded = HashSet::new();
        self.node(self.root, &mut expanded)
    }

    /// One package of the tree: in full the first time, `deduplicated` after.
    fn node(&self, i: usize, expanded: &mut HashSet<usize>) -> Value {
        let p = &self.packages[i];
        if !expanded.insert(i) {
            return json!({ "name": p.name, "version": p.version, "deduplicated": true });
        }
        // Depth is bounded by the number of packages: each is expanded once.
        let children: Vec<Value> = self.edges[i]
            .iter()
            .map(|&d| self.node(d, expanded))
            .collect();
        json!({ "name": p.name, "version": p.version, "dependencies": children })
    }
}

/// Where a package comes from: the lock's `source`, or `local` for a path dependency (a
/// package of the workspace).
fn source(p: &Package) -> &str {
    p.source.as_deref().unwrap_or("local")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"
version = 4

[[package]]
name = "app"
version = "1.2.3"
dependencies = ["tokio", "serde 1.0.0", "helper"]

[[package]]
name = "helper"
version = "0.1.0"
dependencies = ["tokio", "serde 2.0.0"]

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

[[package]]
name = "serde"
version = "2.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "unrelated"
version = "9.9.9"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#;

    #[test]
    fn the_list_has_each_reachable_package_once_with_the_direct_ones_marked() {
        let list = Graph::parse(LOCK, "app", "1.2.3").unwrap().list();
        assert_eq!(list["name"], "app");
        assert_eq!(
            list["dependencies"],
            json!(["tokio", "serde@1.0.0", "helper"])
        );
        let names: Vec<String> = list["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{}@{}",
                    p["name"].as_str().unwrap(),
                    p["version"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                "helper@0.1.0",
                "pin-project-lite@0.2.16",
                "serde@1.0.0",
                "serde@2.0.0",
                "tokio@1.45.0"
            ],
            "sorted, once each, nothing unreachable"
        );
        let helper = &list["packages"][0];
        assert_eq!(helper["source"], "local");
        assert_eq!(helper["direct"], true);
        assert_eq!(helper["dependencies"], json!(["tokio", "serde@2.0.0"]));
        let pin = &list["packages"][1];
        assert_eq!(pin["direct"], false);
        assert!(pin["source"].as_str().unwrap().starts_with("registry+"));
    }

    #[test]
    fn the_tree_spells_each_package_out_once() {
        let tree = Graph::parse(LOCK, "app", "1.2.3").unwrap().tree();
        assert_eq!(tree["name"], "app");
        let tokio = &tree["dependencies"][0];
        assert_eq!(tokio["name"], "tokio");
        assert_eq!(tokio["dependencies"][0]["name"], "pin-project-lite");
        // helper's tokio was spelled out above.
        let helper = &tree["dependencies"][2];
        assert_eq!(
            helper["dependencies"][0],
            json!({"name": "tokio", "version": "1.45.0", "deduplicated": true})
        );
        assert_eq!(helper["dependencies"][1]["version"], "2.0.0");
    }

    #[test]
    fn mistakes_are_named() {
        assert!(
            Graph::parse(LOCK, "other", "0.1.0")
                .err()
                .unwrap()
                .contains("`other`")
        );
        assert!(Graph::parse("not toml [", "app", "1").is_err());
        let params = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(view(&params(&[])), Ok(false));
        assert_eq!(view(&params(&[("view", "tree")])), Ok(true));
        assert!(
            view(&params(&[("view", "nested")]))
                .unwrap_err()
                .contains("`nested`")
        );
        assert!(
            view(&params(&[("depth", "3")]))
                .unwrap_err()
                .contains("`depth`")
        );
    }
}
