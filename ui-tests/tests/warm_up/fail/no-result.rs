#[cluster2::warm_up]
async fn warm(w: cluster2::WarmUp) {
    let _ = w.get("/").await;
}

fn main() {}
