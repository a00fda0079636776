// An application that reaches cluster2 through a re-export only.
mod platform {
    pub(crate) use cluster2 as runtime;
}

#[platform::runtime::configure_app(crate = "crate::platform::runtime")]
fn app() -> axum::Router {
    axum::Router::new()
}

#[platform::runtime::warm_up(crate = "crate::platform::runtime")]
async fn warm(w: platform::runtime::WarmUp) -> Result<(), platform::runtime::BoxError> {
    w.get("/").await?;
    Ok(())
}

mod cluster {
    #[crate::platform::runtime::main(crate = "crate::platform::runtime", workers = 1)]
    pub(crate) async fn main(started: crate::platform::runtime::Started) {
        let _ = started.role();
    }
}

fn main() {
    let _: fn() -> std::process::ExitCode = cluster::main;
}
