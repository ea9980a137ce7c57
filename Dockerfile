# syntax=docker/dockerfile:1
# The otaplane operator image, the default image of the Helm chart (charts/otaplane).
#
#   docker build -t ghcr.io/otaplane/otaplane:0.1.0 .
#
# Built with BuildKit (the default builder of Docker 23 and later): the cache mounts keep the
# cargo registry and the build directory between builds.

FROM rust:1-bookworm AS builder
WORKDIR /src
# The whole workspace: Cargo.lock pins every dependency (--locked), and the workspace members
# (crates/) and declared targets (benches/) must be present for Cargo to read the manifest.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin otaplane \
    && install -D -m 0755 target/release/otaplane /out/otaplane

# distroless cc: glibc and CA certificates, no shell, no package manager. Same Debian release as
# the builder, so the binary finds the glibc it was linked against.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="otaplane" \
      org.opencontainers.image.description="Kubernetes operator for declarative IoT firmware over-the-air updates" \
      org.opencontainers.image.source="https://github.com/otaplane/otaplane" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/otaplane /otaplane
# The chart runs the pod as this user (runAsNonRoot with runAsUser 65532).
USER 65532:65532
# /metrics, /healthz and /readyz (otaplane run --metrics-addr).
EXPOSE 8080
ENTRYPOINT ["/otaplane"]
CMD ["run"]
