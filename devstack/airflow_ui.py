"""`make airflow`: the Airflow UI on http://127.0.0.1:8080 over the embedded default, until Ctrl-C.

Starts Azurite, PostgreSQL (Airflow's metadata database) and `airflow standalone`
(scheduler, api-server, dag-processor, triggerer) each in its own process group, with the demo month and model in
place. Ctrl-C or SIGTERM stops every group: SIGTERM, then SIGKILL after a grace
period, since standalone's children outlive a polite stop.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
import urllib.request
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from devstack import azurite as azurite_service
from devstack import postgres
from devstack.demo import AIRFLOW_HOME, STATE, prepare
from localml.process_group import start_group, stop_pidfile

log = logging.getLogger("airflow-ui")
PIDFILE = STATE / "airflow-standalone.pid"


def _stop_like_ctrl_c(_signum, _frame) -> None:
    raise KeyboardInterrupt


def wait_until_up(url: str, timeout_s: float, logfile: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"Airflow did not answer on {url} within {timeout_s:.0f}s; see {logfile}")


def ui_env(env: dict[str, str], port: int) -> dict[str, str]:
    """What `airflow standalone` needs beyond the embedded default's environment: its address and a triggerer."""
    return {
        **env,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        # Workers report to the API server; its default address assumes port 8080.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "true",  # standalone runs a triggerer
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
    }


def start_standalone(env: dict[str, str], port: int, *, pidfile: Path, logfile: Path, timeout_s: float = 240) -> str:
    """`airflow standalone` in its own process group; returns its URL once the API answers."""
    start_group([sys.executable, "-m", "airflow", "standalone"], pidfile=pidfile, logfile=logfile,
                env=ui_env(env, port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/api/v2/version", timeout_s=timeout_s, logfile=logfile)
    except BaseException:
        stop_pidfile(pidfile, grace_s=60)
        raise
    return url


def admin_password(airflow_home: Path) -> str:
    """The password `airflow standalone` generated for `admin` (simple auth manager)."""
    import json

    return json.loads((airflow_home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--month", default="202610")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--check", action="store_true", help="start, check the UI answers, stop")
    args = parser.parse_args()

    stop_pidfile(PIDFILE, grace_s=60)  # leftovers of a run that was killed
    azurite = azurite_service.start(STATE / "azurite")
    try:
        # The scheduler, the API server and the triggerer write at once: PostgreSQL, as the compose stack has.
        database = postgres.start(STATE / "postgres", port=azurite_service.free_port())
        env = prepare(BlobServiceClient.from_connection_string(azurite.connection_string), azurite, args.month,
                      api_url=f"http://127.0.0.1:{args.port}", database_url=database.sqlalchemy_url)
        url = start_standalone(env, args.port, pidfile=PIDFILE, logfile=STATE / "airflow-standalone.log")
        passwords = Path(AIRFLOW_HOME) / "simple_auth_manager_passwords.json.generated"
        print(f"\nAirflow UI: {url}  (user admin, password in {passwords})")
        print("Trigger 'monthly_batch_scoring' with a month, or backfill a range from the DAG page. Ctrl-C stops.\n")
        if not args.check:
            signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    finally:
        log.info("stopping Airflow, PostgreSQL and Azurite")
        stop_pidfile(PIDFILE, grace_s=60)
        postgres.stop(STATE / "postgres")
        azurite_service.stop(STATE / "azurite")
    return 0


if __name__ == "__main__":
    sys.exit(main())
