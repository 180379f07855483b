"""Which decoder a worker uses and why, and that either way every file comes back once, in order."""

import json
import logging

import pytest
import torch

from support import DECODE_DEVICE, image_bytes
from scoring import decoders
from scoring.decoders import BatchedDecoding, DecodeRates, PillowDecoding, choose, measure_rates
from scoring.image_decode import ImageDecodeError, Preprocessor
from scoring.job_settings import JobSettings
from scoring.model_metadata import Preprocessing


def _never_probed():
    raise AssertionError("the probe ran where no probe decides")


def test_auto_on_cpu_is_pillow_without_a_probe():
    decoder, why = choose("auto", "cpu", _never_probed)
    assert decoder == "pillow" and why.startswith("decoder auto: pillow on CPU")


def test_a_decoder_asked_for_is_used_without_a_probe():
    assert choose("torchvision", "cpu", _never_probed) == ("torchvision", "decoder torchvision as asked")
    assert choose("pillow", "cuda", _never_probed) == ("pillow", "decoder pillow as asked")


@pytest.mark.parametrize("rates, expected", [
    (DecodeRates(pillow=210.0, batched=1350.0), "torchvision"),
    (DecodeRates(pillow=210.0, batched=230.0), "pillow"),  # faster, but within the probe's margin
    (DecodeRates(pillow=900.0, batched=400.0), "pillow"),
])
def test_auto_on_cuda_follows_the_probe(rates, expected):
    decoder, why = choose("auto", "cuda", lambda: rates)
    assert decoder == expected
    assert why.startswith(f"decoder auto: {expected}, decode_jpeg on the GPU {rates.batched:,.0f} img/s for this "
                          f"worker vs Pillow {rates.pillow:,.0f} img/s")


def test_the_probe_measures_both_ways_on_this_node():
    pillow = PillowDecoding(Preprocessor(Preprocessing()), max_pixels=64_000_000, min_side=256)
    rates = measure_rates(pillow, torch.device(DECODE_DEVICE), threads=0, workers=4)
    assert rates.pillow > 0 and rates.batched > 0


def test_a_device_whose_decode_jpeg_refuses_the_probe_keeps_pillow(monkeypatch):
    """As on a torchvision build without nvJPEG: the probe's plain photo is refused, so auto keeps Pillow."""
    def refusing(encoded, **kwargs):
        raise RuntimeError("decode_jpeg: not compiled with nvJPEG support")

    monkeypatch.setattr("torchvision.io.decode_jpeg", refusing)
    pillow = PillowDecoding(Preprocessor(Preprocessing()), max_pixels=64_000_000, min_side=256)
    rates = measure_rates(pillow, torch.device(DECODE_DEVICE), threads=0, workers=4)
    assert rates.batched == 0 and rates.pillow > 0
    decoder, why = choose("auto", "cuda", lambda: rates)
    assert decoder == "pillow" and why.startswith("decoder auto: pillow, decode_jpeg refused the probe's photo")


def test_batched_decoding_keeps_order_and_one_outcome_per_file_across_chunks(tmp_path):
    names = [f"{index:02d}.jpg" for index in range(8)]
    for index, name in enumerate(names):
        data = image_bytes("JPEG", size=(60 + index * 9, 50)) if index % 3 else b"broken"
        (tmp_path / name).write_bytes(data)
    pillow = PillowDecoding(Preprocessor(Preprocessing()), max_pixels=64_000_000, min_side=256)
    decoding = BatchedDecoding(pillow, torch.device(DECODE_DEVICE), chunk=3)
    paths = [str(tmp_path / name) for name in names]
    outcomes = list(decoding.outcomes(paths))
    assert len(outcomes) == 8
    assert [isinstance(o, ImageDecodeError) for o in outcomes] == [index % 3 == 0 for index in range(8)]
    assert decoding.decoder.batched == 5
    # Each chunk's pixels as decoding it alone gives them (on CUDA: read after the decode stream's work).
    for path, outcome in zip(paths, outcomes):
        if isinstance(outcome, torch.Tensor):
            assert torch.equal(outcome.cpu(), decoding.decoder.decode([path])[0].cpu()), path


def test_the_worker_log_names_the_decoder_and_why(tmp_path, model_dir, caplog):
    from scoring.mini_batch import MiniBatchScorer, Stamp

    for name, data in {"a.jpg": image_bytes("JPEG", size=(90, 70)), "b.png": image_bytes("PNG"),
                       "c.jpg": image_bytes("JPEG", size=(300, 200))[:300]}.items():
        (tmp_path / name).write_bytes(data)
    caplog.set_level(logging.INFO, logger="scoring.mini_batch")
    settings = JobSettings(device=DECODE_DEVICE, decoder="torchvision")
    scorer = MiniBatchScorer(model_dir=model_dir, stamp=Stamp("m", "1", "202610"), input_root=str(tmp_path),
                             settings=settings)
    rows = {row["image"]: row for row in map(json.loads, scorer.score(
        [str(tmp_path / name) for name in ("a.jpg", "b.png", "c.jpg")]))}
    assert "label" in rows["a.jpg"] and "label" in rows["b.png"] and rows["c.jpg"]["error_type"] == "truncated"
    lines = [record.getMessage() for record in caplog.records]
    library = "nvJPEG" if DECODE_DEVICE == "cuda" else "libjpeg-turbo"
    assert DECODE_DEVICE == "cuda" or scorer.batch_size == 32  # on CUDA: fitted to the GPU's memory
    batches = f"in batches of {scorer.batch_size}"
    assert (f"decoder: torchvision decode_jpeg on {DECODE_DEVICE} ({library}) {batches}, one batch ahead; other "
            "files through Pillow (decoder torchvision as asked)") in lines
    assert any("decoder torchvision" in line for line in lines if line.startswith("scoring profile:"))
    assert (f"decoding so far: 1 of 3 files decoded by decode_jpeg on {DECODE_DEVICE}; Pillow decoded the rest: "
            "1 not a JPEG, 1 no end marker (truncated?)") in lines


def test_a_worker_on_cpu_with_auto_decodes_with_pillow(model_dir, caplog, monkeypatch):
    from scoring.mini_batch import MiniBatchScorer, Stamp

    monkeypatch.setattr("scoring.mini_batch.measure_rates", _never_probed)
    caplog.set_level(logging.INFO, logger="scoring.mini_batch")
    scorer = MiniBatchScorer(model_dir=model_dir, stamp=Stamp("m", "1", "202610"),
                             settings=JobSettings(device="cpu"))
    assert scorer.profile.decoder == "pillow" and isinstance(scorer.decoding, PillowDecoding)
    assert any(record.getMessage().startswith("decoder: Pillow on the CPU (decoder auto: pillow on CPU")
               for record in caplog.records)
