"""Running in containers and on Kubernetes, read without running anything: the manifests under
deploy/kubernetes/ (rendered per overlay and validated against the Kubernetes API schema) and the
Dockerfile."""

import math
import os
import shlex
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hayhooks.settings import Settings
from tests.helpers.dockerfile import dockerfile_cmd, dockerfile_instructions, dockerfile_uid, healthcheck_code
from tests.helpers.kustomize import RenderError, render, strategic_merge
from tests.helpers.support import REPO

KUBERNETES = REPO / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"  # the oldest Kubernetes the manifests are checked against
TARGETS = ["base", "overlays/git-sync", "overlays/shared-volume"]


# --- the manifests ---------------------------------------------------------------------------------


def objects_of(target: str) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in render(KUBERNETES / target)}


def hayhooks_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "hayhooks"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_every_kustomization_is_covered():
    found = {path.parent.relative_to(KUBERNETES).as_posix() for path in KUBERNETES.rglob("kustomization.yaml")}
    assert found == set(TARGETS)


def test_every_yaml_file_is_rendered_by_some_kustomization():
    """No manifest escapes validation: each file is a kustomization, or a resource or patch of one."""
    used = set()
    for target in TARGETS:
        folder = KUBERNETES / target
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        used |= {(folder / r).resolve() for r in kustomization.get("resources", []) if (folder / r).is_file()}
        used |= {(folder / patch["path"]).resolve() for patch in kustomization.get("patches", [])}
        used.add((folder / "kustomization.yaml").resolve())
    assert {path.resolve() for path in KUBERNETES.rglob("*.y*ml")} == used


def test_the_renderer_merges_like_a_strategic_merge_patch_and_refuses_the_rest(tmp_path: Path):
    base = {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}], "args": ["p"]}], "k": 1}}
    patch = {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}], "args": ["q"]}], "k": None}}
    assert strategic_merge(base, patch) == {
        "spec": {
            "containers": [
                {"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}], "args": ["q"]}
            ]
        }
    }
    (tmp_path / "kustomization.yaml").write_text("kind: Kustomization\nresources: []\nimages: [{name: x}]\n")
    with pytest.raises(RenderError, match="unsupported keys"):
        render(tmp_path)


@pytest.mark.parametrize("target", TARGETS)
def test_rendered_manifests_are_valid_kubernetes_objects(target: str):
    objects = render(KUBERNETES / target)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)  # raises on any error


