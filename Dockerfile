# syntax=docker/dockerfile:1
#
# tokend as a static, non-root container image:
#
#   docker build -t tokend:dev --build-arg VERSION=$(git describe --tags --always --dirty) .
#   docker run --rm tokend:dev version
#
# The image runs `tokend run` as uid/gid 65532 ("nonroot") with:
#   /etc/tokend/config.yaml   the config ($TOKEND_CONFIG): mount it (ConfigMap, compose configs)
#   /var/lib/tokend           state_dir's default: the token store. Keep it on a
#                             persistent volume: a lost store means tokens tokend
#                             can no longer revoke (LINE allows 30 per channel)
#   /run/tokend               the socket's default directory (tokend.sock, mode 0660)
#   /shared/tokens            where the examples write token files (outputs[].path)
# See deploy/compose and deploy/kubernetes.

# Go from go.mod's `go` line (1.26.8) or newer (the golang images set
# GOTOOLCHAIN=local, so an older Go refuses to build rather than download a
# toolchain: pull golang:1.26 again if a cached image is older).
ARG GO_VERSION=1.26

# --- build: a static binary -----------------------------------------------
# Runs on the builder's own platform and cross-compiles for the target one
# (docker buildx build --platform linux/amd64,linux/arm64 ...).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first: this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# CGO_ENABLED=0: no libc, so the binary runs on distroless/static (tokend
# needs no cgo: Go's own DNS resolver and crypto). -trimpath and -s -w make a
# reproducible, smaller binary; main.version is what `tokend version` prints.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/tokend ./cmd/tokend
# Empty directories for the image. tokend creates only its state directory
# itself; the socket's and the outputs' directories must exist. Files inside
# are protected by their own modes (store 0600, socket.mode, outputs[].mode).
RUN mkdir -p /out/dirs/state /out/dirs/run /out/dirs/tokens /out/dirs/etc \
 && chmod 0700 /out/dirs/state \
 && chmod 0750 /out/dirs/run /out/dirs/tokens \
 && chmod 0755 /out/dirs/etc

# --- runtime: distroless static, non-root ---------------------------------
# CA certificates (for https://api.line.me), /etc/passwd with nonroot=65532,
# tzdata; no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tokend /usr/local/bin/tokend
# Owned by 65532 so tokend can write them. A named volume (compose) mounted on
# one of these starts as a copy of it, so it is writable by 65532 too.
COPY --from=build --chown=65532:65532 /out/dirs/state  /var/lib/tokend
COPY --from=build --chown=65532:65532 /out/dirs/run    /run/tokend
COPY --from=build --chown=65532:65532 /out/dirs/tokens /shared/tokens
COPY --from=build /out/dirs/etc /etc/tokend
USER 65532:65532
ENV TOKEND_CONFIG=/etc/tokend/config.yaml
VOLUME ["/var/lib/tokend", "/run/tokend", "/shared/tokens"]
# Exit 0 while the daemon answers on its socket (`tokend status` asks it for
# the channel table; exit 1 when it cannot connect or gets no answer within
# 5s). It does not require a valid token: readiness in that sense is
# GET /readyz (503 until every channel holds a valid token), served on the
# socket and on metrics_listen.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/tokend", "status", "-socket", "/run/tokend/tokend.sock"]
# SIGTERM (docker stop) lets LINE calls already sent finish (line.timeout,
# 10s by default), then tokend exits 0: give it more than that to stop, e.g.
# `docker stop -t 30` or stop_grace_period: 30s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tokend"]
CMD ["run"]
