"""The fault suite's cases: bad input, odd names, killed processes, a dead blob store, changed months.

Each returns one table row (`faults.harness.Row`); `CASES` is the suite in its order.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from faults.harness import (
    EITHER,
    ERROR,
    OK,
    PROJECT_ROOT,
    JobBench,
    Row,
    Suite,
    cli,
    image,
    one_line_error,
    read_rows,
    runner_case,
    tally,
)


def case_bad_files(suite: Suite) -> Row:
    """Broken, hostile and unusual files: each costs one row, the good ones are scored."""
    from PIL import Image

    folder = suite.root / "bad-files" / "202610"
    folder.mkdir(parents=True)
    good = {"rgb.jpg": image(), "gray.png": image("PNG", mode="L"), "alpha.png": image("PNG", mode="RGBA"),
            "sixteen.png": image("PNG", mode="I;16"), "cmyk.jpg": image("JPEG", mode="CMYK"),
            "anim.gif": image("GIF", mode="P"), "progressive.jpg": image(progressive=True)}
    bad = {"empty.jpg": b"", "truncated.jpg": image(size=(400, 400))[:300], "garbage.png": os.urandom(2048),
           "notes.txt": b"not an image\n"}
    for name, data in {**good, **bad}.items():
        (folder / name).write_bytes(data)
    Image.new("L", (1, 10_000_000)).save(folder / "strip-1x10M.png", optimize=True)
    for index in range(8):
        Image.new("L", (1, 100_000)).save(folder / f"thin-{index}.png", optimize=True)
    Image.new("1", (20_000, 20_000)).save(folder / "bomb.png", optimize=True)
    expected = {**{n: OK for n in good}, **{n: ERROR for n in bad}, "strip-1x10M.png": ERROR, "bomb.png": ERROR,
                **{f"thin-{i}.png": ERROR for i in range(8)}}
    out = suite.root / "bad-files" / "out"
    result = cli("--input", str(folder), "--model", str(suite.model_dir), "--out", str(out), "--error_threshold", "-1")
    return tally("bad and hostile files", "cli", expected, out, f"exit {result.returncode}", result.returncode == 0)


def case_odd_paths(suite: Suite) -> Row:
    """Names no CSV likes and entries that are no files: each one row, nothing outside the folder read."""
    folder = suite.root / "odd-paths" / "202610"
    folder.mkdir(parents=True)
    names = [b"caf\xe9-latin1.jpg", b"line\rbreak.jpg", b"new\nline.jpg", b'quo"te, comma.jpg', b"=1+1.jpg",
             b"-minus.jpg", b"tab\there.jpg", b"back\\slash.jpg", "é😀.jpg".encode()]
    for raw in names:
        with open(os.path.join(os.fsencode(folder), raw), "wb") as handle:
            handle.write(image())
    (folder / "etc-passwd").symlink_to("/etc/passwd")
    (folder / "dangling.jpg").symlink_to(suite.root / "nowhere.jpg")
    (folder / "folder-link").symlink_to("/etc")
    (folder / "loop").symlink_to(folder)
    os.mkfifo(folder / "pipe.jpg")
    from scoring.items import encode_name

    expected = {encode_name(os.fsdecode(raw)): OK for raw in names}
    expected.update({name: ERROR for name in ("etc-passwd", "dangling.jpg", "folder-link", "loop", "pipe.jpg")})
    out = suite.root / "odd-paths" / "out"
    result = cli("--input", str(folder), "--model", str(suite.model_dir), "--out", str(out))
    leaked = "root:" in (out / "predictions.csv").read_text() + (out / "errors.csv").read_text()
    return tally("odd names, links, loop, FIFO", "cli", expected, out, f"exit {result.returncode}",
                 result.returncode == 0, extra_check=not leaked)


def case_rerun_other_month_and_model(suite: Suite) -> Row:
    """Reruns on the same --out: another month, then another model version, rescore all; the same again reuses all."""
    import json

    folder = suite.root / "rerun" / "in"
    folder.mkdir(parents=True)
    for index in range(5):
        (folder / f"{index}.jpg").write_bytes(image())
    version_2 = suite.root / "rerun" / "model-v2"
    shutil.copytree(suite.model_dir, version_2)
    metadata = json.loads((version_2 / "metadata.json").read_text())
    (version_2 / "metadata.json").write_text(json.dumps({**metadata, "version": "2"}))
    out = suite.root / "rerun" / "out"
    common = ("--input", str(folder), "--out", str(out))
    cli(*common, "--model", str(suite.model_dir), "--month", "202601")
    other_month = cli(*common, "--model", str(suite.model_dir), "--month", "202602")
    other_model = cli(*common, "--model", str(version_2), "--month", "202602")
    same_again = cli(*common, "--model", str(version_2), "--month", "202602")
    stamps = {(row["month"], row["model_version"]) for row in read_rows(out / "predictions.csv")}
    right = (stamps == {("202602", "2")} and "(0 rows reused)" in other_month.stderr
             and "(0 rows reused)" in other_model.stderr and "(5 rows reused)" in same_again.stderr)
    return tally("rerun: other month, other model", "cli", {f"{i}.jpg": OK for i in range(5)}, out,
                 f"exit {same_again.returncode}", same_again.returncode == 0, note=f"rows {sorted(stamps)}",
                 extra_check=right)


def case_unreadable_folder(suite: Suite) -> Row:
    """A sub-folder that cannot be listed: one row for it, the rest scored. Root lists every folder, so the
    refusal is simulated where the kernel would give it, in `os.scandir`."""
    from unittest import mock

    from scoring.items import walk_folder
    from scoring.job_settings import JobSettings
    from scoring.parallel_runner import ParallelJob, run_parallel_job

    folder = suite.root / "unreadable" / "202610"
    (folder / "locked").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "locked/hidden.jpg"):
        (folder / name).write_bytes(image())
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    out = suite.root / "unreadable" / "out"
    settings = JobSettings(max_concurrency_per_instance=1)
    job = ParallelJob(
        entry_script=PROJECT_ROOT / "scoring" / "entry.py", code_root=PROJECT_ROOT, input_root=folder,
        work_dir=suite.root / "unreadable" / "work", output_dir=out, scoring_key="faults", settings=settings,
        program_arguments=("--model_dir", str(suite.model_dir), "--month", "202610", "--input_root", str(folder),
                           *settings.program_arguments()))
    with mock.patch.object(os, "scandir", scandir):
        run_parallel_job(job, walk_folder(folder))
    message = next(r["message"] for r in read_rows(out / "errors.csv") if r["image"] == "locked")
    return tally("unreadable sub-folder (simulated)", "runner", {"a.jpg": OK, "b.jpg": OK, "locked": ERROR}, out,
                 "completed", True, note=message[:70])


def case_disk_full(suite: Suite) -> Row:
    """--out on a full disk: one line, no traceback; with room again, a rerun completes with nothing duplicated."""
    base = suite.root / "disk-full"
    folder, out = base / "in", base / "out"
    folder.mkdir(parents=True)
    out.mkdir()
    names = [f"{index:03d}-{'long-name-' * 12}.jpg" for index in range(120)]
    for name in names:
        (folder / name).write_bytes(image())
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(out)], capture_output=True)
    if mounted.returncode != 0:
        return Row("disk full, then room again", "cli", exit="not run", passed=True,
                   note=f"skipped: this machine refuses a tmpfs mount ({mounted.stderr.decode().strip()[:60]})")
    try:
        full = cli("--input", str(folder), "--model", str(suite.model_dir), "--out", str(out))
        subprocess.run(["mount", "-o", "remount,size=64m", str(out)], check=True)
        again = cli("--input", str(folder), "--model", str(suite.model_dir), "--out", str(out))
        row = tally("disk full, then room again", "cli", {name: OK for name in names}, out,
                    f"exit {full.returncode}, then {again.returncode}", full.returncode == 1 and again.returncode == 0,
                    note=full.stderr.strip().splitlines()[-1][:80] if full.stderr.strip() else "",
                    extra_check=one_line_error(full) and "No space left on device" in full.stderr)
    finally:
        subprocess.run(["umount", str(out)], capture_output=True)
    return row


def case_unwritable_out(suite: Suite) -> Row:
    folder = suite.root / "unwritable" / "in"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(image())
    (suite.root / "unwritable" / "out").write_text("a file where --out should be")
    result = cli("--input", str(folder), "--model", str(suite.model_dir), "--out", str(suite.root / "unwritable" / "out"))
    return Row("--out not writable", "cli", exit=f"exit {result.returncode}",
               passed=result.returncode == 1 and one_line_error(result), note=result.stderr.strip()[-90:])


def case_bad_model_metadata(suite: Suite) -> Row:
    import json

    model = suite.root / "bad-model"
    shutil.copytree(suite.model_dir, model)
    metadata = json.loads((model / "metadata.json").read_text())
    metadata["preprocessing"]["resize"] = 0
    (model / "metadata.json").write_text(json.dumps(metadata))
    folder = suite.root / "bad-model-in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(image())
    result = cli("--input", str(folder), "--model", str(model), "--out", str(suite.root / "bad-model-out"))
    return Row("model metadata resize: 0", "cli", exit=f"exit {result.returncode}",
               passed=result.returncode == 1 and one_line_error(result) and "resize=0" in result.stderr,
               note=result.stderr.strip().splitlines()[-1][:90] if result.stderr.strip() else "")


def case_storage_outage(suite: Suite) -> Row:
    """The blob store dies mid-download: the run fails within the outage time, in one line naming it."""
    from azure.storage.blob import BlobServiceClient

    from devstack import azurite

    location = suite.root / "outage-azurite"
    service = azurite.start(location, port=azurite.free_port())
    try:
        container = BlobServiceClient.from_connection_string(service.connection_string).create_container("outage")
        for index in range(400):
            container.upload_blob(f"202610/{index:04d}.jpg", image(size=(600, 600)))
        out = suite.root / "outage-out"
        process = subprocess.Popen(
            [sys.executable, "-m", "scoring", "score", "--input", f"{service.blob_endpoint}/outage/202610",
             "--model", str(suite.model_dir), "--out", str(out), "--storage_timeout", "5"],
            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "AZURE_STORAGE_CONNECTION_STRING":
                 service.connection_string})
        inputs = out / ".scoring-work" / "inputs"
        deadline = time.monotonic() + 60
        while not (inputs.is_dir() and any(inputs.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        azurite.stop(location)
    stopped = time.monotonic()
    try:
        _stdout, stderr = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        process.kill()
        return Row("blob store dies mid-download", "cli", exit="hung", note="no exit 180 s after the outage")
    seconds = time.monotonic() - stopped
    result = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    named = f"the blob store at {service.blob_endpoint}/outage/202610/ did not answer for 5s" in stderr
    return Row("blob store dies mid-download", "cli", exit=f"exit {process.returncode} after {seconds:.0f}s",
               passed=process.returncode == 1 and one_line_error(result) and named,
               note=stderr.strip().splitlines()[-1][:90] if stderr.strip() else "")


# ---- cases on the runner, with faults injected into the real entry script ----------------------------------


def case_exotic_exception(suite: Suite) -> Row:
    return runner_case(suite, "decoder-raises-an-unknown-type", "00-exotic.jpg")


def case_worker_killed(suite: Suite) -> Row:
    return runner_case(suite, "a-file-kills-its-worker", "07-killer.jpg", max_retries=1)


def case_hung_file(suite: Suite) -> Row:
    return runner_case(suite, "a-file-hangs-its-worker", "11-hang.jpg", max_retries=0, timeout=4)


# ---- cases on the local backend's job, through the operators, on Azurite ------------------------------------


def case_blob_names(suite: Suite) -> Row:
    """Blob names a local disk cannot hold next to each other, or at all: per-item, never the job."""
    bench = JobBench(suite, "blob-names")
    long_name = "x" * 304 + ".jpg"
    files = {"ok.jpg": image(), "x.jpg": image(), "x.jpg/inner.jpg": image(), long_name: image(),
             "a//b.jpg": image(), "semi;colon,comma.jpg": image(), 'quo"te.jpg': image()}
    bench.upload(files)
    name, _details = bench.score()
    expected = {"ok.jpg": OK, "x.jpg": EITHER, "x.jpg/inner.jpg": EITHER, long_name: ERROR, "a//b.jpg": ERROR,
                "semi;colon,comma.jpg": OK, 'quo"te.jpg': OK}
    clash = [r for r in read_rows(bench.outputs(name) / "errors.csv") if r["image"].startswith("x.jpg")]
    return tally("blob names a disk cannot hold", "job", expected, bench.outputs(name),
                 bench.backend.get_job(name).status, True, extra_check=len(clash) == 1)


def case_replaced_files(suite: Suite) -> Row:
    """Broken files replaced by good ones under the same names: the next run rescores exactly those."""
    bench = JobBench(suite, "replaced-files")
    bench.upload({**{f"good{i}.jpg": image() for i in range(4)}, **{f"fixme{i}.jpg": b"broken" for i in range(3)}})
    first, _ = bench.score()
    bench.upload({f"fixme{i}.jpg": image() for i in range(3)})
    second, details = bench.score()
    progress = details["progress"]
    right = second != first and progress["reused"] == 4
    return tally("broken files replaced, same names", "job", {**{f"good{i}.jpg": OK for i in range(4)},
                 **{f"fixme{i}.jpg": OK for i in range(3)}}, bench.outputs(second),
                 bench.backend.get_job(second).status, True, note=f"{second}: reused {progress['reused']}",
                 extra_check=right)


def case_late_blob(suite: Suite) -> Row:
    """A blob landing after the month completed: the next run scores it, never 'already scored' forever."""
    bench = JobBench(suite, "late-blob")
    bench.upload({f"{i}.jpg": image() for i in range(5)})
    bench.score()
    bench.upload({"late.jpg": image()})
    name, details = bench.score()
    expected = {**{f"{i}.jpg": OK for i in range(5)}, "late.jpg": OK}
    return tally("blob lands after completion", "job", expected, bench.outputs(name),
                 bench.backend.get_job(name).status, True, note=f"{name}: reused {details['progress']['reused']}",
                 extra_check=details["progress"]["reused"] == 5)


def case_job_killed_then_retried(suite: Suite) -> Row:
    """The job process SIGKILLed; the wait fails; Airflow's retry of the wait submits -r1 and finishes the month."""
    from localml.workspace import read_json

    bench = JobBench(suite, "job-killed")
    bench.upload({f"{i:03d}.png": image("PNG", size=(300, 300)) for i in range(120)})
    name, pushed = bench._operate("submit")
    rows = bench.backend.workspace.month_dir(bench.container_name, f"{bench.month}/") / "rows"
    deadline = time.monotonic() + 120
    while not (rows.is_dir() and len(list(rows.glob("*.jsonl"))) >= 3) and time.monotonic() < deadline:
        time.sleep(0.02)
    process = read_json(bench.backend.workspace.job_dir(name) / "process.json")
    os.killpg(process["pid"], signal.SIGKILL)
    try:
        bench._operate("wait", job_name=name, job_spec=pushed["job_spec"], try_number=1)
        first_try = "completed?!"
    except Exception as error:  # noqa: BLE001 - the first try must fail
        first_try = type(error).__name__
    event, _ = bench._operate("wait", job_name=name, job_spec=pushed["job_spec"], try_number=2)
    final = event["job_name"]
    reused = bench.backend.get_job(final).details["progress"]["reused"]
    return tally("job SIGKILLed, wait retried", "job", {f"{i:03d}.png": OK for i in range(120)},
                 bench.outputs(final), f"try 1 {first_try}, try 2 {event['job_status']}", True,
                 note=f"{final}: reused {reused}", extra_check=final.endswith("-r1") and reused > 0)


