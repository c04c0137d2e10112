# The rtmas binary in a small Debian image, with the example DAGs.
# docker build -t rtmas .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin rtmas

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/rtmas --create-home rtmas
COPY --from=build /src/target/release/rtmas /usr/local/bin/rtmas
COPY dags /etc/rtmas/dags
USER rtmas
WORKDIR /var/lib/rtmas
ENV RTMAS_DAGS_DIR=/etc/rtmas/dags
ENTRYPOINT ["rtmas"]
CMD ["--help"]
