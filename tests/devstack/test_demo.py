"""`make demo` and `make airflow` put the month in Azurite: a second start uploads nothing that is already there."""

from devstack.demo import upload_month


def test_a_second_upload_of_the_month_leaves_every_blob_and_etag_as_it_was(tmp_path, blob_service):
    month = tmp_path / "202610"
    (month / "circle").mkdir(parents=True)
    for index in range(3):
        (month / "circle" / f"{index}.png").write_bytes(f"image {index}".encode())
    assert upload_month(blob_service, month, "202610", container="demo-upload") == 3
    container = blob_service.get_container_client("demo-upload")
    etags = {blob.name: blob.etag for blob in container.list_blobs()}

    assert upload_month(blob_service, month, "202610", container="demo-upload") == 0
    assert {blob.name: blob.etag for blob in container.list_blobs()} == etags  # rows keyed on ETags stay valid

    (month / "circle" / "1.png").write_bytes(b"changed")
    (month / "circle" / "9.png").write_bytes(b"new")
    assert upload_month(blob_service, month, "202610", container="demo-upload") == 2
    after = {blob.name: blob.etag for blob in container.list_blobs()}
    assert after["202610/circle/0.png"] == etags["202610/circle/0.png"]
    assert after["202610/circle/1.png"] != etags["202610/circle/1.png"]
