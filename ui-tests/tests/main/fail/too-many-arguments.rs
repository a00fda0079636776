#[cluster2::main]
async fn main(started: cluster2::Started, name: String) {
    let _ = (started, name);
}
