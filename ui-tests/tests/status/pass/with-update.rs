use std::sync::Mutex;

static LEVEL: Mutex<String> = Mutex::new(String::new());

#[cluster2::status("log-level", update = set_level)]
fn log_level() -> String {
    LEVEL.lock().unwrap().clone()
}

fn set_level(level: String) -> String {
    *LEVEL.lock().unwrap() = level;
    log_level()
}

mod limits {
    use std::sync::atomic::{AtomicU32, Ordering};

    pub(crate) static LIMIT: AtomicU32 = AtomicU32::new(10);

    #[derive(serde::Deserialize)]
    pub(crate) struct Change {
        pub(crate) limit: u32,
    }

    pub(crate) fn set(change: Change) -> u32 {
        LIMIT.store(change.limit, Ordering::Relaxed);
        change.limit
    }
}

// The update may be any path, and arguments may come in any order.
#[cluster2::status(update = limits::set, "limit", crate = "cluster2")]
fn limit() -> u32 {
    limits::LIMIT.load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let set = cluster2::status::set_status("log-level", "debug").await.unwrap();
    assert_eq!(set[0].status, Some(serde_json::json!("debug")));
    let got = cluster2::status::get_status("log-level").await.unwrap();
    assert_eq!(got[0].status, Some(serde_json::json!("debug")));

    let set = cluster2::status::set_status("limit", serde_json::json!({ "limit": 20 }))
        .await
        .unwrap();
    assert_eq!(set[0].status, Some(serde_json::json!(20)));
    // A value the update cannot take is an error of that process's entry.
    let wrong = cluster2::status::set_status("limit", "many").await.unwrap();
    assert!(wrong[0].error.as_deref().unwrap().contains("not a valid value"), "{wrong:?}");
}
