"""The real `dgidgi operator` binary over HTTP against a stateful Kubernetes API emulator.

kmock's `KubernetesEmulator` keeps objects in memory and serves list, watch, create, merge-patch
and delete. It lacks server-side apply and cannot route cluster-scoped namespaces, so
`ApplyingEmulator` below adds both: an apply-patch (or PUT) on a missing object creates it, on
an existing one merges it; every write stamps uid, resourceVersion and generation as the API
server would. The operator gets a kubeconfig pointing at it, the quickstart is applied, and the
ConfigMap, Secrets, statuses, Events and Lease it writes are checked; then a Secret and a
namespace label change and the results are checked again.

Run by tests/operator_kmock.rs (cargo test), which passes the binary in DGIDGI_BIN.
"""

import asyncio
import base64
import datetime
import itertools
import os
import pathlib
import re
import signal
import socket
import tempfile
import urllib.request

import aiohttp.web
import kmock
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart"
PLATFORM = "dgidgi-system"
# Where the emulator keeps Namespaces (kmock reads any "namespaces" segment as a namespace).
NAMESPACES = "/apis/kmock.core/v1/nss"
PLURALS = {"Secret": "secrets", "LlmProvider": "llmproviders", "LlmTenant": "llmtenants",
           "RoutingPolicy": "routingpolicies"}
SECRET_VALUES = [b"sk-globex-own-placeholder-key", b"sk-quickstart-placeholder-openai",
                 b"sk-ant-quickstart-placeholder", b"sk-globex-rotated"]


