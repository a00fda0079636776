// Every mistake is reported at once, not one per build.
#[cluster2::main(prot = 9090, workers = 0, server = "http3", workers = 2)]
fn main(started: cluster2::Started, extra: u8) {
    let _ = (started, extra);
}