def case_cancel_mid_month(suite: Suite) -> Row:
    """A cancelled job: Canceled at once, and none of its processes (job, workers, download threads) left."""
    from localml.jobs import PROCESS_FILE
    from localml.workspace import read_json

    bench = JobBench(suite, "cancel")
    bench.upload({f"{i:03d}.png": image("PNG", size=(400, 400)) for i in range(150)})
    name, _pushed = bench._operate("submit")
    progress = bench.backend.workspace.job_dir(name) / "progress.json"
    deadline = time.monotonic() + 60
    while not (read_json(progress) or {}).get("items_done") and time.monotonic() < deadline:
        time.sleep(0.05)
    process = read_json(bench.backend.workspace.job_dir(name) / PROCESS_FILE)
    started = time.monotonic()
    status = bench.backend.cancel_job(name).status
    seconds = time.monotonic() - started
    try:
        os.killpg(process["pid"], 0)
        left = "processes left"
    except ProcessLookupError:
        left = "nothing left"
    return Row("job cancelled mid-month", "job", exit=f"{status} in {seconds:.1f}s, {left}",
               passed=status == "Canceled" and left == "nothing left")


def case_shared_job_other_run_killed(suite: Suite) -> Row:
    """Two runs share a month's job; killing the one that only reattached leaves it to the other."""
    from batch_scoring.operators.azure_ml import AzureMLWaitForJobOperator

    bench = JobBench(suite, "shared-job")
    bench.upload({f"{i:02d}.png": image("PNG", size=(300, 300)) for i in range(60)})
    name, pushed = bench._operate("submit", run_id="scheduled")
    other = AzureMLWaitForJobOperator(task_id="wait", azure_ml_conn_id=bench.conn_id, job_name=name,
                                      poll_interval=0.2, deferrable=False)
    waiting = threading.Thread(target=other.execute, args=(bench.context({}, run_id="manual"),), daemon=True)
    waiting.start()
    time.sleep(1.0)
    other.on_kill()  # Airflow kills the manual run's wait while it polls
    status_after_kill = bench.backend.get_job(name).status
    event, _ = bench._operate("wait", job_name=name, job_spec=pushed["job_spec"], run_id="scheduled")
    return tally("one of two runs killed", "job", {f"{i:02d}.png": OK for i in range(60)}, bench.outputs(name),
                 f"{status_after_kill} after the kill, then {event['job_status']}", event["job_status"] == "Completed",
                 extra_check=status_after_kill not in ("Canceled", "CancelRequested"))


