# casterpak in a container: built in one stage, run in a small one as a
# user of its own. The media go in /media (read-only), the cache in the
# /var/cache/casterpak volume; configuration by CASTERPAK_* variables or a
# file mounted at /etc/casterpak/casterpak.toml.
#
#   docker build -t casterpak .
#   docker run -p 8080:8080 -v /srv/media:/media:ro casterpak
#
# dist/compose/compose.yaml runs two of them behind Varnish.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin casterpak \
 && install -m 0755 target/release/casterpak /usr/local/bin/casterpak

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home casterpak \
 && mkdir -p /var/cache/casterpak /media \
 && chown casterpak:casterpak /var/cache/casterpak
COPY --from=build /usr/local/bin/casterpak /usr/local/bin/casterpak
USER casterpak
ENV CASTERPAK_MEDIA_ROOT=/media \
    CASTERPAK_CACHE_DIR=/var/cache/casterpak \
    CASTERPAK_SERVER_LISTEN=0.0.0.0:8080
VOLUME /var/cache/casterpak
EXPOSE 8080
# SIGTERM: downloads in flight finish (30 s at most), then exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/casterpak"]
CMD ["serve"]
