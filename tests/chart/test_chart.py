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


@pytest.mark.parametrize("which", ["default", "production"])
def test_every_manifest_is_valid_for_kubernetes(which, request):
    objects = request.getfixturevalue(which)
    checked = 0
    for obj in objects:
        obj = {k: v for k, v in obj.items() if k != "__template"}
        assert obj["metadata"].get("namespace") in (NAMESPACE, None), obj["metadata"]
        if (obj["apiVersion"], obj["kind"]) in CRD_TYPED:
            continue
        for kube in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, kube, strict=True)
        checked += 1
    assert checked >= 10


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


def test_default_install_has_the_workloads_and_nothing_optional(default):
    assert kinds(default) == {
        ("ServiceAccount", "dgidgi-operator"),
        ("ServiceAccount", "dgidgi-gateway"),
        ("ClusterRole", "dgidgi-operator-dgidgi-system"),
        ("ClusterRoleBinding", "dgidgi-operator-dgidgi-system"),
        ("Role", "dgidgi-operator"),
        ("RoleBinding", "dgidgi-operator"),
        ("Deployment", "dgidgi-operator"),
        ("Deployment", "dgidgi-gateway"),
        ("Service", "dgidgi-gateway"),
        ("Service", "dgidgi-gateway-admin"),
        ("Service", "dgidgi-operator-metrics"),
        ("PodDisruptionBudget", "dgidgi-gateway"),
        ("PodDisruptionBudget", "dgidgi-operator"),
        ("Secret", "dgidgi-admin-token"),
    }
    operator = one(default, "Deployment", "dgidgi-operator")
    assert operator["spec"]["replicas"] == 2
    gateway = one(default, "Deployment", "dgidgi-gateway")["spec"]["template"]["spec"]
    state = next(v for v in gateway["volumes"] if v["name"] == "state")
    assert "emptyDir" in state


def test_production_values_add_every_optional_piece(production):
    got = kinds(production)
    for expected in [
        ("HorizontalPodAutoscaler", "dgidgi-gateway"),
        ("ServiceMonitor", "dgidgi"),
        ("NetworkPolicy", "dgidgi-gateway"),
        ("NetworkPolicy", "dgidgi-operator"),
        ("PersistentVolumeClaim", "dgidgi-gateway-state"),
    ]:
        assert expected in got
    # A pre-created admin token: the chart renders no Secret at all, so GitOps renders are stable.
    assert not [o for o in production if o["kind"] == "Secret"]
    assert render(PRODUCTION) == production
    deploy = one(production, "Deployment", "dgidgi-gateway")
    assert "replicas" not in deploy["spec"], "the HPA owns the replica count"
    pod = deploy["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"].endswith("@" + PRODUCTION["image"]["digest"])
    assert "--redis-fail-mode=closed" in container["args"]
    redis = next(e for e in container["env"] if e["name"] == "DGIDGI_REDIS_URL")
    assert redis["valueFrom"]["secretKeyRef"] == {"name": "dgidgi-redis", "key": "url"}
    assert not any("redis://" in a for a in container["args"]), "the URL comes from a Secret"
    state_mount = next(m for m in container["volumeMounts"] if m["name"] == "state")
    assert state_mount["subPathExpr"] == "$(POD_NAME)", "a shared volume: one journal per pod"
    state = next(v for v in pod["volumes"] if v["name"] == "state")
    assert state["persistentVolumeClaim"]["claimName"] == "dgidgi-gateway-state"
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
    deployments = [o for o in request.getfixturevalue(which) if o["kind"] == "Deployment"]
    assert len(deployments) == 2
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
    pod = one(default, "Deployment", "dgidgi-gateway")["spec"]["template"]["spec"]
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
    pod = one(default, "Deployment", "dgidgi-gateway")["spec"]["template"]["spec"]
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
    args = one(default, "Deployment", "dgidgi-gateway")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--access-log=text" in args
    assert not any(a.startswith("--cors-allow-origin") for a in args)
    allowed = render({"gateway": {"accessLog": "json", "cors": {
        "allowedOrigins": ["https://app.example.com", "https://admin.example.com"]}}})
    args = one(allowed, "Deployment", "dgidgi-gateway")["spec"]["template"]["spec"]["containers"][0]["args"]
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


@pytest.mark.parametrize("values, message", [
    ({"gateway": {"redis": {"failMode": "maybe"}}}, "failMode"),
    ({"gateway": {"replica": 3}}, "replica"),
    ({"gateway": {"reloadInterval": "soon"}}, "reloadInterval"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"gateway": {"accessLog": "verbose"}}, "accessLog"),
    ({"gateway": {"cors": {"allowedOrigins": ["app.example.com"]}}}, "allowedOrigins"),
])
def test_the_values_schema_refuses_bad_values(values, message):
    with pytest.raises(helm.HelmError, match=message):
        render(values)


@pytest.mark.parametrize("values, message", [
    ({"gateway": {"state": {"persistence": {"enabled": True}}}}, "one gateway replica only"),
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


def test_a_single_replica_may_keep_its_journal_on_a_read_write_once_volume():
    objects = render({"gateway": {"replicas": 1, "pdb": {"minAvailable": 0},
                                  "state": {"persistence": {"enabled": True}}}})
    pod = one(objects, "Deployment", "dgidgi-gateway")["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "state")
    assert "subPathExpr" not in mount
    assert one(objects, "PersistentVolumeClaim", "dgidgi-gateway-state")
    # No surge pod: it could not attach the volume on another node, or would share the ledger.
    assert one(objects, "Deployment", "dgidgi-gateway")["spec"]["strategy"] == {"type": "Recreate"}


def test_without_a_read_write_once_journal_the_gateway_rolls_without_downtime(default, production):
    for objects in (default, production):
        strategy = one(objects, "Deployment", "dgidgi-gateway")["spec"]["strategy"]
        assert strategy == {"type": "RollingUpdate",
                            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


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
    pod = one(render(), "Deployment", "dgidgi-gateway")["spec"]["template"]["spec"]
    config = next(v for v in pod["volumes"] if v["name"] == "config")
    mounted = {}
    for source in config["projected"]["sources"]:
        kind, spec = next(iter(source.items()))
        mounted[("ConfigMap" if kind == "configMap" else "Secret", spec["name"])] = {
            item["key"] for item in spec["items"]
        }
    assert mounted == written
