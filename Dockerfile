# EntraGuard Notify: the worker, the admin server and the CLI in one small runtime image, run as a
# non-root user. The worker is the default entrypoint; the admin server runs as
# `--entrypoint /usr/local/bin/entraguard-admin`.
# Build: docker build -t entraguard-notify .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/entraguard-worker target/release/entraguard-notify target/release/entraguard-admin /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin entraguard
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENV NOTIFY_HEALTH_ADDR=0.0.0.0:9464 \
    NOTIFY_LOG_FORMAT=json
EXPOSE 9464 3000
ENTRYPOINT ["/usr/local/bin/entraguard-worker"]
