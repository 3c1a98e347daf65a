//! The `/metrics` listener over real TCP on 127.0.0.1, against servers these
//! tests start on port 0 (so they assert only on their own listeners).

use std::net::SocketAddr;
use std::time::Duration;

use prometheus::{IntCounter, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{MetricsServer, ServerConfig, redact, render};

const NAME: &str = "scanfleet_test_requests_total";

fn registry() -> Registry {
    let r = Registry::new();
    let c = IntCounter::new(NAME, "test counter").unwrap();
    c.inc_by(7);
    r.register(Box::new(c)).unwrap();
    r
}

async fn start(config: ServerConfig) -> (SocketAddr, CancellationToken, JoinHandle<()>) {
    let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap(), registry(), config)
        .await
        .unwrap();
    let addr = server.local_addr();
    let stop = CancellationToken::new();
    let task = server.spawn(stop.clone());
    (addr, stop, task)
}

/// Send `chunks` as separate writes (with pauses, so they arrive as separate
/// reads) and read the whole response.
async fn request(addr: SocketAddr, chunks: &[&[u8]]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    for c in chunks {
        s.write_all(c).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut text))
        .await
        .expect("response within 5 s")
        .unwrap();
    text
}

const GET: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn a_request_split_across_writes_gets_the_metrics() {
    let (addr, stop, _task) = start(ServerConfig::default()).await;
    let text = request(
        addr,
        &[
            b"GE",
            b"T /met",
            b"rics HTTP/1.1\r\nHo",
            b"st: x\r\n",
            b"\r\n",
        ],
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert!(text.contains(&format!("{NAME} 7")), "{text}");
    stop.cancel();
}

#[tokio::test]
async fn unknown_paths_get_404_and_other_methods_405() {
    let (addr, stop, _task) = start(ServerConfig::default()).await;
    let text = request(addr, &[b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n"]).await;
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
    assert!(!text.contains(NAME), "{text}");
    let text = request(addr, &[b"GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n"]).await;
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    let text = request(
        addr,
        &[b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"],
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 405"), "{text}");
    // A query string is still /metrics.
    let text = request(addr, &[b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"]).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    stop.cancel();
}

#[tokio::test]
async fn connections_over_the_limit_wait_for_a_slot() {
    let (addr, stop, _task) = start(ServerConfig {
        max_connections: 2,
        header_timeout: Duration::from_secs(20),
        connection_timeout: Duration::from_secs(30),
        ..ServerConfig::default()
    })
    .await;
    // Two silent clients take both slots.
    let idle1 = TcpStream::connect(addr).await.unwrap();
    let _idle2 = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third client is connected by the kernel but not served...
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(GET).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(400), third.read(&mut buf)).await;
    assert!(early.is_err(), "served past the limit: {early:?}");
    // ...until a slot frees.
    drop(idle1);
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_string(&mut text))
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    stop.cancel();
}

#[tokio::test]
async fn many_more_clients_than_slots_are_all_answered() {
    let (addr, stop, _task) = start(ServerConfig {
        max_connections: 3,
        ..ServerConfig::default()
    })
    .await;
    let clients: Vec<_> = (0..40)
        .map(|_| tokio::spawn(async move { request(addr, &[GET]).await }))
        .collect();
    for c in clients {
        let text = c.await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains(&format!("{NAME} 7")));
    }
    stop.cancel();
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_header_timeout() {
    let (addr, stop, _task) = start(ServerConfig {
        max_connections: 1,
        header_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "silent client still held after 5 s");
    // Its slot is free again.
    let text = request(addr, &[GET]).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    stop.cancel();
}

#[tokio::test]
async fn shutdown_stops_the_listener_and_its_connections() {
    let (addr, stop, task) = start(ServerConfig {
        max_connections: 1,
        header_timeout: Duration::from_secs(20),
        connection_timeout: Duration::from_secs(30),
        ..ServerConfig::default()
    })
    .await;
    let text = request(addr, &[GET]).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    // One client holds the only slot, a second waits in the backlog.
    let mut held = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut waiting = TcpStream::connect(addr).await.unwrap();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("server stopped within 5 s")
        .unwrap();
    let mut buf = Vec::new();
    // Both see the connection end (EOF or reset), neither hangs.
    let r = tokio::time::timeout(Duration::from_secs(2), held.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "held connection still open");
    let _ = waiting.write_all(GET).await;
    let r = tokio::time::timeout(Duration::from_secs(2), waiting.read_to_end(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "still accepting after shutdown");
}

#[test]
fn render_shows_the_registry() {
    assert!(render(&registry()).contains(&format!("{NAME} 7")));
    assert_eq!(redact("amqp://u:p@h/"), "amqp://u:***@h/");
}
