"""deploy/: the KubeRay RayCluster and its image, checked without a cluster or a network (issue
27): the manifest parses; it validates against the openAPIV3Schema of KubeRay's published
RayCluster CRD (../shared/kuberay/ray.io_rayclusters.yaml; skipped without it) and names no
field that schema lacks (an API server would drop it without a word); its image is the one
deploy/Dockerfile builds, search with the [ray,postgres] extras on the Ray of `rayVersion`;
Ray's token authentication is on and docs/cluster.md hands the client its token; the `ray
start` lines KubeRay derives from it are the ones docs/cluster.md shows, and every `ray start`
flag there is one Ray knows. Fast tier."""

from __future__ import annotations

import configparser
import copy
import re

import jsonschema
import pytest
import yaml
from packaging.specifiers import SpecifierSet

from conftest import ROOT, SHARED

DEPLOY = ROOT / "deploy"
MANIFEST = DEPLOY / "raycluster.yaml"
CRD = SHARED / "kuberay" / "ray.io_rayclusters.yaml"
DOCS = ROOT / "docs" / "cluster.md"
RUNS_DIR = "/tmp/search-runs"  # the --runs-dir the docs give, writable on every pod


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


@pytest.fixture(scope="module")
def schema(manifest) -> dict:
    """The openAPIV3Schema of the CRD version the manifest's apiVersion names."""
    if not CRD.is_file():
        pytest.skip("../shared/kuberay is not present")
    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    group, version = manifest["apiVersion"].split("/")
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (group, manifest["kind"])
    return next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"][
        "openAPIV3Schema"]


def schema_errors(document: dict, schema: dict) -> list[str]:
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in jsonschema.Draft7Validator(schema).iter_errors(document))


def unknown_fields(value, schema: dict, path: str = "") -> list[str]:
    """The keys `schema` does not declare: an API server prunes them (structural schemas drop
    unknown fields), so a misspelt field would do nothing, and jsonschema alone lets it by."""
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [f for i, item in enumerate(value)
                for f in unknown_fields(item, schema["items"], f"{path}[{i}]")]
    if not isinstance(value, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    known, rest = schema.get("properties"), schema.get("additionalProperties")
    found = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if known and key in known:
            found += unknown_fields(item, known[key], where)
        elif isinstance(rest, dict):
            found += unknown_fields(item, rest, where)
        elif known is not None:
            found.append(where)
    return found


def containers(manifest: dict) -> list[dict]:
    spec = manifest["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def kuberay_lines(manifest: dict) -> list[str]:
    """The `ray start` of the head and of each worker group, as KubeRay builds them from
    rayStartParams (before the ports and --block it adds): `--KEY=VALUE` each."""
    spec = manifest["spec"]

    def params(group: dict) -> str:
        return "".join(f" --{k}={v}" for k, v in sorted(group.get("rayStartParams", {}).items()))

    head = f"{manifest['metadata']['name']}-head-svc:6379"  # the head's Service, by KubeRay
    return [f"head:   ray start --head{params(spec['headGroupSpec'])}",
            *sorted({f"worker: ray start --address={head}{params(g)}"
                     for g in spec["workerGroupSpecs"]})]


def test_the_manifest_validates_against_kuberay_s_raycluster_schema(manifest, schema):
    assert schema_errors(manifest, schema) == []
    assert unknown_fields(manifest, schema) == []


def test_the_schema_check_catches_a_wrong_type_and_a_misspelt_field(manifest, schema):
    broken = copy.deepcopy(manifest)
    broken["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    broken["spec"]["headGroupSpec"]["rayStartParam"] = {}
    assert schema_errors(broken, schema) == [
        "spec.workerGroupSpecs.0.replicas: 'two' is not of type 'integer'"]
    assert unknown_fields(broken, schema) == ["spec.headGroupSpec.rayStartParam"]


def test_its_image_installs_search_with_the_ray_and_postgres_extras(manifest):
    """One image on every pod, built by deploy/Dockerfile on the Ray of rayVersion (which
    setup.cfg's ray extra allows), with the extras setup.cfg declares."""
    [image] = {c["image"] for c in containers(manifest)}
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    build = re.search(r"docker build -f deploy/Dockerfile -t (\S+) \.", dockerfile)
    assert build and build[1] == image
    ray_version = manifest["spec"]["rayVersion"]
    base = re.search(r"^FROM rayproject/ray:(\S+)-py3(\d+)\S*$", dockerfile, re.M)
    assert base and base[1] == ray_version
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert SpecifierSet(setup["options"]["python_requires"]).contains(f"3.{base[2]}")
    extras = setup["options.extras_require"]
    ray_spec = next(line for line in extras["ray"].split() if line.startswith("ray"))
    assert SpecifierSet(ray_spec.removeprefix("ray")).contains(ray_version)
    install = re.search(r"^RUN pip install [^\n]*'/[^']*\[([\w,]+)\]'$", dockerfile, re.M)
    assert install and {"ray", "postgres"} <= set(install[1].split(","))
    assert set(install[1].split(",")) <= set(extras)


def test_ray_token_authentication_is_on_and_the_docs_give_the_client_its_token(manifest):
    auth = manifest["spec"]["authOptions"]
    assert auth["mode"] == "token"
    docs = DOCS.read_text()
    assert (f"kubectl create secret generic {auth['secretName']} --from-literal=auth_token="
            in docs)
    assert re.search(rf"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=\$\(kubectl get secret "
                     rf"{auth['secretName']} ", docs)
    for container in containers(manifest):  # nothing turns it off again
        assert {"name": "RAY_AUTH_MODE", "value": "disabled"} not in container.get("env", [])


def test_every_pod_mounts_the_data_and_runs_dir_the_docs_name_and_gets_the_state_secret(
        manifest):
    kuberay = DOCS.read_text().split("### Kubernetes (KubeRay)")[1]
    assert f"--runs-dir {RUNS_DIR}" in kuberay and "--data /data/" in kuberay
    for container in containers(manifest):
        assert {"/data", RUNS_DIR} <= {m["mountPath"] for m in container["volumeMounts"]}
        assert {"name": "search-state"} in [e.get("secretRef") for e in container["envFrom"]]


def test_the_ray_start_lines_are_the_documented_ones_with_flags_ray_knows(manifest):
    docs = DOCS.read_text()
    shown = re.search(r"```text\n(head: .*?)```", docs, re.S)
    assert shown and shown[1].splitlines() == kuberay_lines(manifest)
    start = pytest.importorskip("ray.scripts.scripts").start
    known = {o for p in start.params for o in p.opts}
    typed = [line.split(":", 1)[1] for line in kuberay_lines(manifest)]
    for block in re.findall(r"^```bash\n(.*?)^```", docs, re.M | re.S):
        joined = block.replace("\\\n", " ")
        typed += [line.split(" #")[0] for line in joined.splitlines()
                  if line.lstrip().startswith("ray start ")]
    assert len(typed) > len(kuberay_lines(manifest))  # and the docs' own
    unknown = {(flag, line) for line in typed
               for flag in re.findall(r"(?<!\S)(--[a-z-]+)", line) if flag not in known}
    assert not unknown
