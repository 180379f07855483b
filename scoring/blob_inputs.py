"""Bring a month folder from the blob store onto local disk, as Azure ML's `download` input mode does.

The listing is streamed page by page and files go straight to disk, so memory
does not grow with the month. Files already present with the right size are
kept, so a resumed job does not fetch them again. A blob whose name cannot be a
safe local path is not written anywhere: it is returned with the reason.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from azure.storage.blob import ContainerClient

log = logging.getLogger(__name__)


STORAGE_ENV = "AZURE_STORAGE_CONNECTION_STRING"


def split_blob_url(url: str) -> tuple[str, str, str]:
    """(account URL, container, prefix/) of a blob folder URL; Azurite's URLs carry the account in the path."""
    parsed = urlparse(url)
    parts = [part for part in parsed.path.split("/") if part]
    if parsed.hostname and parsed.hostname.endswith(".core.windows.net"):
        account_url, rest = f"{parsed.scheme}://{parsed.netloc}", parts
    else:  # emulator style: http://127.0.0.1:10000/<account>/<container>/<prefix>
        account_url, rest = f"{parsed.scheme}://{parsed.netloc}/{parts[0]}" if parts else "", parts[1:]
    if not rest:
        raise ValueError(f"blob URL {url!r} names no container: expected <account URL>/<container>/<folder>")
    prefix = "/".join(rest[1:])
    return account_url, rest[0], f"{prefix}/" if prefix else ""


def container_client_for_url(url: str) -> tuple[ContainerClient, str]:
    """A client for the URL's container, with credentials from the environment; and the folder prefix."""
    account_url, container, prefix = split_blob_url(url)
    connection_string = os.environ.get(STORAGE_ENV)
    if connection_string:
        return ContainerClient.from_connection_string(connection_string, container), prefix
    from azure.identity import DefaultAzureCredential

    return ContainerClient(account_url, container, credential=DefaultAzureCredential()), prefix


def safe_relative_path(name: str) -> PurePosixPath | None:
    """The blob name as a local relative path, or None when it could escape the folder or not round-trip
    (`..`, `.`, empty segments, backslashes): the image id must be the blob name, unchanged."""
    segments = name.split("/")
    if "\\" in name or any(segment in ("", ".", "..") for segment in segments):
        return None
    return PurePosixPath(*segments)


def download_prefix(container: ContainerClient, prefix: str, destination: Path, *, threads: int = 8) -> tuple[int, dict[str, str]]:
    """Download every blob under `prefix` to `destination`; returns (count, {item: why it was skipped})."""
    destination.mkdir(parents=True, exist_ok=True)
    staging = destination.with_name(destination.name + ".partial")
    unsafe: dict[str, str] = {}
    count = 0

    def fetch(name: str, relative: PurePosixPath, size: int) -> None:
        target = destination.joinpath(*relative.parts)
        if target.is_file() and target.stat().st_size == size:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        # Partial downloads live beside the input folder, never in it: a killed job leaves no half file inside.
        partial = staging.joinpath(*relative.parts)
        partial.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as stream:
            container.download_blob(name).readinto(stream)
        os.replace(partial, target)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = []
        for blob in container.list_blobs(name_starts_with=prefix):
            item = blob.name[len(prefix):]
            relative = safe_relative_path(item)
            if relative is None:
                unsafe[item] = "blob name is not a safe relative path; rename the blob"
                continue
            futures.append(pool.submit(fetch, blob.name, relative, blob.size))
            count += 1
            if len(futures) >= 256:  # bound the queue: memory stays flat on huge months
                for future in futures:
                    future.result()
                futures.clear()
            if count % 5000 == 0:
                log.info("fetched %d blobs of %s/%s so far", count, container.container_name, prefix)
        for future in futures:
            future.result()
    log.info("downloaded %d blobs under %s/%s to %s", count, container.container_name, prefix, destination)
    return count, unsafe
