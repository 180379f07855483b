"""How a worker turns a mini-batch's paths into pixels, ahead of the forward pass, and which way `auto` picks.

Both ways give, in input order, one outcome per path: a uint8 (3, side, side)
tensor resized as the model wants, or an `ImageDecodeError` (that file's error row):
- `PillowDecoding`: every file decoded and resized by Pillow on the CPU, inline or
  in `threads` threads (`map` keeps the order and decodes ahead of the caller);
- `BatchedDecoding`: the paths in chunks of the forward batch, each chunk's JPEGs
  decoded in one `decode_jpeg` call on the device (`scoring.jpeg_decode`), the
  next chunk decoded by one background thread (on CUDA, on its own stream) while
  the current one is scored.

`choose()` resolves `decoder=auto`: Pillow on CPU; on CUDA, a probe at `init()`
decodes a sample of the month's own JPEGs both ways (a synthetic photo where the
month folder has too few yet) and keeps the batched path only where this worker's
share of the GPU decodes faster than its own cores do. The month's files, because
what a GPU's decoder costs depends on them: progressive JPEGs skip the hardware
JPEG engine of an A100 or H100, and a T4 has none.
"""

from __future__ import annotations

import dataclasses
import itertools
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scoring.image_decode import ImageDecodeError, Preprocessor, decode_image
from scoring.items import item_path, walk_folder
from scoring.jpeg_decode import JpegBatchDecoder
from scoring.job_settings import AUTO, DECODERS

_, PILLOW, BATCHED = DECODERS  # the setting's choices: auto, pillow, torchvision
# The batched path must beat Pillow by this much to be chosen: a probe is a few images, and a tie is not worth
# the GPU memory and the second code path.
MARGIN = 1.2
PROBE_SIZE = (640, 480)  # a typical photo: the stand-in where the month folder has too few JPEGs yet
PROBE_IMAGES = 16
PROBE_MIN_FILES = 4  # fewer of the month's own JPEGs than this say less than the stand-in
PROBE_LOOK_AT = 256  # entries of the month folder looked at, at most: init() never lists a whole month
_STAND_IN = f"{PROBE_IMAGES} images of {PROBE_SIZE[0]}x{PROBE_SIZE[1]}"


class PillowDecoding:
    """Each file through Pillow on the CPU: inline (`threads=0`) or in a thread pool."""

    def __init__(self, preprocess: Preprocessor, *, max_pixels: int, min_side: int, threads: int = 0):
        self.preprocess, self.max_pixels, self.min_side = preprocess, max_pixels, min_side
        self._pool = ThreadPoolExecutor(max_workers=threads) if threads > 0 else None

    def pixels(self, path: str) -> torch.Tensor | ImageDecodeError:
        """One file's uint8 (3, side, side) CPU tensor, or its error; whatever it raises costs that file only."""
        try:
            return self.preprocess.crop(decode_image(path, max_pixels=self.max_pixels, min_side=self.min_side))
        except ImageDecodeError as error:
            return error
        except Exception as error:  # noqa: BLE001 - one bad file costs one row, whatever it raises
            return ImageDecodeError.unexpected(error)

    def outcomes(self, paths: Sequence[str]) -> Iterator[torch.Tensor | ImageDecodeError]:
        return map(self.pixels, paths) if self._pool is None else self._pool.map(self.pixels, paths)

    def describe(self) -> str:
        return "Pillow on the CPU"


class BatchedDecoding:
    """JPEGs decoded in chunks of `chunk` on `device`, one chunk ahead, everything else through `pillow`."""

    def __init__(self, pillow: PillowDecoding, device: torch.device, *, chunk: int):
        self.decoder = JpegBatchDecoder(pillow.preprocess, device, max_pixels=pillow.max_pixels,
                                        min_side=pillow.min_side, pillow=pillow.pixels)
        self.device, self.chunk = device, max(1, chunk)
        self._ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode-ahead")
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def outcomes(self, paths: Sequence[str]) -> Iterator[torch.Tensor | ImageDecodeError]:
        chunks = [paths[start:start + self.chunk] for start in range(0, len(paths), self.chunk)]
        pending = self._ahead.submit(self._decode, chunks[0]) if chunks else None
        for following in [*chunks[1:], None]:
            decoded, ready = pending.result()
            if following is not None:
                pending = self._ahead.submit(self._decode, following)
            if ready is not None:  # the forward's stream waits for the decode stream's work, not the host
                current = torch.cuda.current_stream(self.device)
                current.wait_event(ready)
                for outcome in decoded:
                    if isinstance(outcome, torch.Tensor):
                        outcome.record_stream(current)  # its memory is not reused while the forward reads it
            yield from decoded

    def _decode(self, chunk: Sequence[str]):
        if self._stream is None:
            return self.decoder.decode(chunk), None
        with torch.cuda.stream(self._stream):
            decoded = self.decoder.decode(chunk)
            ready = torch.cuda.Event()
            ready.record(self._stream)
        return decoded, ready

    def describe(self) -> str:
        kind = "nvJPEG" if self.device.type == "cuda" else "libjpeg-turbo"
        return (f"torchvision decode_jpeg on {self.device.type} ({kind}) in batches of {self.chunk}, one batch "
                "ahead; other files through Pillow")


