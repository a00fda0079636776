struct Server;

impl Server {
    #[cluster2::main]
    async fn main(&self) {}
}

fn main() {}
