#[derive(Debug)]
struct Cold;

#[cluster2::warm_up]
async fn warm(w: cluster2::WarmUp) -> Result<(), Cold> {
    w.get("/").await.map_err(|_| Cold)?;
    Ok(())
}

fn main() {}
