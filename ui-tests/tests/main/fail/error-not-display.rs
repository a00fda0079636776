#[derive(Debug)]
struct StartError;

#[cluster2::main]
async fn main() -> Result<(), StartError> {
    Err(StartError)
}
