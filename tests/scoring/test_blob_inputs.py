"""Fetching a blob month folder: streamed, shared by attempts, per-item path errors, bounded outages."""

import pytest

from scoring import blob_inputs
from scoring.blob_inputs import container_client, fetch_prefix, safe_relative_path
from scoring.items import StorageUnavailable


def _fetch(container, prefix, folder, **kwargs) -> dict:
    return {item.name: item for item in fetch_prefix(container, prefix, folder, **kwargs)}


def test_downloads_every_blob_under_the_prefix_and_only_those(tmp_path, blob_service):
    container = blob_service.create_container("fetchtest")
    for name in ("202610/a.jpg", "202610/sub dir/é.png", "202611/other.jpg"):
        container.upload_blob(name, name.encode())
    items = _fetch(container, "202610/", tmp_path / "in")
    assert sorted(items) == ["a.jpg", "sub dir/é.png"]
    assert all(item.identity and item.failure is None for item in items.values())
    assert sorted(p.relative_to(tmp_path / "in").as_posix() for p in (tmp_path / "in").rglob("*") if p.is_file()) \
        == ["a.jpg", "sub dir/é.png"]
    assert (tmp_path / "in" / "a.jpg").read_bytes() == b"202610/a.jpg"


def test_an_attempt_keeps_files_with_the_same_etag_and_fetches_changed_ones(tmp_path, blob_service):
    container = blob_service.create_container("fetchkeep")
    container.upload_blob("m/a.jpg", b"12345")
    container.upload_blob("m/b.jpg", b"bbbbb")
    first = _fetch(container, "m/", tmp_path / "in")
    (tmp_path / "in" / "a.jpg").write_bytes(b"local")  # a marker: kept only if not fetched again
    container.upload_blob("m/b.jpg", b"changed", overwrite=True)
    container.delete_blob("m/a.jpg")
    container.upload_blob("m/a.jpg", b"12345")  # same bytes, new blob: a new ETag, so fetched again
    container.upload_blob("m/c.jpg", b"new")
    second = _fetch(container, "m/", tmp_path / "in")
    assert second["b.jpg"].identity != first["b.jpg"].identity
    assert (tmp_path / "in" / "a.jpg").read_bytes() == b"12345"
    assert (tmp_path / "in" / "b.jpg").read_bytes() == b"changed"
    (tmp_path / "in" / "c.jpg").write_bytes(b"marker")
    _fetch(container, "m/", tmp_path / "in")
    assert (tmp_path / "in" / "c.jpg").read_bytes() == b"marker"  # same ETag: not fetched a third time


def test_local_files_of_deleted_blobs_are_removed(tmp_path, blob_service):
    container = blob_service.create_container("fetchstale")
    container.upload_blob("m/a.jpg", b"a")
    container.upload_blob("m/gone.jpg", b"g")
    _fetch(container, "m/", tmp_path / "in")
    container.delete_blob("m/gone.jpg")
    assert sorted(_fetch(container, "m/", tmp_path / "in")) == ["a.jpg"]
    assert not (tmp_path / "in" / "gone.jpg").exists()


def test_names_a_local_disk_cannot_hold_are_items_with_a_reason_not_job_failures(tmp_path, blob_service):
    container = blob_service.create_container("fetchclash")
    long_segment = "x" * 300 + ".jpg"
    for name in ("m/x.jpg", "m/x.jpg/inner.jpg", f"m/{long_segment}", "m/ok.jpg", "m/a//b.jpg"):
        container.upload_blob(name, b"data")
    items = _fetch(container, "m/", tmp_path / "in")
    assert sorted(items) == sorted(["x.jpg", "x.jpg/inner.jpg", long_segment, "ok.jpg", "a//b.jpg"])
    assert items["ok.jpg"].failure is None
    clash = [items[name] for name in ("x.jpg", "x.jpg/inner.jpg") if items[name].failure]
    assert len(clash) == 1 and "a file and a folder of the same name" in clash[0].failure[1]
    assert "longer than the local filesystem allows" in items[long_segment].failure[1]
    assert "an empty, '.' or '..' path segment" in items["a//b.jpg"].failure[1]


def test_an_unreachable_store_fails_in_one_line_naming_it_after_the_outage_time(tmp_path):
    endpoint = "http://127.0.0.1:9/devstoreaccount1"  # nothing listens on the discard port
    connection_string = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                         f"AccountKey=a2V5;BlobEndpoint={endpoint};")
    with pytest.raises(StorageUnavailable) as raised:
        list(fetch_prefix(container_client(connection_string, "images"), "202610/", tmp_path / "in", outage_s=2))
    message = str(raised.value)
    assert message.startswith(f"the blob store at {endpoint}/images/202610/ did not answer for 2s; last error: ")
    assert "\n" not in message and "a2V5" not in message


