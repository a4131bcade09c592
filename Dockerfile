# syntax=docker/dockerfile:1
# dynode-broadcaster: a static binary on a distroless base, run as a non-root user.
#   docker build -t dynode-broadcaster .
#   docker run -p 6379:6379 -p 9121:9121 -e DYNODE_SERVERS=redis-a:6379,redis-b:6379 dynode-broadcaster
# The configuration file is read from /etc/dynode-broadcaster/dynode-broadcaster.properties
# (mount yours there); DYNODE_<KEY> environment variables override it.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/dynode-broadcaster ./cmd/dynode-broadcaster

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/dynode-broadcaster /usr/local/bin/dynode-broadcaster
COPY deploy/dynode-broadcaster.properties /etc/dynode-broadcaster/dynode-broadcaster.properties
USER nonroot:nonroot
# 6379: clients (Redis protocol; 11211 with protocol=memcache); 9121: admin server.
EXPOSE 6379 9121
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/dynode-broadcaster", "health", "-c", "/etc/dynode-broadcaster/dynode-broadcaster.properties"]
ENTRYPOINT ["/usr/local/bin/dynode-broadcaster"]
CMD ["-c", "/etc/dynode-broadcaster/dynode-broadcaster.properties"]
