#[cluster2::warm_up]
async fn warm(addr: std::net::SocketAddr) -> Result<(), cluster2::BoxError> {
    let _ = addr;
    Ok(())
}

fn main() {}
