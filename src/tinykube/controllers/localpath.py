"""The local-path provisioner and PersistentVolume binder: gives every claim a volume on this host.

Two upstream components in one loop, because one needs the other:

- k3s' local-path-provisioner: a default StorageClass ``local-path`` (provisioner
  ``rancher.io/local-path``, reclaim policy Delete) and, for each pending claim of that class, a
  PV ``pvc-<claim uid>`` whose ``hostPath`` is ``<storage>/pvc-<uid>_<namespace>_<name>``.
  Its binding mode is ``Immediate``, not k3s' ``WaitForFirstConsumer``: with one node there is
  no placement to wait for, and the claim is Bound as soon as it exists;
- kube-controller-manager's PV controller (``pkg/controller/volume/persistentvolume``): a claim
  without a class gets the default class (what the DefaultStorageClass admission plugin would
  have set), claims bind to the smallest matching Available volume or to the one provisioned
  for them, with the controller's annotations and phases; a volume whose claim is gone is
  Released and, under the Delete policy, removed with its directory.

Watches only enqueue keys (``claim:NS/NAME``, ``volume:NAME``); ``sync`` re-reads the objects,
so it may run any number of times.  The directories are made by this process: the provisioner
works where the control plane and the node share a host (``tinykube up``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
from typing import Any

from tinykube.api.errors import ApiError
from tinykube.api.quantity import parse_quantity
from tinykube.api.registry import lookup
from tinykube.client.clock import now as _now
from tinykube.client.events import EventRecorder, Source, reference
from tinykube.client.rest import Client, list_and_watch, path
from tinykube.controllers.workqueue import WorkQueue

log = logging.getLogger(__name__)

CLAIMS = lookup("", "v1", "persistentvolumeclaims")
VOLUMES = lookup("", "v1", "persistentvolumes")
CLASSES = lookup("storage.k8s.io", "v1", "storageclasses")
assert CLAIMS is not None and VOLUMES is not None and CLASSES is not None

PROVISIONER = "rancher.io/local-path"
CLASS_NAME = "local-path"
DIR_MODE = 0o777  # k3s' helper runs ``mkdir -m 0777``: any container user may write the volume
IS_DEFAULT = "storageclass.kubernetes.io/is-default-class"
BETA_IS_DEFAULT = "storageclass.beta.kubernetes.io/is-default-class"
BETA_CLASS = "volume.beta.kubernetes.io/storage-class"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER = ("volume.beta.kubernetes.io/storage-provisioner", "volume.kubernetes.io/storage-provisioner")

Obj = dict[str, Any]


def default_storage_class() -> Obj:
    """The class k3s ships (``manifests/local-storage.yaml``), but binding immediately."""
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": CLASS_NAME, "annotations": {IS_DEFAULT: "true"}},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}


# --- pure decisions ----------------------------------------------------------------------------


def is_default(sc: Obj) -> bool:
    annotations = sc["metadata"].get("annotations") or {}
    return annotations.get(IS_DEFAULT) == "true" or annotations.get(BETA_IS_DEFAULT) == "true"


def default_class(classes: list[Obj]) -> Obj | None:
    """``GetDefaultClass``: of several default classes the newest wins, then the first by name."""
    defaults = sorted((sc for sc in classes if is_default(sc)), key=lambda sc: sc["metadata"]["name"])
    defaults.sort(key=lambda sc: sc["metadata"].get("creationTimestamp") or "", reverse=True)  # stable
    return defaults[0] if defaults else None


def claim_class(pvc: Obj) -> str | None:
    """``GetPersistentVolumeClaimClass`` (beta annotation first); None when it was never set."""
    annotations = pvc["metadata"].get("annotations") or {}
    if BETA_CLASS in annotations:
        return str(annotations[BETA_CLASS])
    return (pvc.get("spec") or {}).get("storageClassName")


def volume_class(pv: Obj) -> str:
    annotations = pv["metadata"].get("annotations") or {}
    return str(annotations.get(BETA_CLASS, (pv.get("spec") or {}).get("storageClassName") or ""))


def claim_ref(pvc: Obj) -> Obj:
    meta = pvc["metadata"]
    return {"kind": "PersistentVolumeClaim", "namespace": meta["namespace"], "name": meta["name"],
            "uid": meta["uid"], "apiVersion": "v1", "resourceVersion": meta.get("resourceVersion", "")}


def bound_to(pv: Obj, pvc: Obj) -> bool:
    """``IsVolumeBoundToClaim``: the volume's claimRef names this claim (and its uid, once set)."""
    ref = (pv.get("spec") or {}).get("claimRef")
    meta = pvc["metadata"]
    if not ref or ref.get("name") != meta["name"] or ref.get("namespace") != meta["namespace"]:
        return False
    return not ref.get("uid") or ref["uid"] == meta["uid"]