# ---- the third reliability pass: one case per defect it found ----------------------------------------------


def case_sas_connection(suite: Suite) -> Row:
    """wasb_default is a SAS connection string: the month publishes, and its signature is in no published blob,
    job file or log."""
    import datetime as dt
    from urllib.parse import parse_qs

    from azure.storage.blob import AccountSasPermissions, BlobServiceClient, ResourceTypes, generate_account_sas

    from batch_scoring.hooks.azure_ml import AzureMLHook
    from batch_scoring.publish_step import publish_scored_month
    from devstack.azurite import ACCOUNT, ACCOUNT_KEY

    sas = generate_account_sas(ACCOUNT, ACCOUNT_KEY, ResourceTypes(service=True, container=True, object=True),
                               AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True,
                                                     create=True),
                               expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2))
    signature = parse_qs(sas)["sig"][0]
    connection_string = f"BlobEndpoint={suite.blob_endpoint};SharedAccessSignature={sas}"
    bench = JobBench(suite, "sas-connection", connection_string=connection_string)
    files = {f"{i}.png": image("PNG") for i in range(4)}
    bench.upload(files)
    name, _details = bench.score()
    service = BlobServiceClient.from_connection_string(connection_string)
    predictions = service.get_container_client(f"{bench.container_name}-out")
    publish_scored_month(workspace=AzureMLHook(azure_ml_conn_id=bench.conn_id), images=bench.container,
                         predictions=predictions, month=bench.month, job={"job_name": name}, model_name="m",
                         model_version="1")
    published = [predictions.download_blob(blob.name).readall() for blob in predictions.list_blobs()]
    job_files = [p.read_bytes() for p in bench.backend.workspace.job_dir(name).rglob("*") if p.is_file()]
    leaks = sum(signature.encode() in data for data in published + job_files)
    return tally("SAS connection: month published", "job", {n: OK for n in files}, bench.outputs(name),
                 f"{len(published)} blobs published, {leaks} carry the signature", len(published) == 4,
                 note=f"{len(job_files)} job files checked", extra_check=leaks == 0)


