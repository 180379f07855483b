"""Which decoder a worker uses and why, and that either way every file comes back once, in order."""

import json
import logging

import pytest
import torch

from support import DECODE_DEVICE, image_bytes
from scoring import decoders
from scoring.decoders import BatchedDecoding, DecodeRates, PillowDecoding, choose, measure_rates, month_sample
from scoring.image_decode import ImageDecodeError, Preprocessor
from scoring.jpeg_decode import JpegBatchDecoder
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


def _pillow() -> PillowDecoding:
    return PillowDecoding(Preprocessor(Preprocessing()), max_pixels=64_000_000, min_side=256)


def _month_with_every_kind(folder):
    """20 plain JPEGs in day folders, beside files the batched path leaves to Pillow: what the probe may take."""
    for index in range(20):
        path = folder / f"day{index % 2}" / f"{index:02d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes("JPEG", size=(80 + index, 60), progressive=index % 2 == 1))
    (folder / "day0" / "cmyk.jpg").write_bytes(image_bytes("JPEG", mode="CMYK"))
    (folder / "day0" / "cut.jpg").write_bytes(image_bytes("JPEG", size=(300, 200))[:300])
    (folder / "day1" / "photo.png").write_bytes(image_bytes("PNG"))
    (folder / "_SUCCESS").write_bytes(b"")


def test_the_probe_decodes_a_sample_of_the_month_s_own_jpegs(tmp_path, monkeypatch):
    """What a GPU decoder costs depends on the files (progressive ones skip the hardware engine): the probe times
    the month's JPEGs that the batched path would take, both ways, not a stand-in."""
    _month_with_every_kind(tmp_path)
    pillow, timed = _pillow(), []
    decode = pillow.pixels
    monkeypatch.setattr(pillow, "pixels", lambda path: timed.append(path) or decode(path))
    rates = measure_rates(pillow, torch.device(DECODE_DEVICE), threads=0, workers=4, input_root=str(tmp_path))
    assert rates.sample == "16 of the month's JPEGs" and rates.pillow > 0 and rates.batched > 0
    month_files = [path for path in timed if path.startswith(str(tmp_path))]
    assert len(month_files) == 16 and len(set(month_files)) == 16
    assert all(path.endswith(".jpg") and "cmyk" not in path and "cut" not in path for path in month_files)
    decoder, why = choose("auto", "cuda", lambda: rates)
    assert why.endswith("(probe, 16 of the month's JPEGs)") or why.endswith(
        f"(probe, 16 of the month's JPEGs), under {decoders.MARGIN}x")


def test_the_month_sample_looks_at_a_bounded_part_of_the_folder(tmp_path, monkeypatch):
    _month_with_every_kind(tmp_path)
    batched = JpegBatchDecoder(Preprocessor(Preprocessing()), torch.device("cpu"), max_pixels=64_000_000,
                               min_side=256, pillow=_pillow().pixels)
    monkeypatch.setattr(decoders, "PROBE_LOOK_AT", 3)  # init() never lists a whole month
    assert len(month_sample(str(tmp_path), batched)) <= 3
    assert month_sample(str(tmp_path / "not there"), batched) == []


@pytest.mark.parametrize("kind", ["too few JPEGs yet", "no folder yet"])
def test_the_probe_falls_back_to_a_synthetic_photo_where_the_month_has_too_few_jpegs(tmp_path, kind):
    """A download still under way, or a month of PNGs: a stand-in photo, and the log says why."""
    month = tmp_path / "month"
    if kind == "too few JPEGs yet":
        month.mkdir()
        for index in range(decoders.PROBE_MIN_FILES - 1):
            (month / f"{index}.jpg").write_bytes(image_bytes("JPEG", size=(90, 70)))
        (month / "a.png").write_bytes(image_bytes("PNG"))
    found = decoders.PROBE_MIN_FILES - 1 if kind == "too few JPEGs yet" else 0
    rates = measure_rates(_pillow(), torch.device(DECODE_DEVICE), threads=0, workers=4, input_root=str(month))
    assert rates.sample == f"16 images of 640x480; the month folder had {found} JPEGs to decode at init()"
    assert rates.pillow > 0 and rates.batched > 0


def test_a_worker_s_probe_looks_at_its_month_folder(tmp_path, model_dir, monkeypatch):
    from scoring.mini_batch import MiniBatchScorer, Stamp

    asked = {}

    def measured(pillow, device, **kwargs):
        asked.update(kwargs)
        return DecodeRates(pillow=100.0, batched=10.0, sample="16 of the month's JPEGs")

    monkeypatch.setattr("scoring.mini_batch.measure_rates", measured)
    monkeypatch.setattr("scoring.mini_batch.choose", lambda requested, device, rates: ("pillow", str(rates())))
    MiniBatchScorer(model_dir=model_dir, stamp=Stamp("m", "1", "202610"), input_root=str(tmp_path),
                    settings=JobSettings(device="cpu"))
    assert asked["input_root"] == str(tmp_path)


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