def _storage(resources: Obj | None) -> Any:
    return parse_quantity((resources or {}).get("storage") or "0")


def _fits(pv: Obj, pvc: Obj) -> bool:
    """Enough capacity, every requested access mode, the same volume mode."""
    spec, want = pv.get("spec") or {}, pvc.get("spec") or {}
    if (spec.get("volumeMode") or "Filesystem") != (want.get("volumeMode") or "Filesystem"):
        return False
    if not set(want.get("accessModes") or []) <= set(spec.get("accessModes") or []):
        return False
    return bool(_storage(spec.get("capacity")) >= _storage((want.get("resources") or {}).get("requests")))


def best_match(pvc: Obj, pvs: list[Obj]) -> Obj | None:
    """``findMatchingVolume``: a volume pre-bound to the claim, else the smallest Available fit of its class.

    Label selectors on claims are not supported: a claim with a selector matches only pre-bound volumes.
    """
    candidates = [pv for pv in pvs if not pv["metadata"].get("deletionTimestamp") and _fits(pv, pvc)]
    for pv in candidates:
        if bound_to(pv, pvc):
            return pv
    if (pvc.get("spec") or {}).get("selector"):
        return None
    wanted = claim_class(pvc) or ""
    free = [pv for pv in candidates if not pv["spec"].get("claimRef")
            and (pv.get("status") or {}).get("phase") == "Available" and volume_class(pv) == wanted]
    return min(free, key=lambda pv: _storage(pv["spec"].get("capacity")), default=None)


def storage_dir(root: str, pvc: Obj) -> str:
    meta = pvc["metadata"]
    return os.path.join(root, f"pvc-{meta['uid']}_{meta['namespace']}_{meta['name']}")


