//! A cluster built with the public builder only, no macros: custom monitor routes (one that
//! panics, to show the monitor's answer to a failing handler), an ECV validator, and the
//! embedded Cargo.lock for `/deps`.

use std::process::ExitCode;

use axum::{Router, routing::get};

fn main() -> ExitCode {
    cluster2::Cluster::builder()
        .name(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
        .option("workers", 1)
        .configure_app(|| async { Router::new().route("/", get(|| async { "built" })) })
        .configure_monitor(|monitor: Router| async move {
            monitor
                .route("/custom", get(|| async { "custom route" }))
                .route("/custom/panic", get(|| async { fail() }))
        })
        .ecv_validator(|status, body| status == 200 && body == b"built")
        .dependencies(include_str!("../../../Cargo.lock"))
        .run(|_started| async {})
}

/// A handler's bug.
fn fail() -> &'static str {
    panic!("the custom route failed on purpose")
}
