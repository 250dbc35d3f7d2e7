"""``tinykube image``: list, load, pull and remove the node's images, whether or not tinykube runs.

The commands work on the image store under ``--data-dir`` directly; the store's file locks make
that safe next to a running agent.  Output follows ``crictl`` (``images``, ``pull``, ``rmi``) so
that what people know from Kubernetes nodes reads the same here.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from tinykube.node.runtime.images import Image, ImageError, ImageStore, parse_reference
from tinykube.node.runtime.registry import Hosts, RegistryError

DEFAULT_DATA_DIR = "/var/lib/tinykube"
ID_WIDTH = 13  # crictl truncates image IDs to 13 hex digits
MIN_WIDTH, PADDING = 20, 3  # crictl's tabwriter: minimum cell width and padding
UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def add_parser(subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
               default_data_dir: str = DEFAULT_DATA_DIR) -> argparse.ArgumentParser:
    """Adds ``image`` and its verbs (``ls``, ``load``, ``pull``, ``rm``) to the top-level parser."""
    image = subparsers.add_parser("image", help="list, load, pull and remove the node's container images")
    verbs = image.add_subparsers(dest="image_command", required=True)
    ls = verbs.add_parser("ls", help="list images (like crictl images)")
    ls.add_argument("-q", "--quiet", action="store_true", help="only show image IDs")
    load = verbs.add_parser("load", help="import images from an OCI archive or a docker save tar")
    load.add_argument("file", help="the archive")
    pull = verbs.add_parser("pull", help="pull an image from its registry (or the mirrors configured for it)")
    pull.add_argument("reference", help="NAME[:TAG|@DIGEST]")
    rm = verbs.add_parser("rm", help="remove images by reference or ID")
    rm.add_argument("references", nargs="+", metavar="REF", help="a reference, or an image ID to remove all its tags")
    for verb in (ls, load, pull, rm):
        verb.add_argument("--data-dir", default=default_data_dir, help="tinykube's data directory (default %(default)s)")
    return image


def run(args: argparse.Namespace) -> int:
    """Runs one ``image`` verb; returns the process exit code."""
    data_dir = Path(args.data_dir)
    try:
        store = ImageStore(data_dir / "images", Hosts(data_dir / "registries"))
        if args.image_command == "ls":
            print(_ids(store.list()) if args.quiet else table(store.list()), end="")
        elif args.image_command == "load":
            for reference in store.load_archive(args.file):
                print(f"Loaded image: {reference}")
        elif args.image_command == "pull":
            image = asyncio.run(store.pull(args.reference))
            print(f"Image is up to date for {image.id}")
        elif args.image_command == "rm":
            return _remove(store, args.references)
    except (ImageError, RegistryError, OSError) as exc:
        print(f"tinykube image {args.image_command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _remove(store: ImageStore, references: list[str]) -> int:
    """Removes each reference, going on past failures as ``crictl rmi`` does."""
    failed = False
    for reference in references:
        try:
            for removed in store.remove(reference):
                print(f"Deleted: {removed}")
        except ImageError as exc:
            print(f"tinykube image rm: {exc}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


def human_size(size: float) -> str:
    """go-units ``HumanSizeWithPrecision(size, 3)``: decimal units, three significant digits."""
    unit = 0
    while size >= 1000 and unit < len(UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{size:.3g}{UNITS[unit]}"


def _repositories_and_tags(image: Image) -> list[tuple[str, str]]:
    """crictl's rows of an image: one per tag, or ``<none>`` when it is only known by digest."""
    refs = [parse_reference(r) for r in image.references]
    return [(r.name, r.tag) for r in refs if r.tag] or [(refs[0].name, "<none>")]


def table(images: list[Image]) -> str:
    """``crictl images``: a row per tag, IMAGE TAG IMAGE ID SIZE, aligned as Go's tabwriter aligns them."""
    rows = [("IMAGE", "TAG", "IMAGE ID", "SIZE")]
    for image in images:
        short_id = image.id.removeprefix("sha256:")[:ID_WIDTH]
        rows += [(name, tag, short_id, human_size(image.size)) for name, tag in _repositories_and_tags(image)]
    widths = [max(MIN_WIDTH, max(len(row[i]) for row in rows) + PADDING) for i in range(3)]
    return "".join("".join(cell.ljust(w) for cell, w in zip(row, widths)) + row[3] + "\n" for row in rows)


def _ids(images: list[Image]) -> str:
    return "".join(f"{image.id}\n" for image in images)
