struct Pool {
    idle: usize,
}

#[cluster2::status("db-pool")]
fn pool() -> Pool {
    Pool { idle: 2 }
}

fn main() {}
