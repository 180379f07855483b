"""Bring a month folder from the blob store onto local disk, yielding each item as soon as it is there.

The listing is streamed page by page and files go straight to disk, so memory
does not grow with the month, and scoring starts with the first files. A file
already on disk from an earlier attempt with the same ETag is kept, files of
blobs that are gone are removed: attempts of a month share one download. A blob
that cannot be a local file (a name clash between a file and a folder, a name
segment longer than the filesystem allows, `..`) is an item with that reason,
never a failure of the job. A blob store that stays unreachable for longer than
`outage_s` fails the job with one line naming the endpoint and the last error.

Blobs are listed and read with plain GETs of a short-lived read-and-list
container SAS over a pooled connection: per blob, reading costs a quarter of the
CPU of the SDK's download pipeline and listing a tenth of its XML deserializer
(measured: 1.1 CPU-s per 2,000 blobs), and on the local backend that CPU is
taken from scoring. The SDK still builds the SAS (account key or user delegation key).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import quote, unquote, urlencode, urlparse
from xml.etree import ElementTree

import urllib3
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContainerSasPermissions, generate_container_sas
from tenacity import RetryError, Retrying, retry_if_exception, wait_exponential

from scoring.blob_location import unsigned_url
from scoring.items import InputItem, StorageUnavailable, decode_name, encode_name, is_input, walk_folder
from scoring.rows import ErrorType
from scoring.transient import OutageClock, TransientStatus, is_transient, is_transient_status

log = logging.getLogger(__name__)

STORAGE_ENV = "AZURE_STORAGE_CONNECTION_STRING"
ETAGS_FILE = ".etags.sqlite"
# Errors of the local disk as a whole: the job fails with them rather than listing every file.
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}
# Our own retries, bounded by the outage time, are the only ones: the SDK's wait 15 s and more between tries.
CLIENT_OPTIONS = {"retry_total": 0, "connection_timeout": 10, "read_timeout": 60}
# A SAS lives this long and is renewed at half its life, so a month that downloads for a day never sees one expire.
SAS_LIFETIME = timedelta(hours=2)
_CHUNK = 1 << 20
_API_VERSION = "2021-08-06"
_PAGE_SIZE = 5000  # the most the service returns per listing page


class BlobGone(Exception):
    """The blob was listed but is not there (or not with the listed ETag) any more."""


class SignedReader:
    """Lists and GETs blobs of one container through a read-and-list SAS it renews itself; thread-safe, one
    connection pool."""

    def __init__(self, container: ContainerClient, *, threads: int) -> None:
        self._container = container
        self._lock = threading.Lock()
        self._sas: tuple[str, datetime] | None = None
        self._pool = urllib3.PoolManager(maxsize=threads, block=False, retries=False,
                                         timeout=urllib3.Timeout(connect=CLIENT_OPTIONS["connection_timeout"],
                                                                 read=CLIENT_OPTIONS["read_timeout"]))

    def read_into(self, blob_name: str, etag: str, stream: BinaryIO, *, timeout: float | None = None) -> None:
        """Write the blob's bytes to `stream`; raises BlobGone when it was deleted or changed since listing.
        `timeout`: seconds to connect and between received bytes (default: CLIENT_OPTIONS)."""
        url = f"{unsigned_url(self._container.url)}/{quote(blob_name, safe='~/')}?{self._token()}"
        response = self._pool.request("GET", url, headers={"If-Match": etag, "x-ms-version": _API_VERSION},
                                      preload_content=False, **_timeout(timeout))
        try:
            if response.status == 200:
                for chunk in response.stream(_CHUNK):
                    stream.write(chunk)
                return
            if response.status in (404, 412):
                raise BlobGone(f"HTTP {response.status}")
            raise _refusal(response, f"read {blob_name!r}")
        finally:
            response.release_conn()

    def list_page(self, prefix: str, marker: str | None, *,
                  timeout: float | None = None) -> tuple[list[tuple[str, str]], str | None]:
        """One listing page under `prefix`: (blob name, ETag) pairs and the marker of the next page (None: last)."""
        query = {"restype": "container", "comp": "list", "prefix": prefix, "maxresults": _PAGE_SIZE,
                 **({"marker": marker} if marker else {})}
        url = f"{unsigned_url(self._container.url)}?{urlencode(query)}&{self._token()}"
        response = self._pool.request("GET", url, headers={"x-ms-version": _API_VERSION}, **_timeout(timeout))
        if response.status != 200:
            raise _refusal(response, f"list {prefix!r}")
        root = ElementTree.fromstring(response.data)
        blobs = []
        for blob in root.iter("Blob"):
            name = blob.find("Name")
            # Names with characters XML cannot carry come percent-encoded, flagged Encoded="true".
            text = unquote(name.text or "") if name.get("Encoded") == "true" else (name.text or "")
            blobs.append((text, blob.findtext("Properties/Etag")))
        return blobs, root.findtext("NextMarker") or None

    def _token(self) -> str:
        with self._lock:
            now = datetime.now(timezone.utc)
            if self._sas is None or now >= self._sas[1]:
                self._sas = (self._sign(now), now + SAS_LIFETIME / 2)
            return self._sas[0]

    def _sign(self, now: datetime) -> str:
        container = self._container
        start, expiry = now - timedelta(minutes=5), now + SAS_LIFETIME  # a little clock skew is tolerated
        permission = ContainerSasPermissions(read=True, list=True)
        key = getattr(container.credential, "account_key", None)
        if key:
            return generate_container_sas(container.account_name, container.container_name, account_key=key,
                                          permission=permission, start=start, expiry=expiry)
        if container.credential is None:  # the URL carries its own SAS, or the container is public
            return urlparse(container.url).query
        # An Entra ID identity signs with a user delegation key (roles Storage Blob Data Reader and up may).
        service = BlobServiceClient(f"{container.scheme}://{container.primary_hostname}",
                                    credential=container.credential, **CLIENT_OPTIONS)
        delegation = service.get_user_delegation_key(start, expiry)
        return generate_container_sas(container.account_name, container.container_name,
                                      user_delegation_key=delegation, permission=permission, start=start,
                                      expiry=expiry)


def _timeout(seconds: float | None) -> dict:
    if seconds is None:
        return {}
    return {"timeout": urllib3.Timeout(connect=min(seconds, CLIENT_OPTIONS["connection_timeout"]),
                                       read=min(seconds, CLIENT_OPTIONS["read_timeout"]))}


def _refusal(response, what: str) -> Exception:
    """A non-success answer as an exception: worth asking again (5xx, 429 throttling), or a refusal in one line."""
    status, code = response.status, response.headers.get("x-ms-error-code", "")
    if is_transient_status(status):
        return TransientStatus(f"HTTP {status} {code}".strip())
    hint = ("; the credential may lack read and list access to the container, or its signature expired"
            if status == 403 else "")
    return HttpResponseError(message=f"the blob store refused to {what}: HTTP {status} {code}".strip() + hint)


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


def container_client(connection_string: str, container: str) -> ContainerClient:
    return ContainerClient.from_connection_string(connection_string, container, **CLIENT_OPTIONS)


def read_only_container_url(connection_string: str, container: str, *, lifetime: timedelta) -> str:
    """The container's URL with a read-and-list signature valid for `lifetime`: what a job process is given
    instead of the account key. A SAS connection string has no key to sign with: its own signature is passed
    on, as narrow as whoever issued it made it."""
    client = container_client(connection_string, container)
    key = getattr(client.credential, "account_key", None)
    if key:
        now = datetime.now(timezone.utc)
        signature = generate_container_sas(client.account_name, container, account_key=key,
                                           permission=ContainerSasPermissions(read=True, list=True),
                                           start=now - timedelta(minutes=5), expiry=now + lifetime)
    else:
        signature = urlparse(client.url).query
        if not signature:
            raise ValueError("the blob connection string holds neither an account key nor a shared access "
                             "signature; the local backend needs one of them")
    return f"{unsigned_url(client.url)}?{signature}"


def container_client_from_url(url: str) -> ContainerClient:
    """A client for a container URL that carries its own signature (a job's read-only credential)."""
    return ContainerClient.from_container_url(url, **CLIENT_OPTIONS)


def container_client_for_url(url: str) -> tuple[ContainerClient, str]:
    """A client for the URL's container, with credentials from the environment; and the folder prefix."""
    account_url, container, prefix = split_blob_url(url)
    connection_string = os.environ.get(STORAGE_ENV)
    if connection_string:
        return container_client(connection_string, container), prefix
    from azure.identity import DefaultAzureCredential

    return ContainerClient(account_url, container, credential=DefaultAzureCredential(), **CLIENT_OPTIONS), prefix


def safe_relative_path(name: str) -> PurePosixPath | None:
    """The blob name as a local relative path, or None when it could escape the folder (`..`, `.`, empty segments)."""
    segments = name.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return None
    return PurePosixPath(*segments)


def fetch_prefix(container: ContainerClient, prefix: str, destination: Path, *, threads: int = 8,
                 outage_s: float = 300.0) -> Iterator[InputItem]:
    """Download every blob under `prefix` to `destination`, yielding each item (ETag as identity) once on disk."""
    destination.mkdir(parents=True, exist_ok=True)
    staging = destination.with_name(destination.name + ".partial")
    record = DownloadRecord(destination.with_name(destination.name + ETAGS_FILE))
    endpoint = f"{unsigned_url(container.url)}/{prefix}"
    reader = SignedReader(container, threads=threads)

    outage = OutageClock(outage_s)  # one clock for the listing and every download thread
    backoff = wait_exponential(multiplier=0.5, max=10)

    def attempt(call, *args):
        started = time.monotonic()
        try:
            result = call(*args, timeout=outage.request_timeout(CLIENT_OPTIONS["read_timeout"]))
        except Exception as error:
            if is_transient(error):
                outage.failed(started)
            raise
        outage.succeeded()
        return result

    def patiently(call, *args):
        retrying = Retrying(stop=lambda _state: outage.expired(),
                            wait=lambda state: max(0.0, min(backoff(state), outage.remaining())),
                            retry=retry_if_exception(is_transient), reraise=False)
        try:
            return retrying(attempt, call, *args)
        except RetryError as error:
            last = error.last_attempt.exception()
            text = " ".join(str(last).split())[:300]
            raise StorageUnavailable(f"the blob store at {endpoint} did not answer for {outage_s:.0f}s; last error: "
                                     f"{type(last).__name__}: {text}") from None

    def fetch(blob_name: str, item: str, relative: PurePosixPath, etag: str) -> InputItem:
        target = destination.joinpath(*relative.parts)
        try:
            partial = staging.joinpath(*relative.parts)  # beside the input folder: no half file ever inside it
            partial.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as stream:
                def download(timeout: float) -> None:
                    stream.seek(0)
                    stream.truncate()  # a retry starts the file over
                    reader.read_into(blob_name, etag, stream, timeout=timeout)

                patiently(download)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, target)
        except BlobGone:
            return InputItem.failed(item, ErrorType.UNREADABLE, "the blob was deleted or replaced while the month "
                                    "was being downloaded; run the month again to score what is there now")
        except OSError as error:
            if error.errno in _DISK_ERRORS:
                raise OSError(error.errno, error.strerror, str(destination)) from None
            return InputItem.failed(item, ErrorType.UNREADABLE, _path_problem(error, item))
        return InputItem(item, identity=etag)

    in_flight: set[Future] = set()
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fetch")
    try:
        for blob_name, etag in _list(reader, prefix, patiently):
            item = encode_name(blob_name[len(prefix):])
            if not is_input(item):
                continue
            relative = safe_relative_path(blob_name[len(prefix):])
            if relative is None:
                yield InputItem.failed(item, ErrorType.UNREADABLE, "blob name has an empty, '.' or '..' path "
                                       "segment and cannot be a file in the month folder; rename the blob")
                continue
            record.listed(item)
            if record.etag(item) == etag and destination.joinpath(*relative.parts).is_file():
                yield InputItem(item, identity=etag)  # this attempt's file is the blob's: shared, not fetched again
                continue
            in_flight.add(pool.submit(fetch, blob_name, item, relative, etag))
            if len(in_flight) >= 4 * threads:  # bounded: memory stays flat on huge months
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                yield from _settled(done, record)
        while in_flight:
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            yield from _settled(done, record)
        removed = _remove_stale(destination, record)
        log.info("downloaded the %d blobs under %s (%d stale local files removed)", record.listed_count(), endpoint,
                 removed)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        record.close()


