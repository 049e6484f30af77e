#!/usr/bin/env bash
# Renders the files deploy/ ships from the authprobe mixin (deploy/mixin) with its default _config:
#   deploy/prometheus/rules/authprobe.rules.yml                 prometheusRules + prometheusAlerts
#   deploy/kubernetes/prometheusrule.yaml                       the same groups as a PrometheusRule
#   deploy/grafana/provisioning/alerting/authprobe-alerts.yaml  grafanaAlerting
#   deploy/grafana/dashboards/authprobe.json                    grafanaDashboards
# Usage: deploy/mixin/generate.sh [OUTPUT_ROOT]   (default: the repository, overwriting them)
# tests/deploy.rs renders into a temporary folder and fails when a checked-in file differs.
# Needs jsonnet (Debian's `jsonnet` package, which tests/run.sh installs).
set -euo pipefail
mixin=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(cd "$mixin/../.." && pwd)}
command -v jsonnet >/dev/null || { echo "generate.sh: jsonnet not found (apt-get install jsonnet)" >&2; exit 1; }

# jsonnet -m writes into folders that exist.
mkdir -p "$out/deploy/prometheus/rules" "$out/deploy/kubernetes" \
    "$out/deploy/grafana/provisioning/alerting" "$out/deploy/grafana/dashboards"
# The YAML files: strings of generate.jsonnet, written as they are (-S).
jsonnet -J "$mixin" -S -m "$out" "$mixin/generate.jsonnet" >/dev/null
# The dashboards: JSON as jsonnet prints it (3-space indent, keys sorted), one file per key.
jsonnet -J "$mixin" -m "$out/deploy/grafana/dashboards" -e "(import 'mixin.libsonnet').grafanaDashboards" >/dev/null
