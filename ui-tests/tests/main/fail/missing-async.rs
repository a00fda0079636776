#[cluster2::main(port = 9090)]
fn main(started: cluster2::Started) {
    let _ = started;
}
