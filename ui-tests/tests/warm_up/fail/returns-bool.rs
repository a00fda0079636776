#[cluster2::warm_up]
async fn warm(w: cluster2::WarmUp) -> bool {
    w.get("/").await.is_ok()
}

fn main() {}
