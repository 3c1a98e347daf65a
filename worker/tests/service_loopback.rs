//! Service detection against the real daemons on this machine's loopback
//! (Debian's PostgreSQL, MariaDB, Redis, RabbitMQ with epmd and its Erlang
//! distribution port, Mosquitto, NATS). Expected products and versions are
//! derived from the installed packages (`dpkg-query`), never typed here.
//!
//! A daemon whose package is not installed is skipped with a message; one whose
//! package is installed must be listening and must be named.

use std::net::{IpAddr, Ipv4Addr};

use scanfleet_common::ServiceInfo;
use scanfleet_worker::service::{DetectConfig, Detector};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The upstream part of an installed package's version (`1:10.11.19-0+deb12u1`
/// -> `10.11.19`), or `None` when the package is not installed.
fn installed_version(package: &str) -> Option<String> {
    let out = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Status} ${Version}", package])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.strip_prefix("install ok installed ")?;
    let version = version.split_once(':').map_or(version, |(_, rest)| rest);
    let upstream = version.split(['-', '+', '~']).next()?;
    (!upstream.is_empty()).then(|| upstream.to_string())
}

/// Detection on each port, all ports at once (as the worker does).
async fn detect_all(ports: &[u16]) -> Vec<(u16, Option<ServiceInfo>)> {
    let detector = Detector::new(DetectConfig::default());
    let tasks: Vec<_> = ports
        .iter()
        .map(|&port| {
            let d = detector.clone();
            tokio::spawn(async move { (port, d.detect(LOOPBACK, port).await) })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("detection task"));
    }
    out
}

#[tokio::test]
async fn loopback_daemons_are_named_with_their_installed_versions() {
    // (port, package, service, product, whether the daemon announces its version)
    let daemons: [(u16, &str, &str, Option<&str>, bool); 8] = [
        (5432, "postgresql", "postgresql", Some("PostgreSQL"), false),
        (3306, "mariadb-server", "mysql", Some("MariaDB"), true),
        (6379, "redis-server", "redis", Some("Redis"), true),
        (5672, "rabbitmq-server", "amqp", Some("RabbitMQ"), true),
        (
            4369,
            "erlang-base",
            "epmd",
            Some("Erlang Port Mapper Daemon"),
            false,
        ),
        (
            25672,
            "rabbitmq-server",
            "erlang-dist",
            Some("RabbitMQ"),
            false,
        ),
        (1883, "mosquitto", "mqtt", Some("Mosquitto"), true),
        (4222, "nats-server", "nats", Some("NATS Server"), true),
    ];
    let present: Vec<_> = daemons
        .iter()
        .filter(|(port, package, ..)| {
            let installed = installed_version(package).is_some();
            if !installed {
                eprintln!("{package} not installed: port {port} skipped");
            }
            installed
        })
        .collect();
    assert!(
        !present.is_empty(),
        "none of the loopback daemons is installed"
    );
    let ports: Vec<u16> = present.iter().map(|d| d.0).collect();
    let results = detect_all(&ports).await;
    for ((port, package, service, product, announces), (got_port, info)) in
        present.iter().zip(results)
    {
        assert_eq!(*port, got_port);
        eprintln!("{port}: {info:?}");
        let info = info.unwrap_or_else(|| panic!("{package} on {port}: nothing detected"));
        assert_eq!(info.name, *service, "{port}: {info:?}");
        assert_eq!(info.product.as_deref(), *product, "{port}: {info:?}");
        // Brokers that refuse anonymous clients do not get to say their version.
        let anonymous = info.extra.get("auth").is_none_or(|a| a == "none");
        if *announces && anonymous {
            let want = installed_version(package);
            assert_eq!(info.version, want, "{port}: {info:?}");
            let banner = info.banner.as_deref().unwrap_or_default();
            assert!(
                banner.bytes().all(|b| (0x20..=0x7e).contains(&b)),
                "{banner}"
            );
        }
        match *port {
            5432 => {
                assert!(info.extra.contains_key("auth"), "{info:?}");
                if info
                    .extra
                    .get("postgresql.ssl")
                    .is_some_and(|v| v == "true")
                {
                    assert_eq!(info.extra["starttls"], "offered");
                    assert!(info.extra.contains_key("tls.version"), "{info:?}");
                    assert!(!info.extra.contains_key("tls"), "{info:?}");
                }
            }
            4369 => assert!(
                info.extra
                    .get("epmd.nodes")
                    .is_some_and(|n| n.contains(":25672")),
                "{info:?}"
            ),
            25672 => assert!(info.extra.contains_key("erlang.node"), "{info:?}"),
            1883 | 6379 | 4222 => assert!(info.extra.contains_key("auth"), "{info:?}"),
            _ => {}
        }
    }
}
