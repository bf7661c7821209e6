#!/usr/bin/env python3
"""Checks docker-compose.yml, the Dockerfile and deploy/ against the code, as far as this
machine allows (no Docker engine, no cluster): every file parses; every setting they pass is
one the binaries read; ports, binaries and the KEDA key agree with the code; deploy/monitoring's
PrometheusRule carries the groups of alerts.yaml and its ServiceMonitor reaches the workers'
metrics port under the job name the rules expect; kustomize renders (when kubectl is installed). Prints what it checked and exits non-zero on the first mismatch."""

import glob
import json
import os
import re
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Variables read by something other than our binaries.
FOREIGN = {"REDIS_ADDRESS": "KEDA's redis trigger", "REDIS_PASSWORD": "KEDA's redis trigger", "HOSTNAME": "worker id prefix (read with std::env)"}


def fail(msg):
    print(f"validate-deploy: FAIL: {msg}")
    sys.exit(1)


def code_env_names():
    names = set()
    for path in glob.glob(os.path.join(ROOT, "crates", "*", "src", "**", "*.rs"), recursive=True):
        names.update(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', open(path, encoding="utf-8").read()))
    return names


def bin_names():
    names = set()
    for path in glob.glob(os.path.join(ROOT, "crates", "*", "Cargo.toml")):
        text = open(path, encoding="utf-8").read()
        names.update(re.findall(r'\[\[bin\]\]\s*name\s*=\s*"([^"]+)"', text))
    return names


def check_env(names, where, known):
    for n in names:
        if n not in known and n not in FOREIGN:
            fail(f"{where} sets {n}, which no binary reads")


def main():
    known = code_env_names()
    bins = bin_names()
    print(f"code reads {len(known)} settings; binaries: {', '.join(sorted(bins))}")

    # docker-compose.yml
    compose = yaml.safe_load(open(os.path.join(ROOT, "docker-compose.yml"), encoding="utf-8"))
    services = compose.get("services", {})
    for required in ("redis", "worker", "admin", "mailpit"):
        if required not in services:
            fail(f"docker-compose.yml has no {required} service")
    for name, svc in services.items():
        env = svc.get("environment", {}) or {}
        if name in ("worker", "cli"):
            check_env(env.keys(), f"compose service {name}", known)
        if name != "cli" and "healthcheck" not in svc:
            fail(f"compose service {name} has no healthcheck")
    worker_env = services["worker"]["environment"]
    if worker_env.get("SMTP_HOST") != "mailpit":
        fail("the compose worker does not use the mail catcher")
    if "appendonly" not in " ".join(services["redis"].get("command", [])):
        fail("compose Redis runs without AOF")
    health_port = worker_env["NOTIFY_HEALTH_ADDR"].rsplit(":", 1)[1]
    if health_port not in " ".join(services["worker"]["healthcheck"]["test"]):
        fail("compose worker healthcheck does not probe NOTIFY_HEALTH_ADDR")
    admin = services["admin"]
    if not any(str(p).endswith(":3000") or str(p) == "3000" for p in admin.get("ports", [])):
        fail("compose admin service does not publish port 3000")
    if not admin["environment"].get("NOTIFY_ADMIN_TOKEN"):
        fail("compose admin service has no NOTIFY_ADMIN_TOKEN")
    print("docker-compose.yml: services, settings, health checks ok")

    # Dockerfile
    docker = open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8").read()
    for b in re.findall(r"target/release/([a-z-]+)", docker):
        if b not in bins:
            fail(f"Dockerfile copies {b}, which is not a binary of the workspace")
    if not re.search(r"^USER\s+(?!0\b|root\b)", docker, re.M):
        fail("Dockerfile does not switch to a non-root user")
    if f"EXPOSE {health_port}" not in docker:
        fail("Dockerfile does not expose the health port")
    print("Dockerfile: binaries, non-root user, port ok")

    # deploy/
    docs = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "deploy", "**", "*.yaml"), recursive=True)):
        for doc in yaml.safe_load_all(open(path, encoding="utf-8")):
            if doc:
                docs.setdefault(doc.get("kind"), []).append((os.path.relpath(path, ROOT), doc))
    for kust in glob.glob(os.path.join(ROOT, "deploy", "*", "kustomization.yaml")):
        k = yaml.safe_load(open(kust, encoding="utf-8"))
        for r in k.get("resources", []):
            if not os.path.exists(os.path.join(os.path.dirname(kust), r)):
                fail(f"{kust} lists missing resource {r}")
    cm = docs["ConfigMap"][0][1]["data"]
    secret = docs["Secret"][0][1]["stringData"]
    check_env(cm.keys(), "ConfigMap", known)
    check_env(secret.keys(), "Secret", known)
    deploy = next(d for _, d in docs["Deployment"] if d["metadata"]["name"] == "entraguard-worker")
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    port = str(container["ports"][0]["containerPort"])
    if cm["NOTIFY_HEALTH_ADDR"].rsplit(":", 1)[1] != port:
        fail("ConfigMap NOTIFY_HEALTH_ADDR and the worker containerPort differ")
    for probe in ("livenessProbe", "readinessProbe"):
        if probe not in container:
            fail(f"worker Deployment has no {probe}")
    grace = pod["terminationGracePeriodSeconds"]
    shutdown = int(cm["NOTIFY_SHUTDOWN_GRACE"].rstrip("s"))
    timeout = int(cm["NOTIFY_DELIVERY_TIMEOUT"].rstrip("s"))
    if not grace > shutdown > timeout:
        fail(f"terminationGracePeriodSeconds ({grace}) > NOTIFY_SHUTDOWN_GRACE ({shutdown}) > NOTIFY_DELIVERY_TIMEOUT ({timeout}) does not hold")
    if pod["securityContext"].get("runAsUser", 0) == 0:
        fail("worker pods run as root")
    admin_deploy = next((d for _, d in docs["Deployment"] if d["metadata"]["name"] == "entraguard-admin"), None)
    if admin_deploy is None or "Service" not in docs:
        fail("no admin Deployment and Service")
    admin_c = admin_deploy["spec"]["template"]["spec"]["containers"][0]
    if os.path.basename(admin_c["command"][0]) not in bins:
        fail("the admin Deployment runs a binary the workspace does not build")
    check_env([e["name"] for e in admin_c.get("env", [])], "admin Deployment", known)
    if "NOTIFY_ADMIN_TOKEN" not in secret:
        fail("the Secret has no NOTIFY_ADMIN_TOKEN for the admin server")
    if "PodDisruptionBudget" not in docs:
        fail("no PodDisruptionBudget")
    so = docs["ScaledObject"][0][1]
    # Work waiting for a worker sits in two lists per queue shard: first attempts (ready) and
    # due retries and replays (retry), and (fair share) in flows, counted by the prometheus
    # trigger below. One trigger each; KEDA scales on the largest demand. The
    # shards' tags come from the CLI (`entraguard-notify shards`), which computes them as the
    # workers do.
    shards = cm.get("NOTIFY_QUEUE_SHARDS", "1")
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--locked", "-p", "entraguard-notify", "--",
         "--key-prefix", cm["NOTIFY_KEY_PREFIX"], "--queue-shards", shards, "--json", "shards"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if out.returncode != 0:
        fail(f"entraguard-notify shards: {out.stderr.strip()}")
    layout = json.loads(out.stdout)
    watched = sorted(
        t["metadata"]["listName"] for t in so["spec"]["triggers"] if t["type"] in ("redis", "redis-cluster")
    )
    want = sorted(row[name] for row in layout for name in ("ready", "retry"))
    if watched != want:
        fail(f"KEDA triggers must watch the redis lists {want} ({shards} queue shard(s)), not {watched}")
    # Fair share keeps most first attempts in flows no single list holds: one prometheus trigger
    # reads the workers' `entraguard_queue_ready` (the ready list and every flow), a gauge the
    # worker must still export.
    prom = [t for t in so["spec"]["triggers"] if t["type"] == "prometheus"]
    if len(prom) != 1 or "entraguard_queue_ready" not in prom[0]["metadata"].get("query", ""):
        fail("KEDA needs one prometheus trigger on entraguard_queue_ready (fair-share flows are no single list)")
    metrics_rs = open(os.path.join(ROOT, "crates", "worker", "src", "metrics.rs"), encoding="utf-8").read()
    if '"entraguard_queue_ready"' not in metrics_rs:
        fail("crates/worker/src/metrics.rs no longer exports entraguard_queue_ready, which KEDA's prometheus trigger reads")
    if so["spec"]["scaleTargetRef"]["name"] != deploy["metadata"]["name"]:
        fail("ScaledObject targets another Deployment")
    for trig in so["spec"]["triggers"]:
        if trig["type"] == "prometheus":
            continue
        for env_ref in ("addressFromEnv", "passwordFromEnv"):
            if trig["metadata"][env_ref] not in secret:
                fail(f"KEDA {env_ref} names a variable the Secret does not set")
    # The key layout in core must still name the lists this way.
    keys_rs = open(os.path.join(ROOT, "crates", "core", "src", "keys.rs"), encoding="utf-8").read()
    for name in ("ready", "retry"):
        if '"{}:' + name + '"' not in keys_rs:
            fail(f"crates/core/src/keys.rs no longer names the {name} list `{{prefix}}:{name}`")
    print(f"deploy/: settings, probes, grace periods, PDB, KEDA keys of {shards} queue shard(s) ok")

    alert_groups = check_monitoring(docs, deploy, container)

    kubectl = shutil.which("kubectl")
    if kubectl:
        for base in ("deploy/base", "deploy/redis", "deploy/monitoring"):
            out = subprocess.run([kubectl, "kustomize", os.path.join(ROOT, base)], capture_output=True, text=True)
            if out.returncode != 0:
                fail(f"kubectl kustomize {base}: {out.stderr.strip()}")
            rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
            print(f"kubectl kustomize {base}: renders {len(rendered)} objects")
            if base == "deploy/monitoring":
                rules = [d for d in rendered if d["kind"] == "PrometheusRule"]
                if len(rules) != 1 or rules[0]["spec"]["groups"] != alert_groups:
                    fail("kubectl kustomize deploy/monitoring does not render one PrometheusRule with the groups of alerts.yaml")
    else:
        print("kubectl not installed: kustomize rendering not checked")
    print("validate-deploy: ok (no Docker engine or cluster here: images were not built, nothing was applied)")


