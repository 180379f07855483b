"""Azurite, the Azure Storage emulator, as the embedded default's blob store on 127.0.0.1."""

from __future__ import annotations

import argparse
import dataclasses
import socket
import time
from pathlib import Path

from localml.process_group import start_group, stop_pidfile

PROJECT_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = PROJECT_ROOT / "tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's documented, public development account: not a secret of anyone's.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEFAULT_PORT = 10000


@dataclasses.dataclass(frozen=True)
class Azurite:
    host: str
    port: int

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self.host}:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )


def start(location: Path, *, port: int = DEFAULT_PORT, host: str = "127.0.0.1", timeout_s: float = 60) -> Azurite:
    """Start Azurite's blob service with its data in `location`; returns once it accepts connections."""
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"Azurite is not installed at {AZURITE_BIN}: run `make setup` first")
    location.mkdir(parents=True, exist_ok=True)
    pidfile = location / "azurite.pid"
    stop_pidfile(pidfile)  # a leftover from a run that was killed
    if _listening(host, port):
        raise RuntimeError(f"{host}:{port} is already in use by another program; pick another port for Azurite")
    start_group(
        [str(AZURITE_BIN), "--blobHost", host, "--blobPort", str(port), "--location", str(location),
         # No access log, and no telemetry: nothing here calls out of the machine.
         "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry"],
        pidfile=pidfile, logfile=location / "azurite.log",
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _listening(host, port):
            return Azurite(host, port)
        time.sleep(0.2)
    stop_pidfile(pidfile)
    raise RuntimeError(f"Azurite did not listen on {host}:{port} within {timeout_s:.0f}s; see {location / 'azurite.log'}")


def _listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def stop(location: Path) -> None:
    stop_pidfile(location / "azurite.pid")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("--location", type=Path, default=PROJECT_ROOT / ".state" / "azurite")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args()
    if args.action == "start":
        azurite = start(args.location, port=args.port)
        print(f"Azurite blob service on {azurite.blob_endpoint} (data in {args.location})")
    else:
        stop(args.location)
        print("Azurite stopped")


if __name__ == "__main__":
    main()