@dataclasses.dataclass(frozen=True)
class DecodeRates:
    """Images per second one worker gets from each way, as measured by `measure_rates`."""

    pillow: float  # on this worker's decode threads (or inline)
    batched: float  # its share of the device: the device's rate divided among the workers using it; 0: refused
    sample: str = _STAND_IN  # what was decoded, for the log


def choose(requested: str, device: str, rates: Callable[[], DecodeRates]) -> tuple[str, str]:
    """(decoder, why) for `decoder=requested` on `device`; `rates` is called only where a probe decides."""
    if requested != AUTO:
        return requested, f"decoder {requested} as asked"
    if device != "cuda":
        return PILLOW, ("decoder auto: pillow on CPU (as fast as decode_jpeg on small photos, faster on large "
                        "ones: it decodes at a reduced scale)")
    measured = rates()
    if measured.batched == 0:
        return PILLOW, ("decoder auto: pillow, decode_jpeg refused the probe's photo on the GPU (a torchvision "
                        "build without nvJPEG?)")
    line = (f"decode_jpeg on the GPU {measured.batched:,.0f} img/s for this worker vs Pillow {measured.pillow:,.0f} "
            f"img/s (probe, {measured.sample})")
    if measured.batched >= MARGIN * measured.pillow:
        return BATCHED, f"decoder auto: torchvision, {line}"
    return PILLOW, f"decoder auto: pillow, {line}, under {MARGIN}x"


def measure_rates(pillow: PillowDecoding, device: torch.device, *, threads: int, workers: int,
                  input_root: str | None = None) -> DecodeRates:
    """Decode a sample both ways on this node, after a warm-up on a synthetic photo: the month's own JPEGs
    (`month_sample`), or that photo `PROBE_IMAGES` times where the month folder has fewer than
    `PROBE_MIN_FILES` of them yet (a download still under way, a folder of PNGs)."""
    batched = JpegBatchDecoder(pillow.preprocess, device, max_pixels=pillow.max_pixels, min_side=pillow.min_side,
                               pillow=pillow.pixels)
    with tempfile.TemporaryDirectory(prefix="decode-probe-") as folder:
        photo = _synthetic_photo(Path(folder) / "probe.jpg")
        pillow.pixels(photo)
        batched.decode([photo, photo])  # warm-up: nvJPEG handles, kernels
        _synchronize(device)
        refused = bool(batched.fallbacks)  # a plain photo refused: the batched path would only add failed calls
        own = month_sample(input_root, batched) if input_root else []
        if len(own) >= PROBE_MIN_FILES:
            paths, sample = own, f"{len(own)} of the month's JPEGs"
        else:
            paths = [photo] * PROBE_IMAGES
            sample = _STAND_IN if not input_root else \
                f"{_STAND_IN}; the month folder had {len(own)} JPEGs to decode at init()"
        started = time.perf_counter()
        for path in paths:
            pillow.pixels(path)
        pillow_rate = max(1, threads) * len(paths) / (time.perf_counter() - started)
        if refused:
            return DecodeRates(pillow=pillow_rate, batched=0.0, sample=sample)
        started = time.perf_counter()
        batched.decode(paths)
        _synchronize(device)
        batched_rate = len(paths) / (time.perf_counter() - started) / max(1, workers)
    return DecodeRates(pillow=pillow_rate, batched=batched_rate, sample=sample)


def month_sample(input_root: str, batched: JpegBatchDecoder) -> list[str]:
    """Up to `PROBE_IMAGES` of the month's files that `batched` would decode itself (the others go to Pillow
    either way), first met in the folder's own order among its first `PROBE_LOOK_AT` entries. Reading them
    here also puts them in the page cache, so both timed ways read them alike."""
    sample = []
    try:
        for item in itertools.islice(walk_folder(Path(input_root)), PROBE_LOOK_AT):
            path = str(item_path(input_root, item.name))
            if item.failure is None and batched.jpeg_bytes(path)[0] is not None:
                sample.append(path)
                if len(sample) == PROBE_IMAGES:
                    break
    except OSError:
        pass  # no month folder to look at (yet): the synthetic photo stands in
    return sample


def _synthetic_photo(path: Path) -> str:
    rng = np.random.default_rng(0)
    width, height = PROBE_SIZE
    gradient = np.linspace(0, 200, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 20, (height, width, 3)).astype(np.float32)
    Image.fromarray(np.clip(gradient + noise, 0, 255).astype(np.uint8)).save(path, quality=90)
    return str(path)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_decoding(decoder: str, pillow: PillowDecoding, device: torch.device, *, chunk: int):
    """The decoding `decoder` (pillow or torchvision, already chosen) names."""
    return BatchedDecoding(pillow, device, chunk=chunk) if decoder == BATCHED else pillow