def check_monitoring(docs, worker_deploy, worker_container):
    """deploy/monitoring: the PrometheusRule carries exactly the groups of alerts.yaml (its one
    source); every alert has a severity, a summary and a description; the ServiceMonitor
    scrapes the worker pods' metrics port through a Service whose name is the `job` the rules
    expect. Returns the groups."""
    mon = os.path.join(ROOT, "deploy", "monitoring")
    groups = yaml.safe_load(open(os.path.join(mon, "alerts.yaml"), encoding="utf-8"))["groups"]
    rule = [d for path, d in docs.get("PrometheusRule", []) if path.startswith("deploy/monitoring/")]
    if len(rule) != 1:
        fail("deploy/monitoring needs exactly one PrometheusRule (prometheusrule.yaml)")
    if rule[0]["spec"]["groups"] != groups:
        fail("deploy/monitoring/prometheusrule.yaml and alerts.yaml disagree: run python3 scripts/gen-prometheusrule.py")
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    for a in alerts:
        if a.get("labels", {}).get("severity") not in ("critical", "warning"):
            fail(f"alert {a['alert']} has no severity label critical or warning")
        for key in ("summary", "description"):
            if not a.get("annotations", {}).get(key):
                fail(f"alert {a['alert']} has no {key} annotation")
    sm = [d for _, d in docs.get("ServiceMonitor", [])]
    if len(sm) != 1:
        fail("deploy/monitoring needs exactly one ServiceMonitor")
    sm = sm[0]
    services = [d for _, d in docs["Service"] if d["metadata"].get("labels", {}).items() >= sm["spec"]["selector"]["matchLabels"].items()]
    if len(services) != 1:
        fail("the ServiceMonitor's selector must match exactly one Service")
    svc = services[0]
    pod_labels = worker_deploy["spec"]["template"]["metadata"]["labels"]
    if not pod_labels.items() >= svc["spec"]["selector"].items():
        fail(f"Service {svc['metadata']['name']} does not select the worker pods")
    port_names = {p["name"]: p for p in svc["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        if ep["port"] not in port_names:
            fail(f"the ServiceMonitor scrapes port {ep['port']}, which Service {svc['metadata']['name']} does not name")
        target = port_names[ep["port"]]["targetPort"]
        if not any(p.get("name") == target or p["containerPort"] == target for p in worker_container["ports"]):
            fail(f"Service port {ep['port']} targets {target}, not a port of the worker container")
        if ep.get("path", "/metrics") != "/metrics":
            fail("the ServiceMonitor scrapes another path than the worker's /metrics")
    job = f'job="{svc["metadata"]["name"]}"'
    rules_text = open(os.path.join(mon, "alerts.yaml"), encoding="utf-8").read()
    if job not in rules_text:
        fail(f"the Operator will call the scrape job {svc['metadata']['name']} (the Service's name), but alerts.yaml never selects {job}")
    for other in set(re.findall(r'job="([^"]+)"', rules_text + open(os.path.join(mon, "dashboard.json"), encoding="utf-8").read())):
        if f'job="{other}"' != job:
            fail(f"deploy/monitoring selects job={other!r}, but the ServiceMonitor's job is {svc['metadata']['name']!r}")
    print(f"deploy/monitoring: PrometheusRule = alerts.yaml ({len(alerts)} alerts, each with severity, summary, description); "
          f"ServiceMonitor -> Service {svc['metadata']['name']} -> worker port {worker_container['ports'][0]['containerPort']} ok")
    return groups


if __name__ == "__main__":
    main()
