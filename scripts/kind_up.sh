#!/usr/bin/env bash
# Bring up the local kind cluster (make kind-up): KFP pinned to manifests/kfp/VERSION, the project's
# images loaded, a fake nvidia.com/gpu capacity on the GPU worker, the kfp-launcher settings and the
# lumbar-s3 Secret made from KFP's own SeaweedFS credentials. Idempotent: reruns reuse the cluster.
set -euo pipefail
CLUSTER=${CLUSTER:-lumbar}
REGISTRY=${REGISTRY:-ghcr.io/lumbar-spine/lumbar}
VERSION=${VERSION:?set VERSION (the image tag prefix, e.g. 0.1.0)}
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "kind-up: $tool is not installed" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "kind-up: the Docker engine is not reachable" >&2; exit 1; }

kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --config manifests/kind/cluster.yaml
kubectl config use-context "kind-$CLUSTER"
kubectl apply -k manifests/kfp/cluster-scoped
kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
kubectl apply -k manifests/kfp/platform-agnostic
kubectl -n kubeflow wait --for=condition=available --timeout=1200s deployment --all

for kind in cpu gpu; do
  kind load docker-image --name "$CLUSTER" "$REGISTRY:$VERSION-$kind"
done

gpu_node=$(kubectl get nodes -l lumbar/node=gpu -o name)
kubectl patch "$gpu_node" --subresource=status --type=json \
  -p '[{"op": "add", "path": "/status/capacity/nvidia.com~1gpu", "value": "1"}]'

kubectl apply -k manifests/lumbar
key=$(kubectl -n kubeflow get secret mlpipeline-minio-artifact -o jsonpath='{.data.accesskey}' | base64 -d)
secret=$(kubectl -n kubeflow get secret mlpipeline-minio-artifact -o jsonpath='{.data.secretkey}' | base64 -d)
kubectl -n kubeflow create secret generic lumbar-s3 \
  --from-literal=AWS_ACCESS_KEY_ID="$key" --from-literal=AWS_SECRET_ACCESS_KEY="$secret" \
  --from-literal=AWS_ENDPOINT_URL=http://seaweedfs.kubeflow:9000 --from-literal=AWS_DEFAULT_REGION=us-east-1 \
  --dry-run=client -o yaml | kubectl apply -f -
echo "kind-up: cluster $CLUSTER ready. API: kubectl -n kubeflow port-forward svc/ml-pipeline 8888:8888"
