#[cluster2::should_kill]
async fn recycle(heartbeat: &cluster2::Heartbeat) -> bool {
    heartbeat.panics > 0
}

fn main() {}