def case_clock_step(suite: Suite) -> Row:
    """The wall clock steps by 90 s while the job scores: it is still Running, and the month ends in one attempt."""
    import psutil._pslinux

    bench = JobBench(suite, "clock-step")
    names = [f"{i:03d}.png" for i in range(80)]
    bench.upload({n: image("PNG", size=(300, 300)) for n in names})
    name, pushed = bench._operate("submit")
    deadline = time.monotonic() + 120
    while bench.backend.get_job(name).status != "Running" and time.monotonic() < deadline:
        time.sleep(0.05)  # the step lands on a job that is scoring
    real_boot_time = psutil._pslinux.boot_time
    psutil._pslinux.boot_time = lambda: real_boot_time() + 90.0  # as psutil reads it after a VM pause
    try:
        status_after_step = bench.backend.get_job(name).status
        event, _ = bench._operate("wait", job_name=name, job_spec=pushed["job_spec"])
    finally:
        psutil._pslinux.boot_time = real_boot_time
    attempts = [job.name for job in bench.backend.job_attempts(name)]
    return tally("clock steps while the job runs", "job", {n: OK for n in names}, bench.outputs(event["job_name"]),
                 f"{status_after_step} after the step, then {event['job_status']}",
                 status_after_step == "Running" and attempts == [name],
                 note=f"attempts: {', '.join(attempts)}")