def _settled(done: set[Future], record: DownloadRecord) -> Iterator[InputItem]:
    for future in done:
        item = future.result()
        if item.failure is None:
            record.downloaded(item.name, item.identity)
        yield item


class DownloadRecord:
    """Which ETag each local file of the month holds, kept beside the folder for the next attempt, and which
    items this listing named; on disk (SQLite), so a month of millions of blobs costs no memory. Used by the
    one thread that runs the download generator."""

    def __init__(self, path: Path):
        # Attempts of a month may download side by side: short transactions (autocommit), write-ahead log.
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                               "CREATE TABLE IF NOT EXISTS etags (name TEXT PRIMARY KEY, etag TEXT) WITHOUT ROWID;"
                               "CREATE TEMP TABLE listed (name TEXT PRIMARY KEY) WITHOUT ROWID;")

    def etag(self, name: str) -> str | None:
        found = self._db.execute("SELECT etag FROM etags WHERE name = ?", (name,)).fetchone()
        return found[0] if found else None

    def listed(self, name: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO listed VALUES (?)", (name,))

    def was_listed(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM listed WHERE name = ?", (name,)).fetchone() is not None

    def listed_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM listed").fetchone()[0]

    def downloaded(self, name: str, etag: str) -> None:
        """Recorded only once the file is in place: a killed attempt's record never claims bytes it lacks."""
        self._db.execute("INSERT OR REPLACE INTO etags VALUES (?, ?)", (name, etag))

    def close(self) -> None:
        self._db.close()


def _list(reader: SignedReader, prefix: str, patiently) -> Iterator[tuple[str, str]]:
    """(name, ETag) of every blob under `prefix`, page by page; a failed page is asked again from its marker."""
    marker = None
    while True:
        blobs, marker = patiently(reader.list_page, prefix, marker)
        yield from blobs
        if marker is None:
            return


def _path_problem(error: OSError, item: str) -> str:
    if error.errno == errno.ENAMETOOLONG:
        return "a segment of its name is longer than the local filesystem allows (255 bytes); shorten the blob name"
    if error.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return ("a file and a folder of the same name exist in the month ('x.jpg' and 'x.jpg/...'), which a local "
                "disk cannot hold; rename one of them")
    return f"cannot be stored as a local file ({error.strerror}); rename the blob"


def _remove_stale(destination: Path, record: DownloadRecord) -> int:
    removed = 0
    for item in walk_folder(destination):
        if item.failure is None and not record.was_listed(item.name):
            (destination / decode_name(item.name)).unlink(missing_ok=True)
            removed += 1
    return removed
