#!/usr/bin/env python3
"""Offline consistency check of the Kubernetes manifests (no cluster needed).

Renders deploy/kubernetes with `kubectl kustomize` and checks what a server-side dry run would
not catch either: selectors match pod labels, probes and Service targetPorts name real container
ports, every volume mount, ConfigMap and secretKeyRef resolves, containers are non-root with a
read-only root filesystem. Needs kubectl (with built-in kustomize) and PyYAML.

    python3 deploy/check-manifests.py
"""
import os
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
rendered = subprocess.run(["kubectl", "kustomize", os.path.join(HERE, "kubernetes")],
                          check=True, capture_output=True, text=True).stdout
docs = [d for d in yaml.safe_load_all(rendered) if d]
by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
problems = []


def want(ok, what):
    if not ok:
        problems.append(what)


for d in docs:
    name = f'{d["kind"]}/{d["metadata"]["name"]}'
    want(d.get("apiVersion"), f"{name}: apiVersion")
    if d["kind"] != "Namespace":
        want(d["metadata"].get("namespace") == "omni-openclaw", f"{name}: namespace")
    if d["kind"] == "Deployment":
        tpl = d["spec"]["template"]
        labels = tpl["metadata"]["labels"]
        want(d["spec"]["selector"]["matchLabels"].items() <= labels.items(), f"{name}: selector")
        pod = tpl["spec"]
        want(pod["securityContext"].get("runAsNonRoot") is True, f"{name}: runAsNonRoot")
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            ports = {p["name"] for p in c["ports"]}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                want(c.get(probe, {}).get("httpGet", {}).get("port") in ports, f"{name}: {probe}")
            sc = c["securityContext"]
            want(sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem")
            want(sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation")
            want("memory" in c["resources"]["requests"], f"{name}: memory request")
            for m in c["volumeMounts"]:
                want(m["name"] in volumes, f"{name}: mount {m['name']}")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret = by.get(("Secret", ref["name"]), {})
                    want(ref["key"] in secret.get("stringData", {}), f"{name}: secret {ref}")
        for v in volumes.values():
            if "configMap" in v:
                want(("ConfigMap", v["configMap"]["name"]) in by, f"{name}: configMap {v}")
            if "secret" in v:
                want(("Secret", v["secret"]["secretName"]) in by, f"{name}: secret {v}")
    if d["kind"] == "Service":
        sel = d["spec"]["selector"].items()
        pods = [x["spec"]["template"] for x in docs
                if x["kind"] == "Deployment" and sel <= x["spec"]["template"]["metadata"]["labels"].items()]
        want(pods, f"{name}: selects no Deployment")
        names = {p["name"] for t in pods for c in t["spec"]["containers"] for p in c["ports"]}
        for p in d["spec"]["ports"]:
            want(p["targetPort"] in names, f"{name}: targetPort {p['targetPort']}")

print(f"{len(docs)} objects: " + ", ".join(sorted(f"{k}/{n}" for k, n in by)))
if problems:
    print("problems:\n  " + "\n  ".join(problems))
    sys.exit(1)
print("ok")
