#[cluster2::main]
async fn main(started: cluster2::Started) {
    let shared = std::rc::Rc::new(started);
    tick().await;
    let _ = shared;
}

async fn tick() {}
