"""Fetching a blob month folder: streamed, resumable, unsafe names reported, never a half file inside."""

from scoring.blob_inputs import download_prefix, safe_relative_path


def test_downloads_every_blob_under_the_prefix_and_only_those(tmp_path, blob_service):
    container = blob_service.create_container("fetchtest")
    for name in ("202610/a.jpg", "202610/sub dir/é.png", "202611/other.jpg"):
        container.upload_blob(name, name.encode())
    count, unsafe = download_prefix(container, "202610/", tmp_path / "in")
    assert (count, unsafe) == (2, {})
    assert sorted(p.relative_to(tmp_path / "in").as_posix() for p in (tmp_path / "in").rglob("*") if p.is_file()) \
        == ["a.jpg", "sub dir/é.png"]
    assert (tmp_path / "in" / "a.jpg").read_bytes() == b"202610/a.jpg"


def test_files_already_fetched_are_kept(tmp_path, blob_service):
    container = blob_service.create_container("fetchkeep")
    container.upload_blob("m/a.jpg", b"12345")
    download_prefix(container, "m/", tmp_path / "in")
    (tmp_path / "in" / "a.jpg").write_bytes(b"54321")  # same size: not fetched again
    download_prefix(container, "m/", tmp_path / "in")
    assert (tmp_path / "in" / "a.jpg").read_bytes() == b"54321"


def test_unsafe_names_are_reported_not_written():
    assert safe_relative_path("a/b.jpg").as_posix() == "a/b.jpg"
    for name in ("../x.jpg", "/etc/passwd", "a/../../b", "a\\\\b.jpg", "", "./a.jpg", "a//b.jpg", "dir/"):
        assert safe_relative_path(name) is None, name
