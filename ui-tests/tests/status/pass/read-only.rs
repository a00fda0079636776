use std::sync::atomic::{AtomicU64, Ordering};

static CONNECTIONS: AtomicU64 = AtomicU64::new(3);

#[cluster2::status("connections")]
fn connections() -> u64 {
    CONNECTIONS.load(Ordering::Relaxed)
}

#[derive(serde::Serialize)]
struct Pool {
    idle: usize,
    busy: usize,
}

#[cluster2::status("db-pool")]
pub(crate) fn pool() -> Pool {
    Pool { idle: 2, busy: 1 }
}

#[cluster2::status("build")]
fn build() -> impl serde::Serialize {
    ("cluster2", 1)
}

mod nested {
    // Two views of the same function name in different modules do not clash.
    #[cluster2::status("nested-connections")]
    fn connections() -> &'static str {
        "none"
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let names = cluster2::status::statuses();
    assert_eq!(names, ["build", "connections", "db-pool", "nested-connections"]);
    let read = |name: &'static str| async move {
        let entries = cluster2::status::get_status(name).await.unwrap();
        entries[0].status.clone().unwrap()
    };
    assert_eq!(read("connections").await, serde_json::json!(3));
    assert_eq!(read("db-pool").await, serde_json::json!({ "idle": 2, "busy": 1 }));
    assert_eq!(read("build").await, serde_json::json!(["cluster2", 1]));
    assert_eq!(read("nested-connections").await, serde_json::json!("none"));
    // A read-only status is left as it is by `set_status`.
    let set = cluster2::status::set_status("connections", 10).await.unwrap();
    assert_eq!(set[0].status, Some(serde_json::json!(3)));
}
