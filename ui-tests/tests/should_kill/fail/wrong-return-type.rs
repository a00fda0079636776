#[cluster2::should_kill]
fn recycle(heartbeat: &cluster2::Heartbeat) -> Option<&'static str> {
    (heartbeat.panics > 0).then_some("panicked")
}

fn main() {}
