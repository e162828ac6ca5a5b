# syntax=docker/dockerfile:1
#
# moat container image: a static binary on distroless, running as nonroot.
#
#   docker build -t moat .
#   docker run --rm moat version        # moat v… commit <vcs.revision> go1.26.x
#
# Version and commit come only from Go's build info (runtime/debug.ReadBuildInfo):
# `go build` stamps vcs.revision, vcs.time and vcs.modified from the .git
# directory in the build context (so .dockerignore keeps .git), and the module
# version from a tag on that commit. Build from a clean checkout, or `moat
# version` reports "+dirty". When the context has no usable .git (a tarball, a
# git worktree whose .git is a file pointing outside the context), the build
# still succeeds without VCS info; if git itself fails on the repository, turn
# stamping off: docker build --build-arg BUILDVCS=false -t moat .

# At least go.mod's go line (1.26.x): the golang image builds with its own
# toolchain (GOTOOLCHAIN=local) and refuses an older one.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Static binary: no libc in the runtime image.
ENV CGO_ENABLED=0
# Modules first, so the download layer is cached until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ARG BUILDVCS=auto
RUN go build -trimpath -buildvcs=${BUILDVCS} -ldflags="-s -w" -o /out/moat ./cmd/moat \
 && /out/moat version

# static-debian12 has CA certificates (for the IdP's and upstreams' TLS),
# tzdata and /etc/passwd entries for nonroot, and no shell or package manager.
# Pin it by digest (…:nonroot@sha256:…) in your own builds.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/moat /moat
# 65532 is distroless's "nonroot". Numeric, so that Kubernetes'
# runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# 4001: browser-facing listener (listen). 9090: admin listener (admin.listen):
# /metrics, /healthz, /readyz, /admin/sessions.
EXPOSE 4001 9090
# No HEALTHCHECK: distroless has no shell, curl or wget to run one, and moat
# has no health-check subcommand. Use the orchestrator's HTTP probes instead:
# GET /healthz (liveness) and GET /readyz (readiness) on port 4001, as
# deploy/kubernetes/deployment.yaml does.
ENTRYPOINT ["/moat"]
CMD ["serve", "--config", "/etc/moat/moat.yaml"]
