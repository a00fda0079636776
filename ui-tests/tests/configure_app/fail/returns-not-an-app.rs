#[cluster2::configure_app]
async fn app() -> String {
    "hello world".to_owned()
}

fn main() {}
