// Worker n binds `warm_up_port + n`: from 0, worker 1 would try port 1.
#[cluster2::main(warm_up_port = 0)]
async fn main() {}
