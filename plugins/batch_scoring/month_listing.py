"""A month's input blobs as the publish step and the folder check see them: image ids, and a fingerprint."""

from __future__ import annotations

from collections.abc import Iterator

from scoring.items import encode_name, is_input


class MonthListing:
    """The month's blobs as image ids (relative to the month folder), listed afresh on each iteration."""

    def __init__(self, container_client, month: str):
        self._container, self._prefix = container_client, f"{month}/"

    def __iter__(self) -> Iterator[str]:
        for blob in self._container.list_blobs(name_starts_with=self._prefix):
            name = encode_name(blob.name[len(self._prefix):])
            if is_input(name):
                yield name


def month_fingerprint(container_client, month: str) -> tuple[int, str]:
    """(input blob count, digest of every input blob's name and ETag under `<month>/`): the folder check's
    listing (`batch_scoring.completeness.folder_state`)."""
    from batch_scoring.completeness import folder_state

    state = folder_state(container_client, month)
    return state.items, state.fingerprint
