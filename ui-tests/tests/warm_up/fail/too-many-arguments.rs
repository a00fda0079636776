#[cluster2::warm_up]
async fn warm(w: cluster2::WarmUp, path: &str) -> Result<(), cluster2::BoxError> {
    w.get(path).await?;
    Ok(())
}

fn main() {}
