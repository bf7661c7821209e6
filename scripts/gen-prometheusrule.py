#!/usr/bin/env python3
"""Writes deploy/monitoring/prometheusrule.yaml, the Prometheus Operator's PrometheusRule, from
deploy/monitoring/alerts.yaml, the one source of the alert rules (promtool reads a plain rules
file, the Operator a custom resource around the same groups). Run it after editing alerts.yaml;
scripts/validate-deploy.py fails while the two disagree. `--check`: exit 1 if the file is not
what this script would write."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "deploy", "monitoring", "alerts.yaml")
TARGET = os.path.join(ROOT, "deploy", "monitoring", "prometheusrule.yaml")

HEADER = """\
# GENERATED from alerts.yaml by scripts/gen-prometheusrule.py: edit alerts.yaml, then run
# `python3 scripts/gen-prometheusrule.py` (scripts/validate-deploy.py fails while they differ).
# The Prometheus Operator's form of the same rules. Its Prometheus picks up PrometheusRules
# whose labels match its ruleSelector (kube-prometheus-stack: `release: <its Helm release>`):
# add those labels in your overlay.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: entraguard-notify
  labels:
    app.kubernetes.io/name: entraguard-notify
spec:
"""


def render():
    """alerts.yaml from its `groups:` line on, indented under `spec:` (comments kept)."""
    lines = open(SOURCE, encoding="utf-8").read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "\n".join(("  " + line) if line.strip() else "" for line in lines[start:])
    return HEADER + body + "\n"


def main():
    text = render()
    if sys.argv[1:] == ["--check"]:
        current = open(TARGET, encoding="utf-8").read() if os.path.exists(TARGET) else ""
        if current != text:
            print("deploy/monitoring/prometheusrule.yaml is not generated from alerts.yaml: run python3 scripts/gen-prometheusrule.py")
            sys.exit(1)
        return
    with open(TARGET, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(TARGET, ROOT)}")


if __name__ == "__main__":
    main()
