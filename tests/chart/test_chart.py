"""The Helm chart, rendered by Helm's own engine (helm-python-sdk binds Helm's Go SDK; no helm
binary) and validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict mode:
unknown fields fail).

Run by .ci/run: `.venv/bin/python -m pytest -q tests/chart`.
"""

from __future__ import annotations

import pathlib
import shutil

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "dgidgi"
PRODUCTION = yaml.safe_load((ROOT / "tests/chart/values-production.yaml").read_text())
NAMESPACE = "dgidgi-system"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas known.
KUBE_VERSIONS = ["1.27.0", kubernetes_validate.utils.latest_version() + ".0"]
# Custom resources have no schema in kubernetes-validate; these are checked by the tests below.
CRD_TYPED = {("monitoring.coreos.com/v1", "ServiceMonitor")}
SECURE_CONTAINER = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def render(values: dict | None = None, chart: pathlib.Path = CHART) -> list[dict]:
    """Every object the chart renders, in template order."""
    with helm.Chart.load(chart) as loaded:
        manifests = loaded.render(values, name="dgidgi", namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                doc["__template"] = path
                objects.append(doc)
    return objects


def one(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def kinds(objects: list[dict]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


@pytest.fixture(scope="module")
def default() -> list[dict]:
    return render()


@pytest.fixture(scope="module")
def production() -> list[dict]:
    return render(PRODUCTION)


@pytest.mark.parametrize("values", [None, PRODUCTION], ids=["default", "production"])
def test_lint_is_clean(values):
    for kube in KUBE_VERSIONS:
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version="v" + kube)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert report["errors"] == [] and problems == [], report


def validate(objects: list[dict]) -> int:
    """Every object against the Kubernetes OpenAPI schemas (strict), for every KUBE_VERSION."""
    checked = 0
    for obj in objects:
        obj = {k: v for k, v in obj.items() if k != "__template"}
        assert obj["metadata"].get("namespace") in (NAMESPACE, None), obj["metadata"]
        if (obj["apiVersion"], obj["kind"]) in CRD_TYPED:
            continue
        for kube in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, kube, strict=True)
        checked += 1
    return checked


@pytest.mark.parametrize("which", ["default", "production"])
def test_every_manifest_is_valid_for_kubernetes(which, request):
    assert validate(request.getfixturevalue(which)) >= 10


# Other shapes the chart takes: each must also be valid Kubernetes.
VARIANTS = {
    "unshared-acknowledged": {"gateway": {"replicas": 3, "acknowledgeUnsharedLimits": True},
                              "valkey": {"enabled": False}},
    "no-persistence": {"gateway": {"state": {"persistence": {"enabled": False}}},
                       "valkey": {"persistence": {"enabled": False}}},
    "external-redis": {"gateway": {"redis": {"enabled": True, "existingSecret": "r"}}},
    "shared-claim": {"gateway": {"state": {"persistence": {
        "existingClaim": "ledgers", "accessModes": ["ReadWriteMany"]}}}},
    "policies-configured": {"networkPolicy": {
        "apiFrom": [{"namespaceSelector": {}}], "restrictEgress": True,
        "adminFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
        "valkey": {"image": {"digest": "sha256:" + "ab" * 32}, "extraConfig": "hz 20"}},
    "no-network-policy": {"networkPolicy": {"enabled": False}},
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_is_valid_for_kubernetes(name):
    assert validate(render(VARIANTS[name])) >= 10


def test_the_chart_crds_equal_crds_dir_and_are_valid():
    with helm.Chart.load(CHART) as loaded:
        crds = loaded.crds
    names = sorted(pathlib.Path(c["filename"]).name for c in crds)
    assert names == sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    for crd in crds:
        expected = (ROOT / "crds" / pathlib.Path(crd["filename"]).name).read_text()
        assert crd["data"] == expected
        for kube in KUBE_VERSIONS:
            kubernetes_validate.validate(yaml.safe_load(crd["data"]), kube, strict=True)


def container(objects: list[dict], kind: str, name: str) -> dict:
    return one(objects, kind, name)["spec"]["template"]["spec"]["containers"][0]


def env(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def test_default_install_is_exact_and_durable(default):
    """Default values: two gateway replicas sharing the bundled Valkey (limits hold fleet-wide),
    each with its own ledger claim (usage survives pod deletion), NetworkPolicies on."""
    assert kinds(default) == {
        ("ServiceAccount", "dgidgi-operator"),
        ("ServiceAccount", "dgidgi-gateway"),
        ("ClusterRole", "dgidgi-operator-dgidgi-system"),
        ("ClusterRoleBinding", "dgidgi-operator-dgidgi-system"),
        ("Role", "dgidgi-operator"),
        ("RoleBinding", "dgidgi-operator"),
        ("Deployment", "dgidgi-operator"),
        ("StatefulSet", "dgidgi-gateway"),
        ("Service", "dgidgi-gateway"),
        ("Service", "dgidgi-gateway-admin"),
        ("Service", "dgidgi-gateway-headless"),
        ("Service", "dgidgi-operator-metrics"),
        ("PodDisruptionBudget", "dgidgi-gateway"),
        ("PodDisruptionBudget", "dgidgi-operator"),
        ("Secret", "dgidgi-admin-token"),
        ("StatefulSet", "dgidgi-valkey"),
        ("ConfigMap", "dgidgi-valkey"),
        ("Secret", "dgidgi-valkey"),
        ("Service", "dgidgi-valkey"),
        ("Service", "dgidgi-valkey-headless"),
        ("NetworkPolicy", "dgidgi-gateway"),
        ("NetworkPolicy", "dgidgi-operator"),
        ("NetworkPolicy", "dgidgi-valkey"),
    }
    operator = one(default, "Deployment", "dgidgi-operator")
    assert operator["spec"]["replicas"] == 2

    # The gateway: two replicas, each with a ledger claim of its own, kept when pods go.
    gateway = one(default, "StatefulSet", "dgidgi-gateway")["spec"]
    assert gateway["replicas"] == 2
    assert gateway["serviceName"] == "dgidgi-gateway-headless"
    assert one(default, "Service", "dgidgi-gateway-headless")["spec"]["clusterIP"] == "None"
    [claim] = gateway["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    # Only labels that never change: a StatefulSet's claim templates are immutable.
    assert set(claim["metadata"]["labels"]) == {
        "app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
    assert gateway["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain", "whenScaled": "Retain"}
    pod = gateway["template"]["spec"]
    assert not [v for v in pod["volumes"] if v["name"] == "state"], "the claim template is the volume"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "state")
    assert mount["mountPath"] == "/var/lib/dgidgi" and "subPathExpr" not in mount

    # Its store: DGIDGI_REDIS_URL points at the bundled Valkey, the password from its Secret.
    gw = env(pod["containers"][0])
    assert gw["VALKEY_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "dgidgi-valkey", "key": "password"}
    assert gw["DGIDGI_REDIS_URL"]["value"] == \
        "redis://:$(VALKEY_PASSWORD)@dgidgi-valkey.dgidgi-system.svc:6379"
    names = [e["name"] for e in pod["containers"][0]["env"]]
    assert names.index("VALKEY_PASSWORD") < names.index("DGIDGI_REDIS_URL"), \
        "Kubernetes expands $(VAR) only from variables defined before"
    assert "--redis-fail-mode=open" in pod["containers"][0]["args"]

    secret = one(default, "Secret", "dgidgi-valkey")
    assert len(secret["data"]["password"]) >= 40
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    service = one(default, "Service", "dgidgi-valkey")["spec"]
    assert service["type"] == "ClusterIP"
    assert service["ports"] == [{"name": "valkey", "port": 6379, "targetPort": "valkey",
                                 "protocol": "TCP"}]

    valkey = one(default, "StatefulSet", "dgidgi-valkey")["spec"]
    assert valkey["replicas"] == 1
    assert valkey["serviceName"] == "dgidgi-valkey-headless"
    [data] = valkey["volumeClaimTemplates"]
    assert data["metadata"]["name"] == "data" and data["spec"]["accessModes"] == ["ReadWriteOnce"]
    vpod = valkey["template"]["spec"]
    assert vpod["automountServiceAccountToken"] is False
    vc = vpod["containers"][0]
    assert vc["image"].startswith("docker.io/valkey/valkey:8.")
    assert env(vc)["VALKEY_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "dgidgi-valkey", "key": "password"}
    assert "$VALKEY_PASSWORD" in vc["args"][0] and "/tmp/auth.conf" in vc["args"][0]
    assert not [a for a in vc["command"] + vc["args"] if "--requirepass" in a], \
        "the password stays off the command line"
    assert "valkey-cli" in " ".join(vc["readinessProbe"]["exec"]["command"])
    assert vc["livenessProbe"]["tcpSocket"] == {"port": "valkey"}
    tmp = next(v for v in vpod["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["medium"] == "Memory", "auth.conf never touches a disk"
    conf = one(default, "ConfigMap", "dgidgi-valkey")["data"]["valkey.conf"].splitlines()
    for line in ["dir /data", "include /tmp/auth.conf", "appendonly yes", "appendfsync everysec",
                 "maxmemory-policy noeviction", "maxmemory 256mb"]:
        assert line in conf
    annotations = valkey["template"]["metadata"]["annotations"]
    assert len(annotations["checksum/config"]) == 64, "a config change restarts Valkey"


def test_external_redis_replaces_the_bundled_valkey():
    objects = render({"gateway": {"redis": {"enabled": True, "existingSecret": "my-redis"}}})
    assert not [o for o in objects if "valkey" in o["metadata"]["name"]]
    gw = env(container(objects, "StatefulSet", "dgidgi-gateway"))
    assert gw["DGIDGI_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "my-redis", "key": "url"}
    assert "VALKEY_PASSWORD" not in gw
    assert "DGIDGI_REDIS_CLUSTER" not in gw


def test_an_external_redis_cluster_is_named_so():
    objects = render({"gateway": {"redis": {
        "enabled": True, "existingSecret": "my-redis", "cluster": True}}})
    gw = env(container(objects, "StatefulSet", "dgidgi-gateway"))
    assert gw["DGIDGI_REDIS_CLUSTER"]["value"] == "true"


def test_a_valkey_password_secret_of_your_own():
    objects = render({"valkey": {"auth": {"existingSecret": "valkey-gitops", "secretKey": "pw"}}})
    assert ("Secret", "dgidgi-valkey") not in kinds(objects)
    ref = {"name": "valkey-gitops", "key": "pw"}
    assert env(container(objects, "StatefulSet", "dgidgi-gateway"))["VALKEY_PASSWORD"][
        "valueFrom"]["secretKeyRef"] == ref
    assert env(container(objects, "StatefulSet", "dgidgi-valkey"))["VALKEY_PASSWORD"][
        "valueFrom"]["secretKeyRef"] == ref
    gitops = {"adminToken": {"existingSecret": "t"}, "valkey": {"auth": {"existingSecret": "v"}}}
    assert render(gitops) == render(gitops), "no random value left"
    assert not [o for o in render(gitops) if o["kind"] == "Secret"]


def test_without_persistence_the_ledger_and_the_store_are_empty_dirs():
    objects = render({"gateway": {"state": {"persistence": {"enabled": False}}},
                      "valkey": {"persistence": {"enabled": False}}})
    for name in ("dgidgi-gateway", "dgidgi-valkey"):
        spec = one(objects, "StatefulSet", name)["spec"]
        assert "volumeClaimTemplates" not in spec
        assert "persistentVolumeClaimRetentionPolicy" not in spec
    pod = one(objects, "StatefulSet", "dgidgi-gateway")["spec"]["template"]["spec"]
    state = next(v for v in pod["volumes"] if v["name"] == "state")
    assert state == {"name": "state", "emptyDir": {"sizeLimit": "1Gi"}}
    vpod = one(objects, "StatefulSet", "dgidgi-valkey")["spec"]["template"]["spec"]
    assert next(v for v in vpod["volumes"] if v["name"] == "data") == {"name": "data", "emptyDir": {}}


UNSHARED = "would let every gateway replica enforce each tenant's limits"


@pytest.mark.parametrize("gateway, times", [
    ({"replicas": 3}, "3 times the tier"),
    ({"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 8}}, "up to 8 times"),
])
def test_several_replicas_without_a_shared_store_fail_unless_acknowledged(gateway, times):
    values = {"gateway": gateway, "valkey": {"enabled": False}}
    with pytest.raises(helm.HelmError) as refused:
        render(values)
    message = str(refused.value)
    for part in (UNSHARED, times, "valkey.enabled=true", "gateway.redis.enabled=true",
                 "gateway.acknowledgeUnsharedLimits=true"):
        assert part in message, (part, message)
    acknowledged = render({"gateway": {**gateway, "acknowledgeUnsharedLimits": True},
                           "valkey": {"enabled": False}})
    assert not [o for o in acknowledged if "valkey" in o["metadata"]["name"]]
    c = container(acknowledged, "StatefulSet", "dgidgi-gateway")
    assert "DGIDGI_REDIS_URL" not in env(c)
    assert not [a for a in c["args"] if a.startswith("--redis-fail-mode")]
    # One replica needs no shared store and no acknowledgement.
    single = render({"gateway": {"replicas": 1, "pdb": {"minAvailable": 0}},
                     "valkey": {"enabled": False}})
    assert one(single, "StatefulSet", "dgidgi-gateway")["spec"]["replicas"] == 1
    # Either store is enough.
    render({"gateway": gateway})
    render({"gateway": {**gateway, "redis": {"enabled": True, "existingSecret": "r"}},
            "valkey": {"enabled": False}})


def test_production_values_add_every_optional_piece(production):
    got = kinds(production)
    for expected in [
        ("HorizontalPodAutoscaler", "dgidgi-gateway"),
        ("ServiceMonitor", "dgidgi"),
        ("NetworkPolicy", "dgidgi-gateway"),
        ("NetworkPolicy", "dgidgi-operator"),
        ("ConfigMap", "dgidgi-platform"),
    ]:
        assert expected in got
    # The external Redis replaces the bundled store.
    assert not [o for o in production if "valkey" in o["metadata"]["name"]]
    # A pre-created admin token: the chart renders no Secret at all, so GitOps renders are stable.
    assert not [o for o in production if o["kind"] == "Secret"]
    assert render(PRODUCTION) == production
    deploy = one(production, "StatefulSet", "dgidgi-gateway")
    assert "replicas" not in deploy["spec"], "the HPA owns the replica count"
    hpa = one(production, "HorizontalPodAutoscaler", "dgidgi-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "dgidgi-gateway"}
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"].endswith("@" + PRODUCTION["image"]["digest"])
    assert "--redis-fail-mode=closed" in container["args"]
    redis = next(e for e in container["env"] if e["name"] == "DGIDGI_REDIS_URL")
    assert redis["valueFrom"]["secretKeyRef"] == {"name": "dgidgi-redis", "key": "url"}
    assert not any("redis://" in a for a in container["args"]), "the URL comes from a Secret"
    [claim] = deploy["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "gp3"
    assert claim["spec"]["accessModes"] == ["ReadWriteOncePod"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    token = next(v for v in pod["volumes"] if v["name"] == "admin-token")
    assert token["secret"]["secretName"] == "dgidgi-admin-token-gitops"


def test_servicemonitor_scrapes_named_ports_of_rendered_services(production):
    monitor = one(production, "ServiceMonitor", "dgidgi")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    services = [
        o for o in production
        if o["kind"] == "Service" and selector.items() <= o["metadata"]["labels"].items()
    ]
    ports = {p["name"] for s in services for p in s["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"admin", "metrics"}


@pytest.mark.parametrize("which", ["default", "production"])
def test_every_pod_is_hardened(which, request):
    deployments = [o for o in request.getfixturevalue(which)
                   if o["kind"] in ("Deployment", "StatefulSet")]
    # The operator, the gateway and (by default) the bundled Valkey.
    assert len(deployments) == {"default": 3, "production": 2}[which]
    for deploy in deployments:
        pod = deploy["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod.get("initContainers", []) + pod["containers"]:
            context = container["securityContext"]
            for key, value in SECURE_CONTAINER.items():
                assert context[key] == value, (deploy["metadata"]["name"], key)
            assert context["runAsUser"] != 0
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert container["livenessProbe"] and container["readinessProbe"]
        # Writable paths are volumes only (read-only root filesystem).
        mounted = {m["mountPath"] for c in pod["containers"] for m in c["volumeMounts"]}
        assert "/tmp" in mounted


def test_gateway_has_no_kubernetes_api_token_and_probes_its_admin_port(default):
    gateway_sa = one(default, "ServiceAccount", "dgidgi-gateway")
    assert gateway_sa["automountServiceAccountToken"] is False
    pod = one(default, "StatefulSet", "dgidgi-gateway")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "dgidgi-gateway"
    assert pod["automountServiceAccountToken"] is False
    for volume in pod["volumes"]:
        for source in volume.get("projected", {}).get("sources", []):
            assert "serviceAccountToken" not in source
    # No Role or binding names the gateway's ServiceAccount.
    for binding in (o for o in default if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert all(s["name"] != "dgidgi-gateway" for s in binding["subjects"])
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "admin": 9090}
    admin = one(default, "Service", "dgidgi-gateway-admin")
    assert admin["spec"]["ports"] == [
        {"name": "admin", "port": 9090, "targetPort": "admin", "protocol": "TCP"}
    ]
    assert one(default, "Service", "dgidgi-gateway")["spec"]["ports"][0]["port"] == 8080


def test_gateway_config_is_one_projected_directory(default):
    pod = one(default, "StatefulSet", "dgidgi-gateway")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "--config-dir=/etc/dgidgi/config" in container["args"]
    assert "--state-dir=/var/lib/dgidgi" in container["args"]
    assert "--admin-token-file=/var/run/dgidgi/admin-token/token" in container["args"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert mount["mountPath"] == "/etc/dgidgi/config" and mount["readOnly"] is True
    assert "subPath" not in mount and "subPathExpr" not in mount, "subPath never hot-reloads"
    config = next(v for v in pod["volumes"] if v["name"] == "config")
    sources = config["projected"]["sources"]
    assert sources == [
        {"configMap": {"name": "dgidgi-gateway-config", "optional": True,
                       "items": [{"key": "gateway.yaml", "path": "gateway.yaml"}]}},
        {"secret": {"name": "dgidgi-gateway-keys", "optional": True,
                    "items": [{"key": "keys.yaml", "path": "keys.yaml"}]}},
        {"secret": {"name": "dgidgi-master-key", "optional": True,
                    "items": [{"key": "master-key.yaml", "path": "master-key.yaml"}]}},
    ]


def test_the_request_log_is_on_and_cors_off_by_default(default):
    args = one(default, "StatefulSet", "dgidgi-gateway")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--access-log=text" in args
    assert not any(a.startswith("--cors-allow-origin") for a in args)
    allowed = render({"gateway": {"accessLog": "json", "cors": {
        "allowedOrigins": ["https://app.example.com", "https://admin.example.com"]}}})
    args = one(allowed, "StatefulSet", "dgidgi-gateway")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--access-log=json" in args
    assert [a for a in args if a.startswith("--cors-allow-origin")] == [
        "--cors-allow-origin=https://app.example.com",
        "--cors-allow-origin=https://admin.example.com",
    ]


def test_operator_args_and_admin_token(default):
    pod = one(default, "Deployment", "dgidgi-operator")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][:5] == [
        "operator",
        "--namespace=dgidgi-system",
        "--listen=0.0.0.0:8081",
        "--gateway-admin-service=dgidgi-gateway-admin",
        "--gateway-admin-token-file=/var/run/dgidgi/admin-token/token",
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    token = next(v for v in pod["volumes"] if v["name"] == "admin-token")
    assert token["secret"]["secretName"] == "dgidgi-admin-token"
    secret = one(default, "Secret", "dgidgi-admin-token")
    assert len(secret["data"]["token"]) >= 48
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def rules(obj: dict) -> list[tuple]:
    return sorted(
        (tuple(r["apiGroups"]), tuple(sorted(r["resources"])), tuple(sorted(r["verbs"])))
        for r in obj["rules"]
    )


def test_operator_rbac_is_exactly_the_contract(default):
    cluster = one(default, "ClusterRole", "dgidgi-operator-dgidgi-system")
    assert rules(cluster) == sorted([
        (("llm.dgidgi.io",), ("llmproviders", "llmtenants", "routingpolicies"),
         ("get", "list", "watch")),
        (("llm.dgidgi.io",),
         ("llmproviders/status", "llmtenants/status", "routingpolicies/status"),
         ("get", "patch", "update")),
        (("",), ("secrets",), ("create", "delete", "get", "list", "patch", "update", "watch")),
        (("",), ("namespaces",), ("get", "list", "watch")),
        (("events.k8s.io",), ("events",), ("create", "patch")),
        (("",), ("events",), ("create", "patch")),
    ])
    role = one(default, "Role", "dgidgi-operator")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert rules(role) == sorted([
        (("",), ("configmaps",), ("create", "get", "list", "patch", "update", "watch")),
        (("coordination.k8s.io",), ("leases",), ("create", "get", "patch", "update")),
        (("discovery.k8s.io",), ("endpointslices",), ("get", "list", "watch")),
    ])
    for kind, name in [("ClusterRoleBinding", "dgidgi-operator-dgidgi-system"),
                       ("RoleBinding", "dgidgi-operator")]:
        binding = one(default, kind, name)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "dgidgi-operator", "namespace": NAMESPACE}
        ]
    assert not [o for o in default if o["kind"] in ("ClusterRole", "Role")
                for r in o["rules"] if "*" in r["verbs"] + r["resources"] + r["apiGroups"]]


def test_network_policy_opens_the_admin_port_to_the_operator_only(production):
    policy = one(production, "NetworkPolicy", "dgidgi-gateway")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    admin = next(r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "admin")
    assert admin["from"][0] == {"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "dgidgi", "app.kubernetes.io/instance": "dgidgi",
        "app.kubernetes.io/component": "operator"}}}
    assert admin["from"][1:] == PRODUCTION["networkPolicy"]["adminFrom"]
    assert policy["spec"]["egress"][0]["ports"][0] == {"port": 53, "protocol": "UDP"}


OPERATOR_PODS = {"podSelector": {"matchLabels": {
    "app.kubernetes.io/name": "dgidgi", "app.kubernetes.io/instance": "dgidgi",
    "app.kubernetes.io/component": "operator"}}}
GATEWAY_PODS = {"podSelector": {"matchLabels": {
    "app.kubernetes.io/name": "dgidgi", "app.kubernetes.io/instance": "dgidgi",
    "app.kubernetes.io/component": "gateway"}}}


def test_network_policies_are_on_by_default(default):
    """/metrics carries per-tenant spend: by default the admin port is the operator's only, the
    API is open, and the store admits the gateway pods only."""
    gateway = one(default, "NetworkPolicy", "dgidgi-gateway")["spec"]
    assert gateway["policyTypes"] == ["Ingress"]
    api, admin = gateway["ingress"]
    assert api == {"ports": [{"port": "http", "protocol": "TCP"}]}, "no `from`: any source"
    assert admin == {"ports": [{"port": "admin", "protocol": "TCP"}], "from": [OPERATOR_PODS]}
    operator = one(default, "NetworkPolicy", "dgidgi-operator")["spec"]
    assert operator["policyTypes"] == ["Ingress"] and operator["ingress"] == [], \
        "only the kubelet (the pod's own node) reaches the operator"
    valkey = one(default, "NetworkPolicy", "dgidgi-valkey")["spec"]
    assert valkey["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "valkey"
    assert valkey["policyTypes"] == ["Ingress", "Egress"] and valkey["egress"] == []
    assert valkey["ingress"] == [
        {"ports": [{"port": 6379, "protocol": "TCP"}], "from": [GATEWAY_PODS]}]


def test_network_policy_sources_are_configurable():
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    tenants = {"namespaceSelector": {"matchExpressions": [
        {"key": "llm.dgidgi.io/tier", "operator": "Exists"}]}}
    objects = render({"networkPolicy": {"apiFrom": [tenants], "adminFrom": [monitoring],
                                        "restrictEgress": True}})
    gateway = one(objects, "NetworkPolicy", "dgidgi-gateway")["spec"]
    api, admin = gateway["ingress"]
    assert api["from"] == [tenants]
    assert admin["from"] == [OPERATOR_PODS, monitoring]
    # Restricted egress still reaches DNS and the bundled Valkey, then the providers.
    dns, store, providers = gateway["egress"]
    assert dns["ports"][0] == {"port": 53, "protocol": "UDP"}
    assert store == {"to": [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "dgidgi", "app.kubernetes.io/instance": "dgidgi",
        "app.kubernetes.io/component": "valkey"}}}],
        "ports": [{"port": 6379, "protocol": "TCP"}]}
    assert providers == {"ports": [{"port": 443, "protocol": "TCP"}]}
    operator = one(objects, "NetworkPolicy", "dgidgi-operator")["spec"]
    assert operator["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}],
                                    "from": [monitoring]}]
    off = render({"networkPolicy": {"enabled": False}})
    assert not [o for o in off if o["kind"] == "NetworkPolicy"]


PLATFORM = {
    "tiers": [
        {"name": "starter", "requestsPerMinute": 20, "tokensPerDay": 100000, "concurrent": 4,
         "monthlyBudgetUsd": "25", "models": ["openai/gpt-4o-mini", "anthropic/claude-haiku-*"]},
        {"name": "enterprise", "custom": True, "requestsPerMinute": 200,
         "tokensPerDay": 2000000, "concurrent": 50},
    ],
    "defaultTier": "starter",
    "concurrencyCeiling": 50,
    "unboundedOutputTokens": 2048,
}


def test_platform_values_render_the_platform_config_map(default, production):
    assert ("ConfigMap", "dgidgi-platform") not in kinds(default), "empty: the built-in tiers"
    for given, objects in [(PLATFORM, render({"platform": PLATFORM})),
                           (PRODUCTION["platform"], production)]:
        config = one(objects, "ConfigMap", "dgidgi-platform")
        assert config["metadata"]["namespace"] == NAMESPACE
        assert set(config["data"]) == {"platform.yaml"}
        text = config["data"]["platform.yaml"]
        loaded = yaml.safe_load(text)
        assert loaded == given, "the YAML round-trips"
        # Whole numbers stay integers (the operator reads them as u64), strings stay strings.
        for read, wrote in zip(loaded["tiers"], given["tiers"]):
            assert {k: type(v) for k, v in read.items()} == {k: type(v) for k, v in wrote.items()}
    tiers = yaml.safe_load(one(render({"platform": PLATFORM}), "ConfigMap",
                               "dgidgi-platform")["data"]["platform.yaml"])["tiers"]
    assert tiers[0]["monthlyBudgetUsd"] == "25" and tiers[1]["tokensPerDay"] == 2000000


def test_the_operator_may_read_the_platform_config_map_and_report_on_it(default):
    role = one(default, "Role", "dgidgi-operator")
    assert any(r["resources"] == ["configmaps"] and {"get", "list", "watch"} <= set(r["verbs"])
               for r in role["rules"])
    cluster = one(default, "ClusterRole", "dgidgi-operator-dgidgi-system")
    assert any(r["resources"] == ["events"] and "create" in r["verbs"] for r in cluster["rules"])


@pytest.mark.parametrize("platform, message", [
    ({"tiers": [{"name": "x", "requestsPerMinute": 1, "tokensPerDay": 1}]}, "concurrent"),
    ({"tiers": [{**PLATFORM["tiers"][0], "requestsPerMinute": 0}]}, "requestsPerMinute"),
    ({"tiers": [{**PLATFORM["tiers"][0], "name": "-gold"}]}, "name"),
    ({"tiers": [{**PLATFORM["tiers"][0], "monthlyBudgetUsd": "lots"}]}, "monthlyBudgetUsd"),
    ({"tiers": [{**PLATFORM["tiers"][0], "models": ["gpt-4o"]}]}, "models"),
    ({"tiers": [{**PLATFORM["tiers"][0], "rpm": 3}]}, "rpm"),
    ({"tiers": []}, "tiers"),
    ({"defaultTeir": "starter"}, "defaultTeir"),
    ({"concurrencyCeiling": 0}, "concurrencyCeiling"),
    ({"unboundedOutputTokens": "lots"}, "unboundedOutputTokens"),
    # Checked across the tiers by the chart's templates: what the operator would refuse.
    ({"tiers": [PLATFORM["tiers"][0], PLATFORM["tiers"][0]], "defaultTier": PLATFORM["tiers"][0]["name"]},
     "names the tier .* twice"),
    ({**PLATFORM, "defaultTier": "gold"}, "defaultTier \"gold\" names no tier"),
    ({"defaultTier": "gold"}, "not one of the built-in tiers"),
    ({"tiers": [{**PLATFORM["tiers"][0], "name": "starter"}]}, "defaultTier is needed"),
])
def test_the_values_schema_refuses_a_bad_platform_configuration(platform, message):
    with pytest.raises(helm.HelmError, match=message):
        render({"platform": platform})


@pytest.mark.parametrize("values, message", [
    ({"gateway": {"redis": {"failMode": "maybe"}}}, "failMode"),
    ({"gateway": {"replica": 3}}, "replica"),
    ({"gateway": {"reloadInterval": "soon"}}, "reloadInterval"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"gateway": {"accessLog": "verbose"}}, "accessLog"),
    ({"gateway": {"cors": {"allowedOrigins": ["app.example.com"]}}}, "allowedOrigins"),
    ({"gateway": {"acknowledgeUnsharedLimits": "yes"}}, "acknowledgeUnsharedLimits"),
    ({"valkey": {"maxmemory": "lots"}}, "maxmemory"),
    ({"valkey": {"image": {"digest": "latest"}}}, "digest"),
    ({"valkey": {"persistance": {}}}, "persistance"),
])
def test_the_values_schema_refuses_bad_values(values, message):
    with pytest.raises(helm.HelmError, match=message):
        render(values)


@pytest.mark.parametrize("values, message", [
    ({"gateway": {"state": {"persistence": {"existingClaim": "ledger"}}}},
     "one gateway replica only"),
    ({"gateway": {"autoscaling": {"enabled": True},
                  "state": {"persistence": {"existingClaim": "ledger"}}}},
     "one gateway replica only"),
    ({"gateway": {"redis": {"enabled": True}}}, "existingSecret"),
    ({"gateway": {"replicas": 1}}, "every node drain would wait forever"),
    ({"gateway": {"replicas": 1, "state": {"persistence": {"enabled": True}}}},
     "every node drain would wait forever"),
    ({"gateway": {"pdb": {"minAvailable": "100%"}}}, "every node drain would wait forever"),
    ({"gateway": {"autoscaling": {"enabled": True, "minReplicas": 1}}},
     "every node drain would wait forever"),
])
def test_unsafe_combinations_fail_with_a_clear_message(values, message):
    with pytest.raises(helm.HelmError, match=message):
        render(values)


def test_one_claim_of_your_own_for_one_replica_or_shared_read_write_many():
    """existingClaim (e.g. the dgidgi-gateway-state PVC of earlier chart versions) replaces the
    claim per pod: one replica on ReadWriteOnce, or every pod in its own sub-directory of a
    ReadWriteMany volume."""
    single = render({"gateway": {"replicas": 1, "pdb": {"minAvailable": 0},
                                 "state": {"persistence": {"existingClaim": "dgidgi-gateway-state"}}}})
    spec = one(single, "StatefulSet", "dgidgi-gateway")["spec"]
    assert "volumeClaimTemplates" not in spec
    pod = spec["template"]["spec"]
    state = next(v for v in pod["volumes"] if v["name"] == "state")
    assert state["persistentVolumeClaim"] == {"claimName": "dgidgi-gateway-state"}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "state")
    assert "subPathExpr" not in mount
    shared = render({"gateway": {"replicas": 3, "state": {"persistence": {
        "existingClaim": "ledgers", "accessModes": ["ReadWriteMany"]}}}})
    pod = one(shared, "StatefulSet", "dgidgi-gateway")["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "state")
    assert mount["subPathExpr"] == "$(POD_NAME)", "a shared volume: one journal per pod"


@pytest.mark.parametrize("which", ["default", "production"])
def test_the_gateway_rolls_one_pod_at_a_time_and_scales_in_parallel(which, request):
    spec = one(request.getfixturevalue(which), "StatefulSet", "dgidgi-gateway")["spec"]
    # No surge pod: a replacement starts on its predecessor's claim once that pod has drained.
    assert spec["updateStrategy"] == {"type": "RollingUpdate"}
    # A new pod is not ready until the operator has rendered; it must not hold the others back.
    assert spec["podManagementPolicy"] == "Parallel"


def test_a_broken_template_fails_the_render(tmp_path):
    """The harness catches a template that no longer renders (not just YAML that is wrong)."""
    copy = tmp_path / "dgidgi"
    shutil.copytree(CHART, copy)
    template = copy / "templates" / "gateway-services.yaml"
    template.write_text(template.read_text().replace("{{ include", "{{ inclde", 1))
    with pytest.raises(helm.HelmError):
        render(chart=copy)


def gitops_values() -> dict[str, dict]:
    """The chart values the GitOps examples give (Argo CD valuesObject, Flux HelmRelease)."""
    found = {}
    for path in sorted((ROOT / "examples/gitops").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if doc["kind"] == "Application" and "helm" in doc["spec"]["source"]:
                found[path.name] = doc["spec"]["source"]["helm"]["valuesObject"]
            if doc["kind"] == "HelmRelease":
                found[path.name] = doc["spec"]["values"]
    return found


def test_the_gitops_examples_values_render_and_are_deterministic():
    values = gitops_values()
    assert sorted(values) == ["dgidgi.yaml", "helmrelease.yaml"]
    for name, given in values.items():
        objects = render(given)
        assert render(given) == objects, f"{name}: a GitOps render must not change between runs"
        assert not [o for o in objects if o["kind"] == "Secret"], name


def test_the_mounted_names_and_keys_are_what_render_writes():
    """The operator writes what `dgidgi render` writes (golden quickstart output); the gateway
    pod must mount exactly those objects and keys."""
    written = {}
    for path in (ROOT / "tests/golden/quickstart/out/manifests/dgidgi-system").glob("*.yaml"):
        obj = yaml.safe_load(path.read_text())
        written[(obj["kind"], obj["metadata"]["name"])] = set(obj["data"])
    pod = one(render(), "StatefulSet", "dgidgi-gateway")["spec"]["template"]["spec"]
    config = next(v for v in pod["volumes"] if v["name"] == "config")
    mounted = {}
    for source in config["projected"]["sources"]:
        kind, spec = next(iter(source.items()))
        mounted[("ConfigMap" if kind == "configMap" else "Secret", spec["name"])] = {
            item["key"] for item in spec["items"]
        }
    assert mounted == written


def test_traces_go_to_the_otlp_endpoint_when_one_is_set(default):
    for kind, name in [("StatefulSet", "dgidgi-gateway"), ("Deployment", "dgidgi-operator")]:
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env(container(default, kind, name))
    traced = render({"tracing": {"otlpEndpoint": "http://otel-collector.observability:4318", "sampleRatio": 0.01}})
    for kind, name in [("StatefulSet", "dgidgi-gateway"), ("Deployment", "dgidgi-operator")]:
        variables = {k: v.get("value") for k, v in env(container(traced, kind, name)).items()}
        assert variables["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
        assert variables["OTEL_SERVICE_NAME"] == name
        assert variables["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
        assert variables["OTEL_TRACES_SAMPLER_ARG"] == "0.01"


def test_config_shards_are_written_and_mounted_alike():
    """With configShards, the operator writes that many shards and every gateway pod mounts
    exactly those (ConfigMaps `dgidgi-gateway-config-NNN` holding `config-NNN.json.gz`, Secrets
    `dgidgi-gateway-keys-NNN` holding `keys-NNN.yaml`: the names `config::shards` gives them),
    in the one projected volume, all optional until the operator has written them."""
    objects = render({"configShards": 4})
    args = one(objects, "Deployment", "dgidgi-operator")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--config-shards=4" in args
    pod = one(objects, "StatefulSet", "dgidgi-gateway")["spec"]["template"]["spec"]
    sources = next(v for v in pod["volumes"] if v["name"] == "config")["projected"]["sources"]
    assert len(sources) == 3 + 2 * 4
    for n in range(4):
        number = f"{n:03d}"
        assert {"configMap": {"name": f"dgidgi-gateway-config-{number}", "optional": True,
                              "items": [{"key": f"config-{number}.json.gz",
                                         "path": f"config-{number}.json.gz"}]}} in sources
        assert {"secret": {"name": f"dgidgi-gateway-keys-{number}", "optional": True,
                           "items": [{"key": f"keys-{number}.yaml",
                                      "path": f"keys-{number}.yaml"}]}} in sources
    default_args = one(render(), "Deployment", "dgidgi-operator")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--config-shards=1" in default_args