def case_weights_changed_mid_run(suite: Suite) -> Row:
    """The model file is replaced while the CLI scores: every row comes from the bytes the run started with, and a
    rerun with the original model reuses only rows of that model."""
    model = suite.root / "changing-model"
    shutil.copytree(suite.model_dir, model)
    original = (model / "weights.pt").read_bytes()
    folder = suite.root / "changing-model-in" / "202610"
    folder.mkdir(parents=True)
    names = [f"{i:03d}.jpg" for i in range(300)]
    for n in names:
        (folder / n).write_bytes(image(size=(200, 200)))
    out = suite.root / "changing-model-out"
    process = subprocess.Popen([sys.executable, "-m", "scoring", "score", "--input", str(folder), "--model",
                                str(model), "--out", str(out), "--mini_batch_size", "8",
                                "--max_concurrency_per_instance", "2"], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    rows = out / ".scoring-work" / "rows"
    deadline = time.monotonic() + 120
    while not (rows.is_dir() and any(rows.glob("*.jsonl"))) and time.monotonic() < deadline:
        time.sleep(0.02)
    import torch

    state = torch.load(model / "weights.pt", weights_only=True)
    torch.save({key: value + 1 if value.is_floating_point() else value for key, value in state.items()},
               model / "weights.pt")
    process.communicate(timeout=600)
    (model / "weights.pt").write_bytes(original)
    rerun = cli("--input", str(folder), "--model", str(model), "--out", str(out))
    import json

    digests = {json.loads(line).get("model_digest") for path in rows.glob("*.jsonl")
               for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    reused = "(300 rows reused)" in rerun.stderr
    return tally("weights replaced mid-run", "cli", {n: OK for n in names}, out, f"exit {process.returncode}, "
                 f"rerun exit {rerun.returncode}", process.returncode == 0 and rerun.returncode == 0,
                 note="rerun reused every row of the original bytes" if reused else "rerun rescored",
                 extra_check=reused and len(digests) == 1)


def case_replaced_in_place_same_size_and_time(suite: Suite) -> Row:
    """Files replaced by `cp -p` (same size and modification time, new bytes) are rescored on resume."""
    folder = suite.root / "cp-p-in" / "202610"
    folder.mkdir(parents=True)
    for i in range(6):
        (folder / f"{i}.jpg").write_bytes(b"x" * 400)  # not images: error rows
    out = suite.root / "cp-p-out"
    cli("--input", str(folder), "--model", str(suite.model_dir), "--out", str(out), "--error_threshold", "-1")
    replacement = suite.root / "cp-p-good.jpg"
    good = image()
    replacement.write_bytes(good + b"\0" * (400 - len(good)))  # a JPEG padded to the same size
    for i in range(3):
        target = folder / f"{i}.jpg"
        stat = target.stat()
        subprocess.run(["cp", "-p", str(replacement), str(target)], check=True)
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result = cli("--input", str(folder), "--model", str(suite.model_dir), "--out", str(out), "--error_threshold", "-1")
    expected = {f"{i}.jpg": OK if i < 3 else ERROR for i in range(6)}
    return tally("cp -p replacement, same size and time", "cli", expected, out, f"exit {result.returncode}",
                 result.returncode == 0)


def case_out_inside_input(suite: Suite) -> Row:
    folder = suite.root / "out-inside" / "202610"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(image())
    result = cli("--input", str(folder), "--model", str(suite.model_dir), "--out", str(folder / "results"))
    return Row("--out inside --input", "cli", exit=f"exit {result.returncode}",
               passed=result.returncode != 0 and one_line_error(result) and not (folder / "results").exists(),
               note=result.stderr.strip().splitlines()[-1][:90] if result.stderr.strip() else "")


def case_bad_values(suite: Suite) -> Row:
    """std 0 in the metadata, a month of Unicode digits, weights that are a FIFO: each refused in one line."""
    import json

    refused = []
    model = suite.root / "std-zero"
    shutil.copytree(suite.model_dir, model)
    metadata = json.loads((model / "metadata.json").read_text())
    metadata["preprocessing"]["std"] = [0, 0.2, 0.2]
    (model / "metadata.json").write_text(json.dumps(metadata))
    fifo_model = suite.root / "fifo-model"
    shutil.copytree(suite.model_dir, fifo_model)
    (fifo_model / "weights.pt").unlink()
    os.mkfifo(fifo_model / "weights.pt")
    folder = suite.root / "bad-values-in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(image())
    attempts = {"std 0": ("--model", str(model)),
                "month ２０２６１０": ("--model", str(suite.model_dir), "--month", "２０２６１０"),
                "weights a FIFO": ("--model", str(fifo_model))}
    for label, options in attempts.items():
        result = cli("--input", str(folder), "--out", str(suite.root / f"bad-values-{len(refused)}"), *options,
                     timeout=120)
        if result.returncode != 0 and one_line_error(result):
            refused.append(label)
    return Row("bad values: std 0, Unicode month, FIFO weights", "cli", exit=f"{len(refused)} of 3 refused",
               passed=len(refused) == 3, note=", ".join(sorted(set(attempts) - set(refused))))


def case_memory_flat(suite: Suite) -> Row:
    """The job's main process at 10,000 and 100,000 zero-byte inputs: its peak memory does not grow per item
    (`make bench` measures 1,000,000)."""
    from bench.flat_memory import empty_files, main_process_peak_mb

    peaks = {count: main_process_peak_mb(empty_files(suite.root / f"empty-{count}", count), suite.model_dir)[0]
             for count in (10_000, 100_000)}
    growth = peaks[100_000] / peaks[10_000]
    return Row("main-process memory, 10k vs 100k inputs", "cli", items=100_000,
               exit=f"{peaks[10_000]:.0f} MB, {peaks[100_000]:.0f} MB", passed=growth <= 1.2,
               note=f"x{growth:.2f}")


def case_same_input_same_result(suite: Suite) -> Row:
    """An odd-image folder scored one file per mini-batch in one worker, and 16 per mini-batch in two workers
    with decode threads: the same CSVs, row for row."""
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))
    from support import write_odd_images

    folder = suite.root / "odd-images" / "202610"
    count = write_odd_images(folder)
    texts = []
    for index, options in enumerate((("--mini_batch_size", "1", "--max_concurrency_per_instance", "1"),
                                     ("--mini_batch_size", "16", "--max_concurrency_per_instance", "2",
                                      "--decode_threads", "3"))):
        out = suite.root / "odd-images" / f"out-{index}"
        cli("--input", str(folder), "--model", str(suite.model_dir), "--out", str(out), "--error_threshold", "-1",
            *options)
        texts.append([(out / name).read_text(encoding="utf-8") for name in ("predictions.csv", "errors.csv")])
    differing = sum(a != b for a, b in zip(texts[0][0].splitlines() + texts[0][1].splitlines(),
                                           texts[1][0].splitlines() + texts[1][1].splitlines()))
    return Row("same input, other batches and workers", "cli", items=count, exit=f"{differing} rows differ",
               passed=texts[0] == texts[1])


