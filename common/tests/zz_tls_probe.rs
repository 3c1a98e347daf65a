#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe() {
    let r = scanfleet_common::store::redis::RedisStore::connect("rediss://localhost:16380", Default::default()).await;
    eprintln!("TLS PROBE: {:?}", r.map(|_| ()));
}
