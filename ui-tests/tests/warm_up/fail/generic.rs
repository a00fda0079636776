#[cluster2::warm_up]
async fn warm<E: std::fmt::Display>(w: cluster2::WarmUp) -> Result<(), E> {
    let _ = w;
    Ok(())
}

fn main() {}
