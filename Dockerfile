# Patchbay: multi-stage build, Debian slim runtime, non-root user.
#   docker build -t patchbay .
#   docker run -p 3000:3000 -v patchbay-data:/var/lib/patchbay patchbay
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p patchbay \
 && strip target/release/patchbay

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/patchbay --shell /usr/sbin/nologin patchbay \
 && mkdir -p /var/lib/patchbay/data \
 && chown -R patchbay:patchbay /var/lib/patchbay
COPY --from=build /src/target/release/patchbay /usr/local/bin/patchbay
USER patchbay
WORKDIR /var/lib/patchbay
ENV PATCHBAY_LISTEN=0.0.0.0:3000 \
    PATCHBAY_DATA_DIR=/var/lib/patchbay/data \
    PATCHBAY_LOG_FORMAT=json
EXPOSE 3000
VOLUME ["/var/lib/patchbay/data"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:3000/readyz || exit 1
ENTRYPOINT ["patchbay"]
CMD ["serve"]
