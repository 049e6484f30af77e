"""Prints deploy/kubernetes/prometheusrule.yaml: the Prometheus rules file as a PrometheusRule."""
import pathlib
import yaml

here = pathlib.Path(__file__).resolve().parent
rules = yaml.safe_load((here.parent / "prometheus/rules/authprobe.rules.yml").read_text())
rule = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": {"name": "authprobe"},
    "spec": {"groups": rules["groups"]},
}
print("# Generated from deploy/prometheus/rules/authprobe.rules.yml (the tests check they match):")
print("#   python3 deploy/kubernetes/prometheusrule.py > deploy/kubernetes/prometheusrule.yaml")
print(yaml.safe_dump(rule, sort_keys=False, width=1000), end="")
