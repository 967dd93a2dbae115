# syntax=docker/dockerfile:1
# meshery-operator: a static (musl) release build, run from distroless/static as a non-root user.
#   docker build -t meshery/meshery-operator:v0.1.0 .

# The crate's rust-version (the highest any locked dependency needs, too).
ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY kube-sim/Cargo.toml kube-sim/
RUN mkdir -p src kube-sim/src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > benches/render_plan.rs \
 && echo 'fn main() {}' > kube-sim/src/main.rs && touch kube-sim/src/lib.rs \
 && cargo fetch --locked
COPY src src
COPY benches benches
COPY kube-sim kube-sim
RUN cargo build --release --locked --bin meshery-operator \
 && cp target/release/meshery-operator /meshery-operator

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="meshery-operator" \
      org.opencontainers.image.description="Kubernetes operator for Meshery's Broker (NATS) and MeshSync" \
      org.opencontainers.image.source="https://github.com/meshery/meshery-operator" \
      org.opencontainers.image.url="https://meshery.io" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /meshery-operator /meshery-operator
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/meshery-operator"]
CMD ["run"]
