# Agent OS in a container: one binary, its home on /data, listening on $PORT (docs/deploy.md).
#
#   docker build -t agent-os .
#   docker run -p 7700:7700 -v agent-os-data:/data agent-os
#
# No secret is built in: give AGENT_OS_ADMIN_TOKEN, DATABASE_URL and the like when the
# container runs. There is no VOLUME line on purpose (Railway refuses one): mount a volume on
# /data to keep the SQLite database, or use PostgreSQL.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p agent-os

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --user-group --uid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin agent-os \
    && mkdir -p /data \
    && chown agent-os:agent-os /data \
    && chmod 0700 /data
COPY --from=build /src/target/release/agent-os /usr/local/bin/agent-os
USER 10001:10001
WORKDIR /data
ENV AGENT_OS_HOME=/data \
    PORT=7700
EXPOSE 7700
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["agent-os", "healthcheck"]
CMD ["agent-os", "serve"]
