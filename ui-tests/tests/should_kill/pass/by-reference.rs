use std::time::Duration;

#[cluster2::should_kill]
fn recycle(heartbeat: &cluster2::Heartbeat) -> bool {
    heartbeat.uptime > Duration::from_secs(6 * 3600) || heartbeat.memory_bytes > 2 << 30
}

fn main() {
    assert_eq!(cluster2::__private::SHOULD_KILL.len(), 1);
    assert_eq!(cluster2::__private::SHOULD_KILL[0].name, "recycle");
}
