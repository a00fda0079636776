//! The status registry in a plain process (the original's scenarios). One test function,
//! because the registry is process-wide.

use std::sync::{Arc, Mutex};

use cluster2::status;

#[tokio::test]
async fn statuses_in_a_plain_process() {
    // Empty at first.
    assert!(status::statuses().is_empty());
    // An unknown name is an error.
    let err = status::get_status("nope").await.unwrap_err();
    assert_eq!(err.kind(), cluster2::ErrorKind::NotFound);
    assert!(err.to_string().contains("no status named `nope`"), "{err}");

    // A read-only view ignores set_status and keeps its view.
    status::register("immutable", || "view").unwrap();
    let entries = status::get_status("immutable").await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].pid, std::process::id());
    assert_eq!(entries[0].name, "immutable");
    assert_eq!(entries[0].status, Some(serde_json::json!("view")));
    let set = status::set_status("immutable", "noop").await.unwrap();
    assert_eq!(set[0].status, Some(serde_json::json!("view")));
    assert_eq!(
        status::get_status("immutable").await.unwrap()[0].status,
        Some(serde_json::json!("view"))
    );

    // A mutable status updates.
    let value = Arc::new(Mutex::new(1u32));
    let (v, u) = (value.clone(), value.clone());
    status::register_with_update(
        "mutable",
        move || *v.lock().unwrap(),
        move |new: u32| {
            *u.lock().unwrap() = new;
            new * 10
        },
    )
    .unwrap();
    assert_eq!(
        status::get_status("mutable").await.unwrap()[0].status,
        Some(1.into())
    );
    let set = status::set_status("mutable", 7).await.unwrap();
    assert_eq!(
        set[0].status,
        Some(70.into()),
        "set returns what update returned"
    );
    assert_eq!(
        status::get_status("mutable").await.unwrap()[0].status,
        Some(7.into())
    );
    // A value of the wrong shape is an entry error, not a crash.
    let set = status::set_status("mutable", "seven").await.unwrap();
    assert!(
        set[0].error.as_ref().unwrap().contains("not a valid value"),
        "{set:?}"
    );

    // A duplicate name is refused; unregister frees it.
    assert!(status::register("immutable", || 0).is_err());
    assert_eq!(status::statuses(), ["immutable", "mutable"]);
    assert!(status::unregister("immutable"));
    assert_eq!(status::statuses(), ["mutable"]);

    // A slow view becomes an entry carrying an error after the timeout.
    status::register("slow", || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        1
    })
    .unwrap();
    let entries = status::query("slow", None, std::time::Duration::from_millis(50))
        .await
        .unwrap();
    assert!(
        entries[0]
            .error
            .as_ref()
            .unwrap()
            .contains("no answer within 50ms")
    );
}
