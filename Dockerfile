# The hfconnect image, for teams that build with Docker; the same image as
# `packaging/build-image.sh` builds offline with umoci: a statically linked
# release binary, a CA bundle and a non-root user on an empty base.
#
#   docker build --build-arg HFCONNECT_REVISION=$(git rev-parse --short=12 HEAD) -t hfconnect:0.1.0 .
FROM rust:1.88-bookworm AS build
ARG HFCONNECT_REVISION=unknown
WORKDIR /src
COPY . .
# The same flags as packaging/build-image.sh: a static binary runs in an empty root.
RUN RUSTFLAGS="-C target-feature=+crt-static" HFCONNECT_REVISION="$HFCONNECT_REVISION" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu --bin hfconnect

FROM scratch
ARG HFCONNECT_REVISION=unknown
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/hfconnect /hfconnect
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY packaging/rootfs/etc/passwd packaging/rootfs/etc/group /etc/
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL org.opencontainers.image.title="hfconnect" \
      org.opencontainers.image.revision="$HFCONNECT_REVISION" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 65532:65532
EXPOSE 8080/tcp
ENTRYPOINT ["/hfconnect"]
CMD ["serve", "--config", "/etc/hfconnect", "--listen", "0.0.0.0:8080"]
