// A mistake in the options does not hide one in the body, and adds no follow-on error.
#[cluster2::main(workers = 0)]
async fn main(started: cluster2::Started) {
    let port: u16 = started.addr();
}
