# syntax=docker/dockerfile:1
# account-usage: the nightly job and report engine, as a small runtime image.
#
#   DOCKER_BUILDKIT=1 docker build -t account-usage:0.1.0 .
#
# Not built in this repository's CI: its machine has no Docker engine. Every
# build step is `cargo build --release --locked`, which CI runs as it is.
# The builder is Debian 12 (bookworm), the runtime's release, so the binary's
# glibc matches. The runtime is distroless: glibc, libgcc, CA certificates
# (S3, GCS and Azure are reached over TLS) and a nonroot user (65532), no shell.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY sql ./sql
# The registry and target folder persist between builds in BuildKit caches;
# the binary is copied out of the cached target folder into the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && cp target/release/account-usage /usr/local/bin/account-usage

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/account-usage /usr/local/bin/account-usage
# Spilled aggregates go to SPILL_DIR (default: /tmp); the manifests mount an
# emptyDir there and keep the root filesystem read-only.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/account-usage"]
CMD ["--help"]