CASES: dict[str, Callable[[Suite], Row]] = {
    "bad_files": case_bad_files,
    "odd_paths": case_odd_paths,
    "rerun_other_month_and_model": case_rerun_other_month_and_model,
    "unreadable_folder": case_unreadable_folder,
    "unwritable_out": case_unwritable_out,
    "disk_full": case_disk_full,
    "bad_model_metadata": case_bad_model_metadata,
    "storage_outage": case_storage_outage,
    "exotic_exception": case_exotic_exception,
    "worker_killed": case_worker_killed,
    "hung_file": case_hung_file,
    "blob_names": case_blob_names,
    "replaced_files": case_replaced_files,
    "late_blob": case_late_blob,
    "job_killed_then_retried": case_job_killed_then_retried,
    "cancel_mid_month": case_cancel_mid_month,
    "shared_job_other_run_killed": case_shared_job_other_run_killed,
    "sas_connection": case_sas_connection,
    "clock_step": case_clock_step,
    "weights_changed_mid_run": case_weights_changed_mid_run,
    "replaced_in_place_same_size_and_time": case_replaced_in_place_same_size_and_time,
    "out_inside_input": case_out_inside_input,
    "bad_values": case_bad_values,
    "memory_flat": case_memory_flat,
    "same_input_same_result": case_same_input_same_result,
}
