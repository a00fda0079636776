//! The shared cache in a cluster: every worker asks for users, each user is loaded from the
//! (slow, simulated) database once for the whole cluster, and every worker hears of changes.
//!
//! ```text
//! cargo run --release --bin cache-demo
//! curl http://127.0.0.1:9191/users/42          # loads once, then answers from the cache
//! curl -X PUT 'http://127.0.0.1:9191/users/42?name=Ada'
//! curl http://127.0.0.1:8081/caches            # the manager's figures
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cluster2::axum::extract::{Path, Query};
use cluster2::axum::http::StatusCode;
use cluster2::axum::routing::get;
use cluster2::axum::{Json, Router};
use cluster2::cache::{self, Cache, CacheOptions, SetOptions};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    loaded_by: u32,
}

/// Loads done by this worker: the cluster as a whole loads each user once.
static DATABASE_LOADS: AtomicU64 = AtomicU64::new(0);

async fn load_from_database(id: u64) -> Result<User, String> {
    DATABASE_LOADS.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    if id == 0 {
        return Err("user 0 does not exist".to_owned());
    }
    Ok(User {
        id,
        name: format!("user {id}"),
        loaded_by: std::process::id(),
    })
}

async fn users() -> Result<Cache, String> {
    let options = CacheOptions {
        persist: true,
        expire: Some(Duration::from_secs(300)),
        ..Default::default()
    };
    cache::use_cache("users", options)
        .await
        .map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct Rename {
    name: String,
}

#[cluster2::configure_app]
async fn app() -> Result<Router, String> {
    let users = users().await?;
    users.watch(None, |key: &str, user: Option<User>| match user {
        Some(user) => tracing::info!(key, name = %user.name, "user changed"),
        None => tracing::info!(key, "user removed or expired"),
    });
    let (get_users, put_users) = (users.clone(), users);
    Ok(Router::new()
        .route(
            "/users/{id}",
            get(move |Path(id): Path<u64>| async move {
                get_users
                    .get(&format!("u:{id}"), || load_from_database(id))
                    .await
                    .map(Json)
                    .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))
            })
            .put(
                move |Path(id): Path<u64>, Query(rename): Query<Rename>| async move {
                    let user = User {
                        id,
                        name: rename.name,
                        loaded_by: std::process::id(),
                    };
                    put_users
                        .set(&format!("u:{id}"), &user, SetOptions::default())
                        .await
                        .map(|_| Json(user))
                        .map_err(|e| (StatusCode::BAD_GATEWAY, e.to_string()))
                },
            ),
        )
        .route(
            "/loads",
            get(|| async { DATABASE_LOADS.load(Ordering::Relaxed).to_string() }),
        ))
}

#[cluster2::main(port = 9191, workers = 2)]
async fn main(started: cluster2::Started) {
    tracing::info!(role = ?started.role(), addr = %started.addr(), "cache demo up");
}
