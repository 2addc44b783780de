#!/usr/bin/env python3
"""Checks deploy/: the Kubernetes manifests parse as YAML and hold what the cluster needs, and
the Dockerfile is multi-stage, static, non-root, with a data volume and a health check.

No schema validator (kubeconform) can be fetched here, so this asserts the fields that matter
and that the parts agree with each other and with the server (its ports, paths, data dir).
Run by scripts/test.sh; needs PyYAML (installed there if missing).
"""
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def load_manifests():
    docs = {}
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            check(isinstance(doc, dict), f"{path.name}: a mapping")
            check("apiVersion" in doc and "kind" in doc, f"{path.name}: apiVersion and kind")
            key = (doc["kind"], doc.get("metadata", {}).get("name"))
            check(key not in docs, f"{path.name}: {key} defined twice")
            docs[key] = (path.name, doc)
    return docs


def server_routes():
    """The paths the server's HTTP router serves (src/http/mod.rs)."""
    source = (ROOT / "src/http/mod.rs").read_text()
    return set(re.findall(r'\.route\("([^"]+)"', source))


def port_of(env, name):
    value = env.get(name, "")
    check(value.rsplit(":", 1)[-1].isdigit(), f"{name}={value!r} has a port")
    return int(value.rsplit(":", 1)[-1]) if value.rsplit(":", 1)[-1].isdigit() else None


def check_kustomization(docs):
    _, kustomization = docs[("Kustomization", None)]
    listed = set(kustomization["resources"])
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    check(listed == files, f"kustomization lists {sorted(listed)}, files are {sorted(files)}")


def check_statefulset(docs, routes):
    _, sts = docs[("StatefulSet", "esdb")]
    check(sts["apiVersion"] == "apps/v1", "StatefulSet is apps/v1")
    spec = sts["spec"]
    labels = spec["template"]["metadata"]["labels"]
    selector = spec["selector"]["matchLabels"]
    check(selector.items() <= labels.items(), "the selector matches the pod template's labels")
    headless = docs.get(("Service", spec["serviceName"]))
    check(headless is not None, f"serviceName {spec['serviceName']} is a Service here")
    if headless:
        check(headless[1]["spec"].get("clusterIP") == "None", "the governing service is headless")
        check(headless[1]["spec"]["selector"].items() <= labels.items(), "headless selects the pods")
    pod = spec["template"]["spec"]
    security = pod["securityContext"]
    check(security.get("runAsNonRoot") is True, "runAsNonRoot")
    check(security.get("runAsUser", 0) != 0, "a non-root runAsUser")
    (container,) = pod["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    check(port_of(env, "ESDB_HTTP") == ports.get("http"), "the http port is the one ESDB_HTTP binds")
    check(port_of(env, "ESDB_LISTEN") == ports.get("protocol"), "the protocol port is ESDB_LISTEN's")
    check(env.get("ESDB_HTTP", "").startswith("0.0.0.0:"), "HTTP listens beyond loopback (probes)")
    readiness = container["readinessProbe"]["httpGet"]
    check(readiness["path"] == "/ready", "readiness on /ready")
    check(readiness["port"] in ("http", ports.get("http")), "readiness on the HTTP port")
    liveness = container["livenessProbe"]["httpGet"]
    check(liveness["path"] == "/health", "liveness on /health")
    for path in (readiness["path"], liveness["path"]):
        check(path in routes, f"the server serves {path} (src/http/mod.rs)")
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    claims = {claim["metadata"]["name"] for claim in spec["volumeClaimTemplates"]}
    check(env.get("ESDB_DATA_DIR") in mounts.values(), "the data dir is a mounted volume")
    data_volume = [name for name, path in mounts.items() if path == env.get("ESDB_DATA_DIR")]
    check(data_volume and data_volume[0] in claims, "the data volume is a volumeClaimTemplate")
    return security["runAsUser"], ports


def check_services_and_pdb(docs, labels_source):
    _, sts = labels_source
    labels = sts["spec"]["template"]["metadata"]["labels"]
    container_ports = {p["name"] for p in sts["spec"]["template"]["spec"]["containers"][0]["ports"]}
    for (kind, name), (file, doc) in docs.items():
        if kind == "Service":
            check(doc["spec"]["selector"].items() <= labels.items(), f"{file}: selects the pods")
            for port in doc["spec"]["ports"]:
                check(port["targetPort"] in container_ports, f"{file}: targetPort {port['targetPort']}")
    _, pdb = docs[("PodDisruptionBudget", "esdb")]
    check(pdb["apiVersion"] == "policy/v1", "PodDisruptionBudget is policy/v1")
    check(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the PDB selects the pods")
    check(("maxUnavailable" in pdb["spec"]) != ("minAvailable" in pdb["spec"]), "PDB: one bound")


def check_dockerfile(user, ports):
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]
    froms = [line for line in lines if line.startswith("FROM ")]
    check(len(froms) >= 2, "the Dockerfile is multi-stage")
    check("--target x86_64-unknown-linux-musl" in text, "the binary is built for musl (static)")
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    check(users and users[-1].split(":")[0] == str(user), f"USER is {user}, as runAsUser")
    check(any(line.startswith("VOLUME /data") for line in lines), "VOLUME /data")
    check("ESDB_DATA_DIR=/data" in text, "the data dir is the volume")
    health = [line for line in lines if line.startswith("CMD [\"wget\"") or "HEALTHCHECK" in line]
    check(health, "a HEALTHCHECK")
    check('/ready"]' in text, "the health check asks /ready")
    exposed = {int(p) for line in lines if line.startswith("EXPOSE ") for p in line.split()[1:]}
    check(exposed == set(ports.values()), f"EXPOSE {sorted(exposed)} = the pod's ports")


def main():
    docs = load_manifests()
    routes = server_routes()
    check_kustomization(docs)
    user, ports = check_statefulset(docs, routes)
    check_services_and_pdb(docs, docs[("StatefulSet", "esdb")])
    check_dockerfile(user, ports)
    for failure in failures:
        print(f"deploy check FAILED: {failure}")
    checks = "manifests and Dockerfile"
    print(f"deploy: {0 if failures else 1} passed, {1 if failures else 0} failed ({checks})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
