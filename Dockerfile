# syntax=docker/dockerfile:1
# The dgidgi binary (operator and gateway) in a small non-root image:
#   docker build -t registry.example.com/platform/dgidgi:0.1.0 .
# Stage 1 builds with the locked dependency set (BuildKit caches the registry and target/
# between builds); stage 2 is distroless: glibc and CA certificates, no shell, no package
# manager, user nonroot (65532, the chart's runAsUser).

FROM rust:1.89-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin dgidgi \
    && install -D -m 0755 target/release/dgidgi /out/dgidgi

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/dgidgi /usr/local/bin/dgidgi
# `dgidgi up` serves examples/quickstart relative to the working directory.
COPY examples /work/examples
WORKDIR /work
USER 65532:65532
EXPOSE 8080 8081 9090
ENTRYPOINT ["/usr/local/bin/dgidgi"]
CMD ["gateway", "--config-dir", "/etc/dgidgi/config"]
