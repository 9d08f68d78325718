"""A tiny stand-in for `kubectl kustomize`, enough for deploy/kubernetes/ (no kustomize binary here).

It understands exactly what those kustomizations use and refuses anything else, so a feature it
does not know cannot be silently ignored:

- ``resources``: YAML files (one or more documents) and folders holding a ``kustomization.yaml``;
- ``patches``: ``- path: FILE``, a strategic merge patch of one object, matched by kind and name.

The merge follows Kubernetes' strategic merge patch for the fields these manifests patch: maps merge
key by key, ``null`` deletes a key, lists of containers, env vars, volumes, volume mounts and ports
merge item by item on their merge key (``name``, ``mountPath``, ``containerPort``), other lists are
replaced.

    python -m tests.kustomize deploy/kubernetes/overlays/git-sync     # prints the rendered YAML
"""

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION = "kustomization.yaml"
_KNOWN_KEYS = {"apiVersion", "kind", "resources", "patches"}
# Merge keys of the Kubernetes API's lists (patchMergeKey in the OpenAPI schema).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}


class RenderError(Exception):
    """The kustomization uses something this renderer does not do, or points at nothing."""


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document is not None]


def render(folder: Path) -> list[dict[str, Any]]:
    """The objects ``folder``'s kustomization produces, in order."""
    kustomization = yaml.safe_load((folder / KUSTOMIZATION).read_text())
    unknown = set(kustomization) - _KNOWN_KEYS
    if unknown:
        raise RenderError(f"{folder / KUSTOMIZATION}: unsupported keys {sorted(unknown)}")
    if kustomization.get("kind") != "Kustomization":
        raise RenderError(f"{folder / KUSTOMIZATION}: kind must be Kustomization")
    objects: list[dict[str, Any]] = []
    for resource in kustomization.get("resources") or []:
        path = (folder / resource).resolve()
        objects += render(path) if path.is_dir() else load_documents(path)
    for patch in kustomization.get("patches") or []:
        if set(patch) != {"path"}:
            raise RenderError(f"{folder / KUSTOMIZATION}: only `- path: FILE` patches are supported")
        for document in load_documents(folder / patch["path"]):
            target = _find(objects, document)
            objects[objects.index(target)] = strategic_merge(target, document)
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    if len(keys) != len(set(keys)):
        raise RenderError(f"{folder}: an object is defined twice: {keys}")
    return objects


def _find(objects: list[dict[str, Any]], patch: dict[str, Any]) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == patch["kind"] and o["metadata"]["name"] == patch["metadata"]["name"]]
    if len(matches) != 1:
        raise RenderError(f"a patch of {patch['kind']}/{patch['metadata']['name']} matches {len(matches)} objects")
    return matches[0]


def strategic_merge(base: Any, patch: Any, field: str | None = None) -> Any:
    """``patch`` applied to ``base`` (neither is modified)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        merged = copy.deepcopy(base)
        for item in patch:
            index = next((i for i, old in enumerate(merged) if old.get(key) == item.get(key)), None)
            if index is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[index] = strategic_merge(merged[index], item)
        return merged
    return copy.deepcopy(patch)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.kustomize FOLDER", file=sys.stderr)
        return 2
    print(yaml.safe_dump_all(render(Path(argv[0])), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
