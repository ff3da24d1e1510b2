# Multi-stage build of every Switchboard binary into one small runtime image.
#   DOCKER_BUILDKIT=1 docker build --build-arg VERSION=0.1.0 -t switchboard .
# The image holds switchboard (all-in-one + admin commands), switchboard-gateway, switchboard-auth,
# switchboard-placement, switchboard-session-store and switchboard-agent, all in /usr/local/bin.
#
# Entrypoint: none; the command names the binary. The default command runs the gateway; run another role by
# naming its binary, e.g. `docker run switchboard switchboard-auth` (the chart and docker-compose.yml do so).
# The HEALTHCHECK (deploy/docker/healthcheck.sh) follows the role it finds in the command.
#
# Base images are pinned by exact tag, not by digest: no digest could be verified where this file was
# written. Pin them by digest in your build pipeline (`docker buildx imagetools inspect <image>`).

FROM rust:1.90.0-bookworm AS build
WORKDIR /src
# Release binaries without debug info, stripped (a gateway binary is ~80 % smaller); no Cargo.toml change.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=true \
    CARGO_INCREMENTAL=0
COPY . .
# protoc is vendored and TLS uses rustls/ring: nothing else to install. The cargo registry and target dir
# are BuildKit cache mounts, so a rebuild after a source change recompiles only the changed crates; the
# binaries are copied out of the cached target dir within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
    && mkdir -p /out \
    && cp target/release/switchboard \
          target/release/switchboard-gateway \
          target/release/switchboard-auth \
          target/release/switchboard-placement \
          target/release/switchboard-session-store \
          target/release/switchboard-agent \
          /out/

FROM debian:12.11-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="Switchboard: a wire-compatible Amazon DCV Session Manager broker (gateway, auth, placement, session-store, agent)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="docker.io/library/debian:12.11-slim"
# ca-certificates: agents without ca_file and rediss:// verify against the system roots.
# curl: the HEALTHCHECK of the gateway (/health/ready) and the chart's `helm test` pod.
# Not version-pinned: Debian replaces security-fixed versions in place, so a pin would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
COPY deploy/docker/healthcheck.sh /usr/local/bin/switchboard-healthcheck
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/switchboard --create-home switchboard
USER 10001
WORKDIR /var/lib/switchboard
# 8443 REST API, 8447 session resolver (gateway); 8445 agent port (session-store); 7001-7003 internal gRPC.
EXPOSE 8443 8445 8447 7001 7002 7003
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["switchboard-healthcheck"]
CMD ["switchboard-gateway"]
