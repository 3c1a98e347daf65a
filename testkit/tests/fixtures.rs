//! The fixtures start real servers on their own ports, and dropping them stops the
//! servers and removes what they left. Asserts only on listeners these tests started.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use scanfleet_testkit::{Moto, PrivateRabbit, PrivateRedis, Vhost, moto_url, wait_listening};

fn closed(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[test]
fn moto_answers_resets_restarts_on_its_port_and_dies_on_drop() {
    let mut moto = Moto::start();
    assert_eq!(moto.url, format!("http://127.0.0.1:{}", moto.port));
    moto.reset();
    assert!(moto.post("/moto-api/reset", "").is_ok());
    assert!(
        moto.post("/moto-api/no-such-endpoint", "").is_err(),
        "a non-200 answer is an error"
    );
    let env = moto.env();
    assert!(
        env.contains(&("AWS_ENDPOINT_URL", moto.url.clone())),
        "{env:?}"
    );
    let port = moto.port;
    moto.kill();
    assert!(closed(port), "killed");
    let again = Moto::start_on(port);
    again.reset();
    drop(again);
    assert!(closed(port), "dropped");
}

#[test]
fn shared_moto_is_started_once() {
    let a = moto_url();
    let b = moto_url();
    assert_eq!(a, b);
    assert!(a.starts_with("http://"), "{a}");
}

#[test]
fn private_redis_keeps_acknowledged_writes_across_a_kill() {
    let redis = PrivateRedis::new();
    redis.start();
    let cli = |args: &[&str]| {
        let o = Command::new("redis-cli")
            .args(["-p", &redis.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "k", "v"]), "OK");
    redis.kill();
    assert!(closed(redis.port));
    redis.start();
    assert_eq!(
        cli(&["GET", "k"]),
        "v",
        "AOF fsync always: the write survived"
    );
    let port = redis.port;
    drop(redis);
    assert!(closed(port), "dropped");
}

#[test]
fn private_rabbit_boots_stops_and_is_removed_on_drop() {
    let rabbit = PrivateRabbit::new();
    rabbit.start();
    assert!(wait_listening(rabbit.port, Duration::ZERO));
    assert_eq!(
        rabbit.url(),
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", rabbit.port)
    );
    let status = Command::new("rabbitmqctl")
        .args(["-n", &rabbit.node, "status"])
        .output()
        .expect("rabbitmqctl");
    assert!(status.status.success(), "the node answers rabbitmqctl");
    let port = rabbit.port;
    drop(rabbit);
    assert!(closed(port), "dropped");
}

#[test]
fn vhost_exists_while_held() {
    let listed = |name: &str| {
        let o = Command::new("rabbitmqctl")
            .args(["list_vhosts", "--quiet"])
            .output()
            .expect("rabbitmqctl");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.trim() == name)
    };
    let v = Vhost::new("kit");
    assert!(v.url().ends_with(&format!(":5672/{}", v.0)), "{}", v.url());
    let name = v.0.clone();
    assert!(listed(&name));
    drop(v);
    assert!(!listed(&name), "deleted on drop");
}