def provisioned_volume(pvc: Obj, sc: Obj, root: str) -> Obj:
    """The PV local-path creates for a claim: its size, modes and mode of use, the class's policy."""
    spec = pvc.get("spec") or {}
    pv_spec: Obj = {
        "capacity": {"storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "0")},
        "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy") or "Delete",
        "storageClassName": sc["metadata"]["name"],
        "volumeMode": spec.get("volumeMode") or "Filesystem",
        "claimRef": claim_ref(pvc),
        "hostPath": {"path": storage_dir(root, pvc), "type": "DirectoryOrCreate"},
    }
    if sc.get("mountOptions"):
        pv_spec["mountOptions"] = list(sc["mountOptions"])
    return {"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"pvc-{pvc['metadata']['uid']}", "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": pv_spec}


def volume_action(pv: Obj, claim: Obj | None) -> str:
    """What ``syncVolume`` does: ``available``, ``bound``, ``release``, ``claim`` (sync the claim) or ``none``.

    ``claim`` is the object the volume's claimRef names by namespace/name (None when missing).
    """
    ref = (pv.get("spec") or {}).get("claimRef")
    if not ref or not ref.get("uid"):
        return "available"  # unused, or reserved for a claim whose own sync will bind it
    if claim is None or claim["metadata"]["uid"] != ref["uid"]:
        return "release"
    volume_name = (claim.get("spec") or {}).get("volumeName")
    if not volume_name:
        return "claim"
    if volume_name == pv["metadata"]["name"]:
        return "bound"
    provisioned = PROVISIONED_BY in (pv["metadata"].get("annotations") or {})
    return "release" if provisioned and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete" else "none"


def claim_status(pv: Obj) -> Obj:
    """A Bound claim shows its volume's access modes and capacity."""
    spec = pv.get("spec") or {}
    return {"phase": "Bound", "accessModes": spec.get("accessModes") or [], "capacity": spec.get("capacity") or {}}


def claim_binding(pvc: Obj, pv: Obj) -> Obj | None:
    """The merge patch that points a claim at its volume (``bindClaimToVolume``), or None if done."""
    annotations = pvc["metadata"].get("annotations") or {}
    added: dict[str, str] = {}
    if annotations.get(BIND_COMPLETED) != "yes":
        added[BIND_COMPLETED] = "yes"
    if not (pvc.get("spec") or {}).get("volumeName"):
        added[BOUND_BY_CONTROLLER] = "yes"
    if PROVISIONED_BY in (pv["metadata"].get("annotations") or {}):
        added.update({key: PROVISIONER for key in STORAGE_PROVISIONER if annotations.get(key) != PROVISIONER})
    if not added:
        return None
    return {"metadata": {"annotations": added}, "spec": {"volumeName": pv["metadata"]["name"]}}


# --- the controller ----------------------------------------------------------------------------


class LocalPathController:
    """Provisions local-path volumes under ``storage`` and binds claims to volumes."""

    def __init__(self, client: Client, storage: str):
        self.client = client
        self.storage = storage
        self.queue = WorkQueue(self.sync, "localpath")
        self.binder = EventRecorder(client, Source("persistentvolume-controller"))
        self.provisioner = EventRecorder(client, Source(f"{PROVISIONER}_{socket.gethostname()}"))
        self._pending: set[str] = set()  # claim keys without a volume, re-synced when volumes or classes change

    async def run(self) -> None:
        self.binder.start()
        self.provisioner.start()
        try:
            await self.ensure_default_class()
            await asyncio.gather(list_and_watch(self.client, path(CLASSES), self._on_class),
                                 list_and_watch(self.client, path(CLAIMS), self._on_claim),
                                 list_and_watch(self.client, path(VOLUMES), self._on_volume), self.queue.run())
        finally:
            await self.binder.stop()
            await self.provisioner.stop()

    async def ensure_default_class(self) -> None:
        try:
            await self.client.create(path(CLASSES), default_storage_class())
        except ApiError as e:
            if e.code != 409:
                raise

    # --- events: only keys ---------------------------------------------------------------------

    async def _on_class(self, kind: str, sc: Obj) -> None:
        for key in list(self._pending):
            self.queue.add(key)

    async def _on_claim(self, kind: str, pvc: Obj) -> None:
        key = f"claim:{pvc['metadata']['namespace']}/{pvc['metadata']['name']}"
        volume_name = (pvc.get("spec") or {}).get("volumeName")
        if kind == "DELETED" or volume_name:
            self._pending.discard(key)
        else:
            self._pending.add(key)
        if kind == "DELETED" and volume_name:
            self.queue.add(f"volume:{volume_name}")
        self.queue.add(key)

    async def _on_volume(self, kind: str, pv: Obj) -> None:
        ref = (pv.get("spec") or {}).get("claimRef")
        if ref:
            self.queue.add(f"claim:{ref.get('namespace')}/{ref.get('name')}")
        if kind == "DELETED":
            return
        self.queue.add(f"volume:{pv['metadata']['name']}")
        if not ref:
            for key in list(self._pending):  # a new free volume may fit a waiting claim
                self.queue.add(key)

    async def sync(self, key: str) -> None:
        kind, _, name = key.partition(":")
        if kind == "claim":
            namespace, _, claim = name.partition("/")
            await self.sync_claim(namespace, claim)
        else:
            await self.sync_volume(name)

    async def _get(self, url: str) -> Obj | None:
        obj: Obj | None = await self.client.get_or_none(url)
        return obj

    # --- claims --------------------------------------------------------------------------------

    async def sync_claim(self, namespace: str, name: str) -> None:
        pvc = await self._get(path(CLAIMS, namespace, name))
        if pvc is None or pvc["metadata"].get("deletionTimestamp"):
            return
        if (pvc.get("spec") or {}).get("volumeName"):
            await self._sync_prebound(pvc)
        else:
            await self._sync_unbound(pvc)

    async def _sync_unbound(self, pvc: Obj) -> None:
        classes = (await self.client.get(path(CLASSES)))["items"]
        if claim_class(pvc) is None and (default := default_class(classes)) is not None:
            await self.client.patch(path(CLAIMS, pvc["metadata"]["namespace"], pvc["metadata"]["name"]),
                                    {"spec": {"storageClassName": default["metadata"]["name"]}})
            return  # the update comes back as an event
        match = best_match(pvc, (await self.client.get(path(VOLUMES)))["items"])
        if match is not None:
            await self._bind(pvc, match)
            return
        wanted = claim_class(pvc) or ""
        sc = next((c for c in classes if c["metadata"]["name"] == wanted), None)
        if not wanted:
            self.binder.record(reference(pvc), "Normal", "FailedBinding",
                               "no persistent volumes available for this claim and no storage class is set")
        elif sc is None:
            self.binder.record(reference(pvc), "Warning", "ProvisioningFailed",
                               f'storageclass.storage.k8s.io "{wanted}" not found')
        elif sc.get("provisioner") == PROVISIONER:
            await self._bind(pvc, await self._provision(pvc, sc))
        else:
            self._waiting_for(pvc, str(sc.get("provisioner", "")))

    def _waiting_for(self, pvc: Obj, provisioner: str) -> None:
        self.binder.record(reference(pvc), "Normal", "ExternalProvisioning",
                           f"Waiting for a volume to be created either by the external provisioner '{provisioner}' "
                           "or manually by the system administrator. If volume creation is delayed, please verify "
                           "that the provisioner is running and correctly registered.")

    async def _provision(self, pvc: Obj, sc: Obj) -> Obj:
        """Create the directory and the PV (``pvc-<uid>``; an existing one is reused)."""
        self._waiting_for(pvc, PROVISIONER)
        ref = reference(pvc)
        meta = pvc["metadata"]
        self.provisioner.record(ref, "Normal", "Provisioning",
                                f'External provisioner is provisioning volume for claim "{meta["namespace"]}/{meta["name"]}"')
        pv = provisioned_volume(pvc, sc, self.storage)
        await asyncio.to_thread(_make_dir, pv["spec"]["hostPath"]["path"])
        try:
            created: Obj = await self.client.create(path(VOLUMES), pv)
        except ApiError as e:
            if e.code != 409:
                raise
            created = await self.client.get(path(VOLUMES, name=pv["metadata"]["name"]))
        self.provisioner.record(ref, "Normal", "ProvisioningSucceeded", f"Successfully provisioned volume {pv['metadata']['name']}")
        return created

    async def _sync_prebound(self, pvc: Obj) -> None:
        """A claim naming its volume: finish the binding, or report what stands in the way."""
        volume_name = pvc["spec"]["volumeName"]
        pv = await self._get(path(VOLUMES, name=volume_name))
        status = pvc.get("status") or {}
        if pv is None:
            if status.get("phase") == "Bound":
                await self._claim_phase(pvc, {"phase": "Lost"})
                self.binder.record(reference(pvc), "Warning", "ClaimLost",
                                   "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
            return
        if bound_to(pv, pvc) or not pv["spec"].get("claimRef"):
            await self._bind(pvc, pv)
        elif status.get("phase") != "Bound":
            self.binder.record(reference(pvc), "Warning", "FailedBinding",
                               f'volume "{volume_name}" already bound to a different claim.')

    async def _bind(self, pvc: Obj, pv: Obj) -> None:
        """``bind``: volume → claim, volume Bound, claim → volume, claim Bound; each write only if needed."""
        meta = pvc["metadata"]
        if not bound_to(pv, pvc) or not pv["spec"]["claimRef"].get("uid"):
            annotations = pv["metadata"].setdefault("annotations", {})
            if not pv["spec"].get("claimRef"):
                annotations[BOUND_BY_CONTROLLER] = "yes"
            pv["spec"]["claimRef"] = claim_ref(pvc)
            pv = await self.client.update(path(VOLUMES, name=pv["metadata"]["name"]), pv)
        await self._volume_phase(pv, "Bound")
        patch = claim_binding(pvc, pv)
        if patch is not None:
            pvc = await self.client.patch(path(CLAIMS, meta["namespace"], meta["name"]), patch)
        status = claim_status(pv)
        if any((pvc.get("status") or {}).get(k) != v for k, v in status.items()):
            await self._claim_phase(pvc, status)

    async def _claim_phase(self, pvc: Obj, status: Obj) -> None:
        meta = pvc["metadata"]
        await self.client.patch(path(CLAIMS, meta["namespace"], meta["name"], "status"), {"status": status})

    async def _volume_phase(self, pv: Obj, phase: str) -> Obj:
        """``updateVolumePhase``: a new phase carries its transition time."""
        if (pv.get("status") or {}).get("phase") == phase:
            return pv
        status = {"phase": phase, "lastPhaseTransitionTime": _now()}
        updated: Obj = await self.client.patch(path(VOLUMES, name=pv["metadata"]["name"], subresource="status"),
                                               {"status": status})
        return updated

    # --- volumes -------------------------------------------------------------------------------

    async def sync_volume(self, name: str) -> None:
        pv = await self._get(path(VOLUMES, name=name))
        if pv is None or pv["metadata"].get("deletionTimestamp"):
            return
        ref = pv["spec"].get("claimRef") or {}
        claim = await self._get(path(CLAIMS, ref["namespace"], ref["name"])) if ref.get("uid") else None
        action = volume_action(pv, claim)
        if action == "available":
            await self._volume_phase(pv, "Available")
        elif action == "bound":
            await self._volume_phase(pv, "Bound")
        elif action == "claim":
            self.queue.add(f"claim:{ref['namespace']}/{ref['name']}")
        elif action == "release":
            await self._release(pv)

    async def _release(self, pv: Obj) -> None:
        """Released; under Delete, a volume this provisioner made goes with its directory."""
        if (pv.get("status") or {}).get("phase") not in ("Released", "Failed"):
            pv = await self._volume_phase(pv, "Released")
        ours = (pv["metadata"].get("annotations") or {}).get(PROVISIONED_BY) == PROVISIONER
        if not ours or pv["spec"].get("persistentVolumeReclaimPolicy") != "Delete":
            return  # Retain: the data and the PV stay for the administrator
        directory = (pv["spec"].get("hostPath") or {}).get("path", "")
        if directory and os.path.dirname(os.path.normpath(directory)) == os.path.normpath(self.storage):
            await asyncio.to_thread(shutil.rmtree, directory, True)
        try:
            await self.client.delete(path(VOLUMES, name=pv["metadata"]["name"]))
        except ApiError as e:
            if e.code != 404:
                raise


def _make_dir(directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    os.chmod(directory, DIR_MODE)
