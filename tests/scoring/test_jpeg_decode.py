"""The batched JPEG path (on CPU tensors in CI, on CUDA where bench/gpu.sh runs it): what it decodes itself, what it
leaves to Pillow, and that a bad file costs one outcome with the error Pillow's path gives it."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from support import DECODE_DEVICE, image_bytes
from scoring import jpeg_decode
from scoring.decoders import PillowDecoding
from scoring.image_decode import ImageDecodeError, Preprocessor
from scoring.jpeg_decode import JpegBatchDecoder
from scoring.model_metadata import Preprocessing

PREPROCESSING = Preprocessing()
# Mean absolute difference (0-255) from Pillow's crop. On an H200 (torch 2.11, CUDA 13) nvJPEG's crop of the 320x240
# photo differed by 3.34 on average, above libjpeg-turbo's; bench.gpu_node's pixel_difference records it on photos.
MEAN_DIFFERENCE_BOUND = {"cpu": 3.0, "cuda": 5.0}


def _photo(size, seed=0, **save) -> bytes:
    """A JPEG with texture (flat colours hide resize differences)."""
    width, height = size
    rng = np.random.default_rng(seed)
    pixels = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] + rng.normal(0, 25, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90, **save)
    return buffer.getvalue()


def _rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (80, 40), (0, 128, 255)).save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def _decoders(**pillow_options):
    preprocess = Preprocessor(PREPROCESSING)
    pillow = PillowDecoding(preprocess, max_pixels=pillow_options.get("max_pixels", 64_000_000),
                            min_side=PREPROCESSING.short_side)
    batched = JpegBatchDecoder(preprocess, torch.device(DECODE_DEVICE), max_pixels=pillow.max_pixels,
                               min_side=pillow.min_side, pillow=pillow.pixels)
    return pillow, batched


def _write(folder, files: dict[str, bytes]) -> list[str]:
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [str(folder / name) for name in files]


def test_a_batch_of_mixed_sizes_is_decoded_by_decode_jpeg_close_to_pillow(tmp_path):
    paths = _write(tmp_path, {"small.jpg": _photo((320, 240)), "wide.jpg": _photo((900, 300), 1),
                              "tall.jpg": _photo((300, 700), 2), "grey.jpg": image_bytes("JPEG", mode="L"),
                              "large.jpg": _photo((1600, 1200), 3)})
    pillow, batched = _decoders()
    decoded = batched.decode(paths)
    assert batched.batched == len(paths) and not batched.fallbacks
    differences = {}
    for path, pixels in zip(paths, decoded):
        assert pixels.shape == (3, 224, 224) and pixels.dtype == torch.uint8
        assert pixels.device.type == DECODE_DEVICE
        differences[path.rsplit("/", 1)[-1]] = round((pixels.cpu().float() - pillow.pixels(path).float()).abs()
                                                     .mean().item(), 2)
    # Same pixels up to the decoders' rounding and Pillow's reduced-scale decode of the large photo; nvJPEG also
    # upsamples the colour planes otherwise than libjpeg-turbo, which this grain (sigma 25 per channel) shows.
    assert max(differences.values()) < MEAN_DIFFERENCE_BOUND[DECODE_DEVICE], str(differences)


@pytest.mark.parametrize("name, data, reason", [
    ("image.png", image_bytes("PNG"), jpeg_decode.NOT_JPEG),
    ("cmyk.jpg", image_bytes("JPEG", mode="CMYK", color=(0, 100, 100, 0)), jpeg_decode.COLOUR),
    ("rotated.jpg", _rotated(), jpeg_decode.ROTATED),
])
def test_files_decode_jpeg_would_read_otherwise_than_pillow_go_to_pillow(tmp_path, name, data, reason):
    paths = _write(tmp_path, {"first.jpg": _photo((300, 300)), name: data})
    pillow, batched = _decoders()
    decoded = batched.decode(paths)
    assert batched.fallbacks == {reason: 1} and batched.batched == 1
    assert torch.equal(decoded[1].cpu(), pillow.pixels(paths[1]))  # Pillow's own outcome, upright and in RGB


@pytest.mark.parametrize("name, data, error_type", [
    ("truncated.jpg", _photo((400, 400))[:2000], "truncated"),
    ("empty.jpg", b"", "empty"),
    ("header.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 40 + b"\xff\xd9", "corrupt"),
    ("text.jpg", b"not an image at all\n", "not_an_image"),
])
def test_a_bad_file_costs_one_outcome_with_pillows_error(tmp_path, name, data, error_type):
    paths = _write(tmp_path, {"a.jpg": _photo((300, 300)), name: data, "c.jpg": _photo((200, 260), 4)})
    pillow, batched = _decoders()
    decoded = batched.decode(paths)
    assert isinstance(decoded[0], torch.Tensor) and isinstance(decoded[2], torch.Tensor)
    expected = pillow.pixels(paths[1])
    assert isinstance(decoded[1], ImageDecodeError) and isinstance(expected, ImageDecodeError)
    assert (decoded[1].error_type, decoded[1].message) == (expected.error_type, expected.message)
    assert decoded[1].error_type == error_type


def test_a_file_above_the_pixel_limit_is_refused_as_pillow_refuses_it(tmp_path):
    paths = _write(tmp_path, {"big.jpg": _photo((1000, 1000))})
    pillow, batched = _decoders(max_pixels=500_000)
    [outcome] = batched.decode(paths)
    assert isinstance(outcome, ImageDecodeError) and outcome.error_type == "too_large"
    assert batched.fallbacks == {jpeg_decode.TOO_LARGE: 1}
    assert outcome.message == pillow.pixels(paths[0]).message


def test_a_jpeg_the_batched_call_refuses_fails_only_itself(tmp_path, monkeypatch):
    """As nvJPEG refuses some progressive files: one refused file fails the batched call, so each file is tried
    alone, and the refused one goes to Pillow; its neighbours stay on the batched path."""
    progressive = _photo((300, 300), 5, progressive=True)
    paths = _write(tmp_path, {"a.jpg": _photo((300, 300)), "progressive.jpg": progressive,
                              "c.jpg": _photo((240, 320), 6)})
    pillow, batched = _decoders()
    real, calls = batched._decode_jpeg, []

    def refusing(encoded, **kwargs):
        calls.append(len(encoded))
        if any(bytes(data.numpy()) == progressive for data in encoded):
            raise RuntimeError("nvjpegDecodeBatched failed: not supported")
        return real(encoded, **kwargs)

    monkeypatch.setattr(batched, "_decode_jpeg", refusing)
    decoded = batched.decode(paths)
    assert calls == [3, 1, 1, 1]
    assert batched.batched == 2 and batched.fallbacks == {jpeg_decode.REFUSED: 1}
    assert torch.equal(decoded[1].cpu(), pillow.pixels(paths[1]))
    assert (f"2 of 3 files decoded by decode_jpeg on {DECODE_DEVICE}; Pillow decoded the rest: 1 refused by "
            "decode_jpeg") == batched.summary()


class _StreamLog:
    """Stands for `torch.cuda.current_stream(device)` on a CPU-only host: records when the caller's stream is
    waited for."""

    def __init__(self, log: list[str]):
        self.log = log

    def __call__(self, device=None):
        return self

    def synchronize(self):
        self.log.append("wait")


def test_on_cuda_each_decode_jpeg_call_waits_for_the_callers_stream_first(tmp_path, monkeypatch):
    """decode_jpeg's CUDA outputs come from the caller's stream's memory but are written from nvJPEG's own
    stream: every call, the per-file retries included, must come after the work already queued on the caller's
    stream (the last chunk's resize still reading blocks the allocator may hand out again)."""
    progressive = _photo((300, 300), 5, progressive=True)
    paths = _write(tmp_path, {"a.jpg": _photo((300, 300)), "progressive.jpg": progressive,
                              "c.jpg": _photo((240, 320), 6)})
    log: list[str] = []
    monkeypatch.setattr(jpeg_decode.torch.cuda, "current_stream", _StreamLog(log))
    preprocess = Preprocessor(PREPROCESSING)
    pillow = PillowDecoding(preprocess, max_pixels=64_000_000, min_side=PREPROCESSING.short_side)
    batched = JpegBatchDecoder(preprocess, torch.device("cuda"), max_pixels=pillow.max_pixels,
                               min_side=pillow.min_side, pillow=pillow.pixels)
    real = batched._decode_jpeg

    def logged(encoded, *, mode, device):  # decodes on the CPU here, as the CUDA call would on its device
        log.append("decode")
        if any(bytes(data.numpy()) == progressive for data in encoded):
            raise RuntimeError("nvjpegDecodeBatched failed: not supported")
        return real(encoded, mode=mode, device="cpu")

    monkeypatch.setattr(batched, "_decode_jpeg", logged)
    monkeypatch.setattr(batched, "pillow", lambda path: ImageDecodeError("corrupt", "stands for Pillow"))
    decoded = batched.decode(paths)
    assert log == ["wait", "decode"] * 4  # the batch, then each file alone
    assert [type(outcome) for outcome in decoded] == [torch.Tensor, ImageDecodeError, torch.Tensor]


@pytest.mark.skipif(DECODE_DEVICE != "cuda", reason="nvJPEG's stream: only on a CUDA device (bench/gpu.sh)")
def test_on_cuda_decoded_pixels_never_overwrite_memory_queued_work_still_reads(tmp_path):
    """The hazard itself: a block freed while a slow kernel queued on the current stream still has to read it,
    then a decode whose output is the same size. Without the wait, nvJPEG may write into the block first."""
    paths = _write(tmp_path, {f"{index}.jpg": _photo((320, 240), index) for index in range(8)})
    _pillow, batched = _decoders()
    size = 3 * 240 * 320
    for _trial in range(20):
        ones = torch.ones(size, dtype=torch.uint8, device="cuda")
        torch.cuda._sleep(50_000_000)  # ~tens of ms of GPU time ahead of the sum below
        total = ones.sum(dtype=torch.int64)
        del ones  # its block is free for the next allocation on this stream, the sum still to run
        batched.decode(paths)
        assert total.item() == size
