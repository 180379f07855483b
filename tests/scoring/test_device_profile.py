"""`auto` resolved per node: the capability probe is stood in for, the rules and the scoring are real."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scoring.job_settings import JobSettings
from scoring.device_profile import FIT_GPU, Capabilities, ProfileError, cuda_problem, resolve

CPU_BF16 = Capabilities(cpus=8, cpu_bf16=True, cuda_problem="no NVIDIA driver on this node")
CPU_PLAIN = Capabilities(cpus=8, cpu_bf16=False, cuda_problem="no NVIDIA driver on this node")
GPU = Capabilities(cpus=8, cpu_bf16=False, cuda_problem=None, cuda_name="NVIDIA T4")
CHECKED = {"bf16": 0.9967, "fp16": 0.9990}
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_auto_on_a_cpu_with_native_bf16_is_bf16_channels_last_inline_decoding():
    profile = resolve(JobSettings(max_concurrency_per_instance=8), CPU_BF16, CHECKED)
    assert (profile.device, profile.precision, profile.channels_last, profile.batch_size, profile.decode_threads,
            profile.compile) == ("cpu", "bf16", True, 32, 0, False)
    assert "99.67% >= 99.5%" in profile.describe()


def test_auto_on_a_cpu_without_native_bf16_is_fp32():
    profile = resolve(JobSettings(), CPU_PLAIN, CHECKED)
    assert (profile.device, profile.precision) == ("cpu", "fp32")
    assert "no native bf16" in profile.describe()


def test_auto_keeps_fp32_where_the_model_was_never_checked_or_disagrees():
    unchecked = resolve(JobSettings(), CPU_BF16, {})
    assert unchecked.precision == "fp32" and "never checked" in unchecked.describe()
    disagrees = resolve(JobSettings(), CPU_BF16, {"bf16": 0.99})
    assert disagrees.precision == "fp32" and "99.00% of images, below 99.5%" in disagrees.describe()


def test_auto_on_cuda_is_fp16_channels_last_a_fitted_batch_and_the_cores_shared_for_decoding():
    profile = resolve(JobSettings(max_concurrency_per_instance=2), GPU, CHECKED)
    assert (profile.device, profile.precision, profile.channels_last, profile.batch_size,
            profile.decode_threads) == ("cuda", "fp16", True, FIT_GPU, 4)
    assert "NVIDIA T4" in profile.describe()


def test_a_worker_per_core_decodes_inline_on_cuda_too():
    """The default (max_concurrency_per_instance=0: one worker per core) measured best on an H100 host."""
    profile = resolve(JobSettings(), GPU, CHECKED)
    assert (profile.device, profile.decode_threads) == ("cuda", 0)


def test_explicit_values_win_over_auto():
    profile = resolve(JobSettings(device="cpu", precision="fp32", channels_last="off", batch_size=7,
                                  decode_threads=2, compile=True), CPU_BF16, CHECKED)
    assert (profile.device, profile.precision, profile.channels_last, profile.batch_size, profile.decode_threads,
            profile.compile) == ("cpu", "fp32", False, 7, 2, True)


def test_cuda_asked_for_where_it_is_not_usable_is_an_error_not_a_cpu_run():
    with pytest.raises(ProfileError, match="device=cuda was asked for but CUDA is not usable here: no NVIDIA driver"):
        resolve(JobSettings(device="cuda"), CPU_PLAIN, CHECKED)
    with pytest.raises(ProfileError, match="fp16 needs a CUDA device"):
        resolve(JobSettings(precision="fp16"), CPU_PLAIN, CHECKED)


@pytest.mark.skipif(cuda_problem() is None, reason="this machine has a usable GPU")
def test_the_probe_names_what_is_missing_on_this_machine():
    problem = cuda_problem()
    assert problem and "\n" not in problem
    assert any(word in problem for word in ("driver", "CPU-only build", "no CUDA device", "not visible"))


@pytest.mark.skipif(cuda_problem() is None, reason="this machine has a usable GPU")
def test_init_fails_with_one_line_when_the_job_asks_for_cuda_here(tmp_path, model_dir):
    """The real entry script in the real runner, on this GPU-less machine: the job fails at init(), no CPU run."""
    (tmp_path / "in").mkdir()
    from support import image_bytes

    (tmp_path / "in" / "a.jpg").write_bytes(image_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "scoring", "score", "--input", str(tmp_path / "in"), "--model", str(model_dir),
         "--out", str(tmp_path / "out"), "--device", "cuda", "--max_concurrency_per_instance", "1"],
        capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: init() failed in a worker: ProfileError: device=cuda was asked for but CUDA is "
                           "not usable here: "), last
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_a_checked_model_scores_in_bf16_where_the_node_has_it(tmp_path, model_dir):
    """The scorer resolves `auto` with the model's record and the node's capabilities, then scores with it."""
    import shutil

    from scoring.mini_batch import MiniBatchScorer, Stamp
    from support import image_bytes

    checked = tmp_path / "model"
    shutil.copytree(model_dir, checked)
    metadata = json.loads((checked / "metadata.json").read_text())
    (checked / "metadata.json").write_text(json.dumps({**metadata, "precision_agreement": CHECKED}))
    (tmp_path / "a.png").write_bytes(image_bytes("PNG"))
    scorer = MiniBatchScorer(model_dir=checked, stamp=Stamp("m", "1", "202610"), input_root=str(tmp_path),
                             settings=JobSettings(max_concurrency_per_instance=8), capabilities=CPU_BF16)
    assert (scorer.profile.precision, scorer.profile.channels_last, scorer.batch_size) == ("bf16", True, 32)
    row = json.loads(scorer.score([str(tmp_path / "a.png")])[0])
    assert row["image"] == "a.png" and 0.0 <= row["score"] <= 1.0


@pytest.mark.parametrize("workers, threads", [(4, 4), (16, 1), (3, 5)])
def test_each_worker_takes_its_share_of_the_nodes_cores_for_torch(tmp_path, model_dir, workers, threads):
    """On Azure ML nothing sets OMP_NUM_THREADS: the entry's scorer sets torch's threads from the workers sharing
    the node (`--max_concurrency_per_instance`), so 16 workers of a 16-core node do not run 16 threads each."""
    import torch

    from scoring.mini_batch import MiniBatchScorer, Stamp

    node = Capabilities(cpus=16, cpu_bf16=False, cuda_problem="no NVIDIA driver on this node")
    before = torch.get_num_threads()
    try:
        scorer = MiniBatchScorer(model_dir=model_dir, stamp=Stamp("m", "1", "202610"), input_root=str(tmp_path),
                                 settings=JobSettings(max_concurrency_per_instance=workers), capabilities=node)
        assert scorer.profile.torch_threads == threads
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("capability, usable", [
    ((7, 5), True),    # T4: sm_75 kernels
    ((8, 6), True),    # A10: sm_80 kernels run on sm_86
    ((9, 0), True),    # H100
    ((12, 0), False),  # a Blackwell GPU: no sm_12x kernels, no PTX to compile
])
def test_a_gpu_the_torch_build_has_no_kernels_for_is_named_at_init(capability, usable):
    from scoring.device_profile import unsupported_gpu

    cu126 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
    problem = unsupported_gpu(capability, cu126, "NVIDIA X", "torch 2.14.1+cu126 is built for CUDA 12.6")
    assert (problem is None) == usable
    if not usable:
        assert problem.startswith("NVIDIA X is sm_120, and torch 2.14.1+cu126 is built for CUDA 12.6 has kernels "
                                  "only for sm_50")
    assert unsupported_gpu((12, 0), [*cu126, "compute_90"], "NVIDIA X", "b") is None  # PTX the driver compiles


def test_cuda_problem_checks_the_architecture_after_the_driver(monkeypatch):
    import torch

    import scoring.device_profile as profile

    monkeypatch.setattr(torch.version, "cuda", "12.6")
    monkeypatch.setattr(profile, "Path", lambda path: type("P", (), {"exists": lambda self: True})())
    for name, value in {"device_count": lambda: 1, "init": lambda: None, "is_available": lambda: True,
                        "get_device_capability": lambda *a: (12, 0), "get_arch_list": lambda: ["sm_80", "sm_90"],
                        "get_device_name": lambda *a: "NVIDIA RTX PRO 6000"}.items():
        monkeypatch.setattr(torch.cuda, name, value)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cuda_problem().startswith("NVIDIA RTX PRO 6000 is sm_120, and torch ")
