"""Where a blob folder is, said without its credentials: for reports, logs, pages and manifests.

A container URL can carry a shared access signature (`?sv=…&sig=…`) when the
connection was made from a SAS connection string: anyone who reads the URL can
use it. Whatever a person or a published file sees names the account, the
container and the folder, never the query string. The one exception is the
job's own read-only credential, which travels through a process environment only.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit, urlunsplit


def unsigned_url(url: str) -> str:
    """`url` without its query string and fragment, where a SAS would sit."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclasses.dataclass(frozen=True)
class BlobFolder:
    """A folder of a container: printable anywhere, no secret in it."""

    account: str
    container: str
    prefix: str  # "202610/" (ends with "/"), or "" for the whole container
    container_url: str  # without any query string

    @classmethod
    def of(cls, container_client, prefix: str) -> BlobFolder:
        return cls(account=container_client.account_name, container=container_client.container_name,
                   prefix=prefix, container_url=unsigned_url(container_client.url))

    @property
    def url(self) -> str:
        return f"{self.container_url}/{self.prefix}"

    def describe(self) -> str:
        return f"container {self.container!r}, folder {self.prefix or '/'} on storage account {self.account!r}"

    def list_command(self) -> str:
        """How a person with read access lists it (Entra ID sign-in; no key or signature in the command)."""
        return (f"az storage blob list --account-name {self.account} --container-name {self.container} "
                f"--prefix {self.prefix} --auth-mode login --output table")
