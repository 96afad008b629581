# syntax=docker/dockerfile:1
# The registro binary in a small Debian image. Built by compose.yaml; by hand:
#   docker build -t registro .
#   docker run --rm -p 127.0.0.1:8080:8080 -v registro-data:/var/lib/registro registro
# (the second line runs the embedded SQLite default, its data in the volume).

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# rust-toolchain.toml pins the exact toolchain; rustup fetches it if the image's differs.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p registro-cli \
    && cp target/release/registro /usr/local/bin/registro

FROM debian:bookworm-slim
# ca-certificates: the system's trust store (the PostgreSQL connection has no TLS yet, see
# docs/operations.md); curl: the container health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/registro --create-home \
    --shell /usr/sbin/nologin registro
COPY --from=builder /usr/local/bin/registro /usr/local/bin/registro
USER registro
WORKDIR /var/lib/registro
ENV REGISTRO_DATA_DIR=/var/lib/registro
EXPOSE 8080
ENTRYPOINT ["registro"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
