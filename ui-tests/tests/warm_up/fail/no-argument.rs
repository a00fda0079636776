#[cluster2::warm_up]
async fn warm() -> Result<(), cluster2::BoxError> {
    Ok(())
}

fn main() {}
