#[cluster2::warm_up]
fn warm(w: cluster2::WarmUp) -> Result<(), cluster2::BoxError> {
    let _ = w;
    Ok(())
}

fn main() {}
