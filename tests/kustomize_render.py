"""A small stand-in for `kubectl kustomize`, enough for deploy/'s kustomizations.

It knows the three fields those files use: `resources` (YAML files, or folders
holding a kustomization.yaml), `images` (name -> newName:newTag on every
container image) and `patches` with an inline JSON 6902 patch and a
kind + name target. Anything else in a kustomization.yaml is refused rather than
ignored, so the test that compares it with kubectl's output (where kubectl is
installed) and the manifests cannot part ways silently.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KNOWN_FIELDS = {"apiVersion", "kind", "resources", "images", "patches"}


def render(folder: Path) -> list[dict[str, Any]]:
    """The documents `kubectl kustomize folder` prints (in file order, not kustomize's kind order)."""
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(spec) - KNOWN_FIELDS
    if unknown:
        raise ValueError(f"{folder}/kustomization.yaml: fields this renderer does not know: {sorted(unknown)}")
    documents: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            documents += render(path)
        else:
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for image in spec.get("images", []):
        for doc in documents:
            for container in _containers(doc):
                if container.get("image", "").split(":")[0] == image["name"]:
                    tag = image.get("newTag", container["image"].partition(":")[2])
                    container["image"] = f"{image.get('newName', image['name'])}:{tag}"
    for patch in spec.get("patches", []):
        target = patch["target"]
        for doc in documents:
            if doc["kind"] == target["kind"] and doc["metadata"]["name"] == target["name"]:
                for operation in yaml.safe_load(patch["patch"]):
                    _apply(doc, operation)
    return documents


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", spec)  # workloads hold a pod template; ServingRuntime is one
    return pod.get("containers", [])


def _apply(doc: dict[str, Any], operation: dict[str, Any]) -> None:
    """One JSON 6902 `add` or `replace` (RFC 6901 pointers: ~1 is '/', ~0 is '~')."""
    if operation["op"] not in ("add", "replace"):
        raise ValueError(f"JSON patch op {operation['op']!r} is not supported here")
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if operation["op"] == "add":
            node.insert(index, copy.deepcopy(operation["value"]))
        else:
            node[index] = copy.deepcopy(operation["value"])
    else:
        if operation["op"] == "replace" and last not in node:
            raise KeyError(f"replace of missing {operation['path']}")
        node[last] = copy.deepcopy(operation["value"])
