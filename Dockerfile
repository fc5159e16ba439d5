# account-usage: the nightly job and report engine, as a small runtime image.
# Build: docker build -t account-usage .   (not built in this repository's CI:
# the CI machine has no Docker engine; the steps mirror `cargo build --release`.)
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY sql ./sql
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/account-usage /usr/local/bin/account-usage
# Spilled aggregates go to the system temp folder; mount an emptyDir there.
USER 65532:65532
ENTRYPOINT ["account-usage"]
CMD ["--help"]
