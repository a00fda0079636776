#[cluster2::should_kill]
fn recycle() -> bool {
    false
}

fn main() {}