def test_a_blob_deleted_or_replaced_after_listing_is_one_item_with_a_reason(tmp_path, blob_service, monkeypatch):
    container = blob_service.create_container("fetchrace")
    for name in ("m/a.jpg", "m/b.jpg", "m/c.jpg"):
        container.upload_blob(name, b"old")
    listed = blob_inputs._list

    def list_then_change(*args):
        page = list(listed(*args))
        container.delete_blob("m/a.jpg")
        container.upload_blob("m/b.jpg", b"new", overwrite=True)
        yield from page

    monkeypatch.setattr(blob_inputs, "_list", list_then_change)
    items = _fetch(container, "m/", tmp_path / "in")
    for changed in ("a.jpg", "b.jpg"):
        assert items[changed].failure[1].startswith("the blob was deleted or replaced while the month was being")
    assert items["c.jpg"].failure is None and (tmp_path / "in" / "c.jpg").read_bytes() == b"old"
    assert not (tmp_path / "in" / "b.jpg").exists()  # the listed identity never meets other bytes


def test_unsafe_names_are_refused_as_paths():
    assert safe_relative_path("a/b.jpg").as_posix() == "a/b.jpg"
    assert safe_relative_path("a\\b.jpg").as_posix() == "a\\b.jpg"  # a backslash is a character on Linux
    for name in ("../x.jpg", "/etc/passwd", "a/../../b", "", "./a.jpg", "a//b.jpg", "dir/"):
        assert safe_relative_path(name) is None, name


def test_the_listing_follows_every_page_with_xml_special_names_and_the_sdks_etags(tmp_path, blob_service,
                                                                               monkeypatch):
    container = blob_service.create_container("fetchpages")
    names = ["a&b.jpg", "c<d>.jpg", "e \"quoted\" 'x'.jpg", "f é ü.jpg", "g/h.jpg"]
    for name in names:
        container.upload_blob(f"m/{name}", name.encode())
    container.upload_blob("n/other.jpg", b"x")
    monkeypatch.setattr(blob_inputs, "_PAGE_SIZE", 2)  # three pages for five blobs
    items = _fetch(container, "m/", tmp_path / "in")
    assert sorted(items) == sorted(names) and all(item.failure is None for item in items.values())
    sdk_etags = {blob.name[2:]: blob.etag for blob in container.list_blobs(name_starts_with="m/")}
    assert {name: item.identity for name, item in items.items()} == sdk_etags  # identities as before: rows reusable
    assert (tmp_path / "in" / "c<d>.jpg").read_bytes() == b"c<d>.jpg"


def test_a_name_the_service_percent_encodes_is_decoded(monkeypatch, blob_service):
    """Names with characters XML cannot carry come back Encoded="true" (Azure; Azurite cannot list them)."""
    reader = blob_inputs.SignedReader(blob_service.get_container_client("any"), threads=1)

    class Listing:
        status, headers = 200, {}
        data = (b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs>'
                b'<Blob><Name Encoded="true">m%2Fbell%07.jpg</Name><Properties><Etag>0x1</Etag></Properties></Blob>'
                b'<Blob><Name>m/plain.jpg</Name><Properties><Etag>0x2</Etag></Properties></Blob>'
                b'</Blobs><NextMarker>2!next</NextMarker></EnumerationResults>')

    monkeypatch.setattr(reader._pool, "request", lambda *args, **kwargs: Listing())
    assert reader.list_page("m/", None) == ([("m/bell\x07.jpg", "0x1"), ("m/plain.jpg", "0x2")], "2!next")


class _Answer:
    def __init__(self, status: int, code: str):
        self.status, self.headers, self.data = status, {"x-ms-error-code": code}, b""


def _answering_listings_with(monkeypatch, answers):
    """The store's first listing answers are `answers` (status, error code); then the real store answers."""
    import urllib3

    pending, real_request = list(answers), urllib3.PoolManager.request

    def request(pool, method, url, *args, **kwargs):
        if "comp=list" in url and pending:
            return _Answer(*pending.pop(0))
        return real_request(pool, method, url, *args, **kwargs)

    monkeypatch.setattr(urllib3.PoolManager, "request", request)


def test_a_busy_or_throttling_store_is_asked_again(tmp_path, blob_service, monkeypatch):
    container = blob_service.create_container("fetchbusy")
    container.upload_blob("m/a.jpg", b"x")
    _answering_listings_with(monkeypatch, [(503, "ServerBusy"), (429, "")])
    assert list(_fetch(container, "m/", tmp_path / "in")) == ["a.jpg"]


def test_a_refused_listing_fails_at_once_in_one_line_naming_the_reason(tmp_path, blob_service, monkeypatch):
    from azure.core.exceptions import HttpResponseError

    container = blob_service.create_container("fetchrefused")
    container.upload_blob("m/a.jpg", b"x")
    _answering_listings_with(monkeypatch, [(403, "AuthorizationPermissionMismatch")])
    with pytest.raises(HttpResponseError) as raised:
        _fetch(container, "m/", tmp_path / "in")
    assert str(raised.value) == ("the blob store refused to list 'm/': HTTP 403 AuthorizationPermissionMismatch; "
                                 "the credential may lack read and list access to the container, or its signature "
                                 "expired")
