# syntax=docker/dockerfile:1
# One image for every component: `conclave api`, `conclave sfu`, `conclave sip`,
# `conclave operator`, `conclave standalone`. Build from the repository root:
#   docker build -t conclave:0.1.0 .
# The runtime stage is distroless (glibc, libgcc, CA certificates, no shell) and runs as the
# numeric non-root user 65532; the web portal sits at /usr/share/conclave/web.

# --- the web portal -------------------------------------------------------------------------
FROM node:22.12-bookworm-slim AS portal
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web/ ./
# The portal's TypeScript types are generated from the committed schemas (web/src/generated).
RUN npm run --silent build

# --- the binary -----------------------------------------------------------------------------
FROM rust:1.95-bookworm AS binary
# libopus for the SIP gateway's Opus, linked statically (libopus.a): the runtime needs no .so.
# audiopus_sys links a static library only from <LIBOPUS_LIB_DIR>/lib and only without
# pkg-config (which never links static libraries from /usr), hence the prefix and NO_PKG.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libopus-dev=1.3.1-3 pkg-config=1.8.1-1 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /opt/opus/lib \
    && ln -s "$(pkg-config --variable=libdir opus)/libopus.a" /opt/opus/lib/libopus.a
ENV LIBOPUS_STATIC=1 LIBOPUS_NO_PKG=1 LIBOPUS_LIB_DIR=/opt/opus
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY api api
COPY conclave conclave
COPY crds crds
COPY fakekube fakekube
COPY files files
COPY loadgen loadgen
COPY operator operator
COPY placement placement
COPY proto proto
COPY sfu sfu
COPY sip sip
COPY tests tests
RUN cargo build --release --locked -p conclave \
    && install -D -m 0755 target/release/conclave /out/conclave \
    && install -d -o 65532 -g 65532 /out/data

# --- the API's runtime (target `media`, tagged <version>-media) -------------------------------
# The API composes recordings with ffmpeg and turns presentations into page images with
# poppler: both need programs distroless cannot hold. `docker build --target media -t
# conclave:0.1.0-media .`; the chart runs the API from this image and the rest from the one below.
FROM debian:bookworm-slim AS media
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg=7:5.1.9-0+deb12u1 poppler-utils=22.12.0-2+deb12u3 \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o 65532 -g 65532 /var/lib/conclave
COPY --from=binary /out/conclave /usr/bin/conclave
COPY --from=portal /src/web/dist /usr/share/conclave/web
ENV CONCLAVE_PORTAL_DIR=/usr/share/conclave/web \
    CONCLAVE_DATA_DIR=/var/lib/conclave \
    CONCLAVE_LISTEN=0.0.0.0:8080
USER 65532:65532
WORKDIR /var/lib/conclave
EXPOSE 8080
ENTRYPOINT ["/usr/bin/conclave"]
CMD ["api"]

# --- runtime ----------------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=binary /out/conclave /usr/bin/conclave
COPY --from=portal /src/web/dist /usr/share/conclave/web
# The data folder belongs to the runtime user (a volume or an emptyDir with a read-only root).
COPY --from=binary --chown=65532:65532 /out/data /var/lib/conclave
ENV CONCLAVE_PORTAL_DIR=/usr/share/conclave/web \
    CONCLAVE_DATA_DIR=/var/lib/conclave \
    CONCLAVE_LISTEN=0.0.0.0:8080
USER 65532:65532
WORKDIR /var/lib/conclave
# The portal and API; SIP dial-in of standalone (the chart's gateway listens on 5060 too).
EXPOSE 8080 5060/udp 5060/tcp
ENTRYPOINT ["/usr/bin/conclave"]
# `docker run -p 8080:8080 conclave` runs everything in one container (dial-in also needs 5060
# and the RTP ports published and CONCLAVE_SIP_PUBLIC_ADDRESS, see docs/sip.md); the chart passes
# `api`, `sfu`, `sip` or `operator` instead.
CMD ["standalone"]
