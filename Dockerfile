# syntax=docker/dockerfile:1
# scanfleet: both binaries (`scanfleet`, `scanfleet-worker`) in one slim image.
#   docker build -t scanfleet .
# The worker needs CAP_NET_RAW for SYN scans (`--mode syn|auto`); give it with
# `--cap-add NET_RAW` (docker-compose.yml does, on the worker only). The binary
# carries the file capability cap_net_raw+ep so that the non-root user can use it;
# a container whose bounding set lacks NET_RAW (e.g. `--cap-drop ALL` alone) cannot
# exec scanfleet-worker at all: add NET_RAW back.

FROM rust:1.95-trixie AS builder
WORKDIR /src
# Manifests first, then the sources: the workspace's lock file pins every crate.
COPY Cargo.toml Cargo.lock ./
COPY common common
COPY coordinator coordinator
COPY worker worker
COPY testkit testkit
COPY data data
RUN cargo build --release --locked -p scanfleet-coordinator -p scanfleet-worker --bins \
 && install -D -m 0755 target/release/scanfleet /out/scanfleet \
 && install -D -m 0755 target/release/scanfleet-worker /out/scanfleet-worker

FROM debian:trixie-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 scanfleet \
 && useradd --system --uid 10001 --gid scanfleet --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin scanfleet
COPY --from=builder /out/scanfleet /out/scanfleet-worker /usr/local/bin/
RUN setcap cap_net_raw+ep /usr/local/bin/scanfleet-worker
USER 10001:10001
# Prometheus metrics, when --metrics-addr / SCANFLEET_METRICS_ADDR is 0.0.0.0:9464
EXPOSE 9464
CMD ["scanfleet", "--help"]
