"""Finding and opening a model bundle (written by the ``bundle`` stage), wherever it was copied.

A bundle is a committed stage named ``bundle``: its prefix holds ``_SUCCESS.json`` and an attempt
folder with ``bundle.json`` (:class:`lumbar_core.documents.BundleMetadata`) and the model files. Its
URI is that prefix; a training run's URI is accepted too and means ``{run}/bundle``.
"""

from __future__ import annotations

from lumbar_core import store
from lumbar_core.documents import BundleMetadata
from lumbar_core.manifest import MANIFEST, ManifestError, StageInput

STAGE = "bundle"
FORMAT_VERSION = 1


def resolve_bundle(uri: str) -> str:
    """The bundle prefix at ``uri``: the bundle itself, or a training run holding one (``{run}/bundle``)."""
    uri = uri.rstrip("/")
    for prefix in (uri, store.join(uri, STAGE)):
        manifest = store.join(prefix, MANIFEST)
        if store.exists(manifest) and store.read_json(manifest).get("stage") == STAGE:
            return prefix
    raise ManifestError(f"{uri} is not a model bundle: neither it nor {uri}/{STAGE} holds a committed bundle stage ({MANIFEST})")


def open_bundle(models_uri: str, run_uri: str) -> tuple[StageInput, BundleMetadata]:
    """The committed bundle at ``models_uri`` ('' = this run's) and its metadata."""
    stage = StageInput.open_prefix(resolve_bundle(models_uri or run_uri), stage=STAGE)
    meta = BundleMetadata.from_dict(stage.read_json("bundle.json"), where=f"{stage.prefix}/bundle.json")
    if meta.format_version > FORMAT_VERSION:
        raise ManifestError(f"{stage.prefix}: bundle format {meta.format_version} is newer than this code reads ({FORMAT_VERSION})")
    return stage, meta
