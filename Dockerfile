# authprobe container image: built in one stage, run from a small one as a non-root user.
# The probes file and its secrets are mounted at run time, never baked in:
#   docker build -t authprobe .
#   docker run -p 9871:9871 -v "$PWD/probes.yaml:/etc/authprobe/probes.yaml:ro" \
#     -v authprobe-data:/var/lib/authprobe authprobe

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
RUN cargo build --release --locked --bin authprobe \
    && strip target/release/authprobe

FROM debian:bookworm-slim
# CA certificates for HTTPS targets; nothing else is needed at run time.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/authprobe /usr/local/bin/authprobe
# Where state survives restarts (--storage.path): mount a volume here.
RUN mkdir -m 0700 /var/lib/authprobe && chown 65532:65532 /var/lib/authprobe
VOLUME ["/var/lib/authprobe"]
USER 65532:65532
WORKDIR /etc/authprobe
EXPOSE 9871
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["authprobe", "healthcheck", "--web.listen-address", "127.0.0.1:9871"]
ENTRYPOINT ["authprobe"]
CMD ["run", "--config.file", "/etc/authprobe/probes.yaml", "--web.listen-address", ":9871", "--storage.path", "/var/lib/authprobe"]
