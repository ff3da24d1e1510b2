# Multi-stage build of every Switchboard binary into one small runtime image.
#   docker build -t switchboard .
# The image holds: switchboard (all-in-one + admin), switchboard-gateway, switchboard-auth,
# switchboard-placement, switchboard-session-store and switchboard-agent.

FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
# protoc is vendored and TLS uses rustls/ring: nothing else to install.
RUN cargo build --release --locked --workspace --bins

FROM debian:bookworm-slim
# ca-certificates: agents without ca_file and rediss:// verify against the system roots.
# curl: container health checks of the gateway (/health/ready).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/switchboard \
                  /src/target/release/switchboard-gateway \
                  /src/target/release/switchboard-auth \
                  /src/target/release/switchboard-placement \
                  /src/target/release/switchboard-session-store \
                  /src/target/release/switchboard-agent \
                  /usr/local/bin/
RUN useradd --system --uid 10001 --home-dir /var/lib/switchboard --create-home switchboard
USER 10001
WORKDIR /var/lib/switchboard
EXPOSE 8443 8445
CMD ["switchboard-gateway", "--help"]
