"""Batched JPEG decoding on the scoring device: `torchvision.io.decode_jpeg` (nvJPEG on CUDA, libjpeg-turbo on CPU).

`JpegBatchDecoder.decode(paths)` gives, in order, one outcome per path: a uint8
(3, side, side) tensor on the device, resized and cropped as the model wants, or
an `ImageDecodeError`. Only plain JPEGs go to the batched call: a file's header is
read on the CPU first (cheap), and anything else goes to the Pillow path of
`scoring.image_decode` one file at a time, which also names the error of a bad
file. That keeps one file, one outcome, and the same error rows whichever decoder ran:
- not a JPEG (PNG, GIF, …), a CMYK or YCCK JPEG, an EXIF orientation other than
  upright, no end-of-image marker (truncated), or a header Pillow cannot read;
- a JPEG the batched call refuses (nvJPEG refuses some progressive and odd
  files): the batch is retried one file at a time, and each file still refused
  goes to Pillow.
"""

from __future__ import annotations

import collections
import io
import warnings
from collections.abc import Callable, Sequence

import torch
from PIL import Image

from scoring.image_decode import ImageDecodeError, Preprocessor, check_pixel_budget

_JPEG_START = b"\xff\xd8\xff"
_JPEG_END = b"\xff\xd9"
# Modes decode_jpeg turns into RGB as Pillow does; CMYK/YCCK colour conversion differs between the two.
_BATCHED_MODES = ("RGB", "L")
_EXIF_ORIENTATION = 0x0112
# A header larger than this is unusual (big ICC or EXIF blocks): Pillow's lazy open reads what it needs.
_HEADER_BYTES = 1 << 16

# torchvision 0.29 deprecates its image decoders in favour of TorchCodec, which the pinned stack does not ship;
# the warning would repeat for every batch of every worker.
warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision.io.image")

# Why a file went to Pillow, as the worker's log counts them.
NOT_JPEG, COLOUR, ROTATED, NO_END, BAD_HEADER, TOO_LARGE, REFUSED = (
    "not a JPEG", "CMYK/YCCK colour", "EXIF-rotated", "no end marker (truncated?)", "header not readable",
    "size refused (pixel limit or zero side)", "refused by decode_jpeg")


class JpegBatchDecoder:
    """Decode a mini-batch's JPEGs in batches on `device`, the rest with `pillow` (path -> tensor or error).

    :param pillow: the Pillow path for one file: uint8 (3, side, side) CPU tensor, or `ImageDecodeError`.
    """

    def __init__(self, preprocess: Preprocessor, device: torch.device, *, max_pixels: int, min_side: int,
                 pillow: Callable[[str], torch.Tensor | ImageDecodeError]):
        from torchvision.io import ImageReadMode, decode_jpeg

        self._decode_jpeg, self._rgb = decode_jpeg, ImageReadMode.RGB
        self.preprocess, self.device = preprocess, device
        self.max_pixels, self.min_side = max_pixels, min_side
        self.pillow = pillow
        self.fallbacks: collections.Counter[str] = collections.Counter()  # why files went to Pillow
        self.batched = 0  # files decoded by decode_jpeg

    def decode(self, paths: Sequence[str]) -> list[torch.Tensor | ImageDecodeError]:
        outcomes: list[torch.Tensor | ImageDecodeError | None] = [None] * len(paths)
        batch: list[tuple[int, torch.Tensor]] = []
        for index, path in enumerate(paths):
            data, reason = self.jpeg_bytes(path)
            if data is None:
                self.fallbacks[reason] += 1
                outcomes[index] = self._on_device(self.pillow(path))
            else:
                batch.append((index, data))
        for (index, data), pixels in zip(batch, self._decode_batch([data for _index, data in batch])):
            if pixels is None:
                self.fallbacks[REFUSED] += 1
                outcomes[index] = self._on_device(self.pillow(paths[index]))
            else:
                self.batched += 1
                outcomes[index] = self.preprocess.resize(pixels)
        return outcomes

    def jpeg_bytes(self, path: str) -> tuple[torch.Tensor | None, str]:
        """The file's bytes as a uint8 tensor when the batched call can decode it as Pillow would, else why not.

        Unreadable, empty and too-large files go to Pillow too: it names their error in the usual words."""
        try:
            with open(path, "rb") as handle:
                head = handle.read(_HEADER_BYTES)
                if not head.startswith(_JPEG_START):
                    return None, NOT_JPEG
                data = head + handle.read()
        except OSError:
            return None, BAD_HEADER
        if not data.rstrip(b"\x00\r\n ").endswith(_JPEG_END):
            return None, NO_END
        try:
            with Image.open(io.BytesIO(data), formats=("JPEG",)) as header:  # lazy: the header only
                if header.mode not in _BATCHED_MODES:
                    return None, COLOUR
                if header.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                    return None, ROTATED
                check_pixel_budget(*header.size, self.max_pixels, self.min_side)
        except ImageDecodeError:
            return None, TOO_LARGE
        except Exception:  # noqa: BLE001 - whatever Pillow's header parser raises, Pillow's full path names it
            return None, BAD_HEADER
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), ""

    def _decode_batch(self, encoded: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """Decoded (3, H, W) uint8 on the device per input, None where decode_jpeg refuses it. One batched call;
        when it raises (one bad file fails the whole call on CUDA), each file alone."""
        if not encoded:
            return []
        _settle_current_stream(self.device)
        try:
            return list(self._decode_jpeg(encoded, mode=self._rgb, device=self.device))
        except (RuntimeError, ValueError):
            if len(encoded) == 1:
                return [None]
        return [pixels for data in encoded for pixels in self._decode_batch([data])]

    def _on_device(self, outcome: torch.Tensor | ImageDecodeError) -> torch.Tensor | ImageDecodeError:
        if isinstance(outcome, torch.Tensor):
            return outcome.to(self.device, non_blocking=True)
        return outcome

    def summary(self) -> str:
        """How this worker's files were decoded so far, for its log."""
        total = self.batched + sum(self.fallbacks.values())
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.fallbacks.most_common())
        return (f"{self.batched} of {total} files decoded by decode_jpeg on {self.device.type}"
                + (f"; Pillow decoded the rest: {reasons}" if reasons else ""))


def _settle_current_stream(device: torch.device) -> None:
    """On CUDA, wait for the work queued on the caller's stream before decode_jpeg writes.

    decode_jpeg allocates its outputs on the caller's stream but writes them from nvJPEG's own stream, without
    waiting for the caller's: the caching allocator can hand it a block that kernels queued on the caller's
    stream (the previous chunk's resize) have yet to read, and nvJPEG overwrites it first: wrong pixels, no
    error. The decode call blocks the host until it is done anyway, so waiting first costs little."""
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()
