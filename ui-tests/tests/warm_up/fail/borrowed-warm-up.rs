#[cluster2::warm_up]
async fn warm(w: &cluster2::WarmUp) -> Result<(), cluster2::BoxError> {
    w.get("/").await?;
    Ok(())
}

fn main() {}
