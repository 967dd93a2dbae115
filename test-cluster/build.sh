#!/usr/bin/env bash
# Builds the real test cluster's Go components from their official modules, pinned below,
# into a per-version cache outside the repository. Safe to re-run: a warm cache builds nothing.
# Prints the cache's bin directory (every binary lives there) on its last line.
set -euo pipefail
cd "$(dirname "$0")"

KUBERNETES_VERSION=v1.35.4
ETCD_VERSION=v3.6.17
HELM_VERSION=v4.3.2
# What Meshery users run beside the operator: the Go Meshery Operator (the migration tests). The
# version is the wrapper module's require in go/meshery-operator.
GO_OPERATOR_VERSION=v1.0.5
# MeshSync, which the operator deploys and the node agent runs (`--run-pods`). The version is the
# wrapper module's require in go/meshsync: v1.0.0 is the newest release the module proxy serves.
MESHSYNC_VERSION=v1.0.0
# The NATS server the operator deploys by default (DEFAULT_NATS_VERSION in src/render/broker.rs), which
# the node agent runs for the `nats:2.10.24` image. Debian's nats-server is 2.9: it stops on the
# SIGTERM that follows lame duck, where 2.10 drains.
NATS_SERVER_VERSION=v2.10.24

cache="${MESHERY_TEST_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshery-operator-test-cluster}"
export GOFLAGS="${GOFLAGS:-} -mod=mod -trimpath"
export CGO_ENABLED=0

# build_into DIR CMD...: runs CMD with $out set to a scratch directory and moves it to DIR only
# when CMD succeeds, so an interrupted build never leaves a half-filled cache entry behind.
build_into() {
    local dir=$1
    shift
    [[ -f "$dir/.complete" ]] && return 0
    echo "test-cluster: building $(basename "$dir") (cold; cached in $dir)" >&2
    local scratch
    scratch=$(mktemp -d "$cache/.build.XXXXXX")
    chmod 755 "$scratch"
    out="$scratch" "$@"
    touch "$scratch/.complete"
    rm -rf "$dir"
    mv "$scratch" "$dir"
}

build_kubernetes() {
    local minor=${KUBERNETES_VERSION#v1.}
    minor=${minor%%.*}
    local pkg=k8s.io/component-base/version
    (cd go/kubernetes && go build -o "$out/" \
        -ldflags "-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler)
}

# kubectl of the same release: Debian's is older than the API server's supported skew.
build_kubectl() {
    local minor=${KUBERNETES_VERSION#v1.}
    minor=${minor%%.*}
    local pkg=k8s.io/client-go/pkg/version
    local base=k8s.io/component-base/version
    (cd go/kubernetes && go build -o "$out/" \
        -ldflags "-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $base.gitVersion=$KUBERNETES_VERSION -X $base.gitMajor=1 -X $base.gitMinor=$minor" \
        k8s.io/kubernetes/cmd/kubectl)
}

build_etcd() {
    (cd go/etcd && go build -o "$out/etcd" -ldflags "-s -w" .)
}

build_helm() {
    GOBIN="$out" go install -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
}

# Its CRDs (config/crd/bases, conversion None) come along: the migration tests install them first,
# as a user of the Go operator has them.
build_go_operator() {
    (cd go/meshery-operator && go build -o "$out/meshery-operator-go" -ldflags "-s -w" \
        github.com/meshery/meshery-operator/cmd &&
        mkdir -p "$out/crds" &&
        cp "$(go list -m -f '{{.Dir}}' github.com/meshery/meshery-operator)"/config/crd/bases/*.yaml "$out/crds/" &&
        chmod 644 "$out"/crds/*.yaml)
}

# Named as its image's entrypoint (`/meshery-meshsync`), with its version stamped as the release's
# Dockerfile does.
build_meshsync() {
    (cd go/meshsync && go build -o "$out/meshery-meshsync" \
        -ldflags "-s -w -X main.version=$MESHSYNC_VERSION" github.com/meshery/meshsync)
}

# nats-server states its version in its source; its module has no replace directives.
build_nats_server() {
    GOBIN="$out" go install -ldflags "-s -w" "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"
}

mkdir -p "$cache/bin"
build_into "$cache/kubernetes-$KUBERNETES_VERSION" build_kubernetes
build_into "$cache/kubectl-$KUBERNETES_VERSION" build_kubectl
build_into "$cache/etcd-$ETCD_VERSION" build_etcd
build_into "$cache/helm-$HELM_VERSION" build_helm
build_into "$cache/meshery-operator-go-$GO_OPERATOR_VERSION" build_go_operator
build_into "$cache/meshsync-$MESHSYNC_VERSION" build_meshsync
build_into "$cache/nats-server-$NATS_SERVER_VERSION" build_nats_server

# One directory of links to the pinned versions, so callers need a single path.
for bin in kube-apiserver kube-controller-manager kube-scheduler; do
    ln -sfn "../kubernetes-$KUBERNETES_VERSION/$bin" "$cache/bin/$bin"
done
ln -sfn "../kubectl-$KUBERNETES_VERSION/kubectl" "$cache/bin/kubectl"
ln -sfn "../etcd-$ETCD_VERSION/etcd" "$cache/bin/etcd"
ln -sfn "../helm-$HELM_VERSION/helm" "$cache/bin/helm"
ln -sfn "../meshery-operator-go-$GO_OPERATOR_VERSION/meshery-operator-go" "$cache/bin/meshery-operator-go"
# Per tag: the node agent runs `meshery/meshsync:<tag>` as `meshery-meshsync-<tag>`.
ln -sfn "../meshsync-$MESHSYNC_VERSION/meshery-meshsync" "$cache/bin/meshery-meshsync-$MESHSYNC_VERSION"
# Per release: the node agent runs `nats:<release>[-<variant>]` as `nats-server-<release>`.
ln -sfn "../nats-server-$NATS_SERVER_VERSION/nats-server" "$cache/bin/nats-server-${NATS_SERVER_VERSION#v}"
echo "$cache/bin"