@pytest.mark.parametrize("target", TARGETS)
def test_the_objects_fit_together(target: str):
    objects = objects_of(target)
    deployment, service, hpa = objects["Deployment"], objects["Service"], objects["HorizontalPodAutoscaler"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    container = hayhooks_container(deployment)
    assert service["spec"]["ports"][0]["targetPort"] in {port["name"] for port in container["ports"]}
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hayhooks"}
    assert "replicas" not in deployment["spec"]  # the autoscaler owns it
    # CPU utilisation is relative to requests: every container, sidecars included, needs one
    assert all(c["resources"]["requests"]["cpu"] for c in pod["spec"]["containers"])
    volumes = {volume["name"] for volume in pod["spec"].get("volumes", [])}
    mounts = {
        m["name"]
        for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
        for m in c.get("volumeMounts", [])
    }
    assert mounts == volumes


@pytest.mark.parametrize("target", TARGETS)
def test_the_hayhooks_container(target: str, monkeypatch: pytest.MonkeyPatch):
    container = hayhooks_container(objects_of(target)["Deployment"])
    assert container["command"] == dockerfile_cmd()
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    env = env_of(container)
    assert "HAYHOOKS_WORKERS" not in env  # it would override the CPU limit
    assert env["WEB_CONCURRENCY"]["valueFrom"]["resourceFieldRef"] == {
        "containerName": "hayhooks",
        "resource": "limits.cpu",
        "divisor": "1",
    }
    unknown = {name for name in env if name.startswith("HAYHOOKS_")} - {
        f"HAYHOOKS_{field.upper()}" for field in Settings.model_fields
    }
    assert not unknown, f"not hayhooks settings: {unknown}"

    # What the workers would resolve from this environment: the downward API rounds the limit up.
    for variable in [name for name in os.environ if name.startswith("HAYHOOKS_")]:
        monkeypatch.delenv(variable)
    workers = math.ceil(cpu_cores(container["resources"]["limits"]["cpu"]))
    monkeypatch.setenv("WEB_CONCURRENCY", str(workers))
    for name, item in env.items():
        if "value" in item:
            monkeypatch.setenv(name, item["value"])
        elif "secretKeyRef" in item["valueFrom"]:
            monkeypatch.setenv(name, "a-secret-from-the-cluster")
    settings = Settings(_env_file=None)
    assert settings.worker_count().count == workers == 2
    assert settings.host == "0.0.0.0" and settings.port == container["ports"][0]["containerPort"]
    # an open deploy API on 0.0.0.0 is remote code execution for anyone who reaches the pod
    assert settings.deploy_api is False or (
        settings.admin_token is not None and "secretKeyRef" in env["HAYHOOKS_ADMIN_TOKEN"]["valueFrom"]
    )
    security = objects_of(target)["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == dockerfile_uid()


def test_git_sync_overlay_serves_the_link_git_sync_maintains():
    pod = objects_of("overlays/git-sync")["Deployment"]["spec"]["template"]["spec"]
    container = hayhooks_container({"spec": {"template": {"spec": pod}}})
    env = env_of(container)
    assert env["HAYHOOKS_DEPLOY_API"]["value"] == "false"  # git is the source
    pipelines_dir = env["HAYHOOKS_PIPELINES_DIR"]["value"]
    (sidecar,) = [c for c in pod["containers"] if c["name"] == "git-sync"]
    (first_sync,) = pod["initContainers"]
    assert first_sync["args"] == ["--one-time"] and first_sync["image"] == sidecar["image"]
    sync_env = {item["name"]: item["value"] for item in sidecar["env"]}
    assert sync_env == {item["name"]: item["value"] for item in first_sync["env"]}
    link = f"{sync_env['GITSYNC_ROOT']}/{sync_env['GITSYNC_LINK']}"
    assert pipelines_dir == link or pipelines_dir.startswith(link + "/")
    # both containers see the same volume at the same place; hayhooks only reads it
    (hayhooks_mount,) = [m for m in container["volumeMounts"] if pipelines_dir.startswith(m["mountPath"] + "/")]
    (sync_mount,) = [m for m in sidecar["volumeMounts"] if m["name"] == hayhooks_mount["name"]]
    assert sync_mount["mountPath"] == hayhooks_mount["mountPath"] and hayhooks_mount["readOnly"] is True
    assert sync_env["GITSYNC_ROOT"] != sync_mount["mountPath"]  # git-sync wants a folder inside the volume
    assert {"emptyDir": {}}.items() <= next(v for v in pod["volumes"] if v["name"] == hayhooks_mount["name"]).items()


def test_shared_volume_overlay_polls_a_read_write_many_claim():
    objects = objects_of("overlays/shared-volume")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    container = hayhooks_container(objects["Deployment"])
    env = env_of(container)
    assert env["HAYHOOKS_WATCH_POLL"]["value"] == "true"
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == env["HAYHOOKS_PIPELINES_DIR"]["value"]]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = objects["PersistentVolumeClaim"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


# --- the Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_structure():
    instructions = dockerfile_instructions()
    names = [instruction for instruction, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert names[-1] == "CMD" and dockerfile_cmd() == ["gunicorn", "-c", "gunicorn.conf.py"]
    # the last USER comes after every RUN (so it applies at run time) and is not root
    user_at = max(i for i, name in enumerate(names) if name == "USER")
    assert user_at > max(i for i, name in enumerate(names) if name == "RUN")
    assert instructions[user_at][1].split(":")[0] not in {"root", "0"}
    assert dockerfile_uid() >= 1000
    assert ("EXPOSE", "1416") in instructions
    env = " ".join(args for instruction, args in instructions if instruction == "ENV")
    assert "HAYHOOKS_HOST=0.0.0.0" in env.split() and "HAYHOOKS_PIPELINES_DIR=/pipelines" in env.split()
    assert "/health" in healthcheck_code()
    assert any(name == "RUN" and args.startswith("pip install .") for name, args in instructions)


def test_dockerfile_copies_exist_and_are_not_ignored():
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    ignored = [pattern for pattern in ignored if pattern and not pattern.startswith("#")]
    assert {".git", ".venv", ".env"} <= set(ignored)  # no history, no virtualenv, no local secrets
    sources = [
        source
        for instruction, args in dockerfile_instructions()
        if instruction == "COPY"
        for source in shlex.split(args)[:-1]
    ]
    assert set(sources) == {"pyproject.toml", "README.md", "hayhooks", "gunicorn.conf.py"}
    for source in sources:
        assert (REPO / source).exists(), source
        assert not any(fnmatch(source, pattern) for pattern in ignored), source