class ApplyingEmulator(kmock.KubernetesEmulator):
    """KubernetesEmulator plus server-side apply (create or merge), PUT, namespaces, metadata."""

    _versions = itertools.count(1)

    async def __call__(self, raw_request):
        # kmock cannot parse /api/v1/namespaces[/name]: serve them as a made-up group instead.
        match = re.fullmatch(r"/api/v1/namespaces(/[^/]+)?", raw_request.rel_url.path)
        if match:
            url = raw_request.rel_url.with_path(NAMESPACES + (match.group(1) or ""))
            url = url.with_query(raw_request.rel_url.query)
            raw_request = raw_request.clone(rel_url=url)
        return await super().__call__(raw_request)

    def _stamp(self, data, old=None):
        meta = data.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(self._versions))
        if old is None:
            meta.setdefault("uid", f"uid-{meta.get('namespace', '')}-{meta.get('name')}-{meta['resourceVersion']}")
            meta.setdefault("creationTimestamp",
                            datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            meta["generation"] = 1
        else:
            generation = old.get("metadata", {}).get("generation", 1)
            if "spec" in data and data["spec"] != old.get("spec"):
                generation += 1
            meta["generation"] = generation
        return data

    async def _handle(self, request):
        if request.resource is not None and request.method in ("PATCH", "PUT") and request.name:
            key = (request.resource, request.namespace, request.name)
            data = dict(request.data or {})
            async with self._lock:
                exists = key in self.objects and not self.objects[key].deleted
                if not exists and request.subresource:
                    raise kmock.KubernetesObjectNotFoundError()
                if not exists:
                    data.setdefault("metadata", {})["name"] = request.name
                    if request.namespace:
                        data["metadata"]["namespace"] = request.namespace
                    self._stamp(data)
                    if key in self.objects:
                        self.objects[key].create(data)
                    else:
                        self.objects[key] = data
                    kind = "ADDED"
                else:
                    old = self.objects[key].raw
                    if request.subresource != "status":
                        data.pop("status", None)
                    self._stamp(data, old)
                    self.objects[key].patch(data)
                    kind = "MODIFIED"
                raw = self.objects[key].raw
                await self._buses[request.resource].put({"type": kind, "object": raw})
            return aiohttp.web.json_response(raw, status=201 if kind == "ADDED" else 200)
        if request.resource is not None and request.method == "POST" and isinstance(request.data, dict):
            self._stamp(request.data)
        return await super()._handle(request)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans, as the API server reads them: `on:` stays the string "on"."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def documents():
    for path in sorted(QUICKSTART.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=Yaml12Loader):
            if doc:
                yield doc


def as_api_object(doc):
    """What `kubectl apply` sends and the API server stores: stringData becomes data."""
    doc = dict(doc)
    if doc["kind"] == "Secret" and "stringData" in doc:
        data = dict(doc.get("data") or {})
        for k, v in doc.pop("stringData").items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        doc["data"] = data
    return doc


def collection_url(doc):
    if doc["kind"] == "Namespace":
        return "/api/v1/namespaces"
    ns = doc["metadata"]["namespace"]
    plural = PLURALS[doc["kind"]]
    if doc["kind"] == "Secret":
        return f"/api/v1/namespaces/{ns}/{plural}"
    return f"/apis/llm.dgidgi.io/v1alpha1/namespaces/{ns}/{plural}"


class Cluster:
    def __init__(self, emulator):
        self.emulator = emulator

    def get(self, group_version_plural, namespace, name):
        resource = kmock.resource(group_version_plural)
        key = (resource, namespace, name)
        if key in self.emulator.objects and not self.emulator.objects[key].deleted:
            return self.emulator.objects[key].raw
        return None

    def all(self, group_version_plural):
        resource = kmock.resource(group_version_plural)
        return [obj.raw for (res, _, _), obj in self.emulator.objects.items()
                if res == resource and not obj.deleted]

    def status(self, plural, namespace, name):
        obj = self.get(f"llm.dgidgi.io/v1alpha1/{plural}", namespace, name)
        return (obj or {}).get("status")

    def secret_data(self, namespace, name, key):
        secret = self.get("v1/secrets", namespace, name)
        if not secret:
            return None
        return base64.b64decode(secret["data"][key])


async def eventually(check, what, timeout=60.0):
    """Polls `check` until it returns a truthy value (the operator works asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.1)


def ready(status):
    for c in (status or {}).get("conditions", []):
        if c["type"] == "Ready":
            return c
    return None


async def scenario(binary):
    async with ApplyingEmulator() as emulator, kmock.Server(emulator) as server:
        for resource in ["v1/secrets", "v1/configmaps", "kmock.core/v1/nss",
                         "llm.dgidgi.io/v1alpha1/llmproviders", "llm.dgidgi.io/v1alpha1/llmtenants",
                         "llm.dgidgi.io/v1alpha1/routingpolicies", "coordination.k8s.io/v1/leases",
                         "events.k8s.io/v1/events"]:
            emulator.resources[resource] = {}
        cluster = Cluster(emulator)
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession(base) as http:
            for doc in documents():
                response = await http.post(collection_url(doc), json=as_api_object(doc))
                assert response.status < 300, await response.text()

            workdir = tempfile.mkdtemp()
            kubeconfig = pathlib.Path(workdir) / "kubeconfig"
            kubeconfig.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": base}}],
                "users": [{"name": "test", "user": {"token": "test-token"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
                "current-context": "kmock",
            }))
            listen = f"127.0.0.1:{free_port()}"
            operator = await asyncio.create_subprocess_exec(
                binary, "operator", "--namespace", PLATFORM, "--listen", listen,
                "--debounce", "100ms", "--lease-duration", "6s", "--identity", "operator-0",
                env={**os.environ, "KUBECONFIG": str(kubeconfig), "DGIDGI_LOG": "info"},
            )
            try:
                await check_operator(cluster, http, listen)
            finally:
                if operator.returncode is None:
                    operator.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(operator.wait(), 30)
            assert code == 0, f"operator exited with {code} on SIGTERM"


async def check_operator(cluster, http, listen):
    # The rendered outputs appear.
    config = await eventually(
        lambda: cluster.get("v1/configmaps", PLATFORM, "dgidgi-gateway-config"), "the ConfigMap")
    gateway = config["data"]["gateway.yaml"]
    for tenant in ["team-acme/acme", "team-globex/globex", "team-initech/initech", "hobby-lab/hobby"]:
        assert tenant in gateway, tenant
    assert cluster.secret_data(PLATFORM, "dgidgi-master-key", "master-key.yaml")
    keys = yaml.safe_load(cluster.secret_data(PLATFORM, "dgidgi-gateway-keys", "keys.yaml"))
    rows = {row["id"]: row for row in keys["rows"]}
    assert "team-globex/my-openai" in rows and rows["team-globex/my-openai"]["rotated_at"] is None
    access = cluster.get("v1/secrets", "team-acme", "acme-llm-access-default")
    assert access["metadata"]["ownerReferences"][0]["kind"] == "LlmTenant"
    assert access["metadata"]["ownerReferences"][0]["name"] == "acme"
    assert cluster.secret_data("team-acme", "acme-llm-access-ci", "accessKey")

    # Every resource gets a status with conditions and observedGeneration.
    for plural, objects in [("llmproviders", cluster.all("llm.dgidgi.io/v1alpha1/llmproviders")),
                            ("llmtenants", cluster.all("llm.dgidgi.io/v1alpha1/llmtenants")),
                            ("routingpolicies", cluster.all("llm.dgidgi.io/v1alpha1/routingpolicies"))]:
        for obj in objects:
            meta = obj["metadata"]
            condition = await eventually(
                lambda: ready(cluster.status(plural, meta["namespace"], meta["name"])),
                f"status of {plural} {meta['namespace']}/{meta['name']}")
            assert condition["observedGeneration"] == meta["generation"]
    acme = cluster.status("llmtenants", "team-acme", "acme")
    assert acme["tier"] == "pro"
    assert acme["effectiveSource"] == "platform"
    assert acme["effectiveLimits"] == {"requestsPerMinute": 30, "tokensPerDay": 500000, "concurrent": 10}
    assert sorted(acme["accessKeySecrets"]) == ["acme-llm-access-ci", "acme-llm-access-default"]
    assert ready(acme)["status"] == "True"

    # Events on the resources, from this operator; no secret value anywhere readable.
    def acme_event():
        events = cluster.all("events.k8s.io/v1/events")
        ok = any(e["regarding"]["kind"] == "LlmTenant" and e["regarding"]["name"] == "acme"
                 and e["reason"] == "Ready" for e in events)
        return events if ok else None
    events = await eventually(acme_event, "a Ready Event on LlmTenant acme")
    assert all(e["reportingController"] == "dgidgi-operator" for e in events)
    readable = repr(events) + gateway + repr(cluster.all("llm.dgidgi.io/v1alpha1/llmtenants"))
    readable += repr(cluster.all("llm.dgidgi.io/v1alpha1/llmproviders"))
    for value in SECRET_VALUES:
        assert value.decode() not in readable

    # The Lease names this replica.
    lease = cluster.get("coordination.k8s.io/v1/leases", PLATFORM, "dgidgi-operator")
    assert lease["spec"]["holderIdentity"] == "operator-0"

    # A provider Secret changes: its key store row is re-encrypted and rotated_at set.
    response = await http.patch(
        "/api/v1/namespaces/team-globex/secrets/globex-openai",
        json={"data": {"apiKey": base64.b64encode(b"sk-globex-rotated").decode()}},
        headers={"content-type": "application/merge-patch+json"})
    assert response.status == 200, await response.text()

    def rotated():
        store = yaml.safe_load(cluster.secret_data(PLATFORM, "dgidgi-gateway-keys", "keys.yaml"))
        new = {row["id"]: row for row in store["rows"]}
        return new if new["team-globex/my-openai"]["rotated_at"] else None
    new_rows = await eventually(rotated, "the rotated key store row")
    changed = [i for i in rows if rows[i] != new_rows[i]]
    assert changed == ["team-globex/my-openai"], changed

    # The platform raises team-acme's tier: effective limits follow.
    response = await http.patch(
        "/api/v1/namespaces/team-acme",
        json={"metadata": {"labels": {"llm.dgidgi.io/tier": "team"}}},
        headers={"content-type": "application/merge-patch+json"})
    assert response.status == 200, await response.text()
    acme = await eventually(
        lambda: (s := cluster.status("llmtenants", "team-acme", "acme")) and s.get("tier") == "team" and s,
        "acme on the team tier")
    assert acme["effectiveLimits"] == {"requestsPerMinute": 30, "tokensPerDay": 2000000, "concurrent": 50}

    # The platform configures its tiers (ConfigMap dgidgi-platform): the team tier's numbers
    # change, and only the tenants on it follow; initech (custom enterprise tier) does not.
    initech_before = cluster.status("llmtenants", "team-initech", "initech")["effectiveLimits"]
    platform_yaml = (
        "tiers:\n"
        "  - {name: free, requestsPerMinute: 10, tokensPerDay: 50000, concurrent: 2}\n"
        "  - {name: pro, requestsPerMinute: 60, tokensPerDay: 500000, concurrent: 10}\n"
        "  - {name: team, requestsPerMinute: 300, tokensPerDay: 3000000, concurrent: 60}\n"
        "  - {name: enterprise, custom: true, requestsPerMinute: 200, tokensPerDay: 2000000, concurrent: 50}\n")
    response = await http.post(
        f"/api/v1/namespaces/{PLATFORM}/configmaps",
        json={"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "dgidgi-platform", "namespace": PLATFORM},
              "data": {"platform.yaml": platform_yaml}})
    assert response.status < 300, await response.text()
    acme = await eventually(
        lambda: (s := cluster.status("llmtenants", "team-acme", "acme"))
        and s["effectiveLimits"]["tokensPerDay"] == 3000000 and s,
        "acme on the configured team tier")
    assert acme["effectiveLimits"] == {"requestsPerMinute": 30, "tokensPerDay": 3000000, "concurrent": 60}
    assert cluster.status("llmtenants", "team-initech", "initech")["effectiveLimits"] == initech_before

    # A broken configuration is refused with a Warning Event on the ConfigMap, and changes no
    # tenant: the last good one stays.
    response = await http.patch(
        f"/api/v1/namespaces/{PLATFORM}/configmaps/dgidgi-platform",
        json={"data": {"platform.yaml": platform_yaml.replace("concurrent: 60", "concurrent: 0")}},
        headers={"content-type": "application/merge-patch+json"})
    assert response.status == 200, await response.text()

    def refused():
        return [e for e in cluster.all("events.k8s.io/v1/events")
                if e["regarding"]["kind"] == "ConfigMap" and e["reason"] == "InvalidPlatformConfig"]
    events = await eventually(refused, "a Warning Event on ConfigMap dgidgi-platform")
    assert events[0]["type"] == "Warning"
    assert "concurrent must be at least 1" in events[0]["note"], events[0]["note"]
    assert cluster.status("llmtenants", "team-acme", "acme")["effectiveLimits"]["concurrent"] == 60

    # Its own health and metrics.
    with urllib.request.urlopen(f"http://{listen}/readyz", timeout=10) as r:
        assert r.status == 200
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert 'dgidgi_operator_reconciles_total{result="ok"}' in metrics, metrics
    assert "dgidgi_operator_leader 1" in metrics, metrics
    assert "dgidgi_operator_platform_config_invalid 1" in metrics, metrics


def test_operator_against_the_kmock_emulator():
    binary = os.environ["DGIDGI_BIN"]
    asyncio.run(scenario(binary))
