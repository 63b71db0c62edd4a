#!/usr/bin/env bash
# Regenerates deploy/k8s/moe-cluster.yaml from the Helm chart (default values, release "moe", namespace
# "moe") and deploy/prometheus/moe-cluster-rules.yaml (the spec of the chart's PrometheusRule), and copies
# deploy/grafana/moe-cluster.json into the chart. Helm need not be installed: the helm module's
# PlainManifestsTest runs Helm in-process and, with -Dmoe.k8s.update=true, writes the files.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ -z "${JAVA_HOME:-}" && -d /usr/lib/jvm/temurin-25-jdk-amd64 ]]; then
  export JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64
fi
./mvnw -B -q -pl helm -am test -Dtest=PlainManifestsTest -Dsurefire.failIfNoSpecifiedTests=false -Dmoe.k8s.update=true
echo "wrote deploy/k8s/moe-cluster.yaml, deploy/prometheus/moe-cluster-rules.yaml and helm/moe-cluster/files/grafana/moe-cluster.json"
