"""Decode an image file into RGB, or say in one word and one line why it cannot be.

Pure functions, no model: `decode_image` turns a path into an upright RGB PIL
image or raises `ImageDecodeError(error_type, message)`; `Preprocessor` turns
RGB images into the normalised tensor the model expects.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from torchvision.transforms import v2

from scoring.job_settings import DEFAULT_MAX_PIXELS
from scoring.model_metadata import Preprocessing
from scoring.rows import ErrorType

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


class ImageDecodeError(Exception):
    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    @classmethod
    def unexpected(cls, error: BaseException) -> ImageDecodeError:
        """Any other exception while reading or preprocessing one file: that file's error, with its class."""
        text = " ".join(str(error).split())
        return cls(ErrorType.UNEXPECTED, f"{type(error).__name__} while decoding: {text}" if text
                   else f"{type(error).__name__} while decoding")


def decode_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_side: int | None = None) -> Image.Image:
    """Open, verify size, fully decode and orient one image as RGB.

    With `min_side`, a JPEG is decoded at the smallest DCT scale whose both sides
    stay >= `min_side` (2-4x faster on photos, same pixels after the resize that follows),
    and the pixel budget also holds for the image resized to that short side: an extreme
    aspect ratio (1 x 10,000,000) is refused before decoding, not at the resize.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ImageDecodeError(ErrorType.UNREADABLE, f"cannot read file: {error.strerror or error}") from None
    if size == 0:
        raise ImageDecodeError(ErrorType.EMPTY, "file is empty (0 bytes)")
    _settle_pillow()
    try:
        with Image.open(path, formats=_FORMATS) as image:
            width, height = image.size
            check_pixel_budget(width, height, max_pixels, min_side)
            image.seek(0)  # animated GIF/WebP: the first frame
            if min_side and image.format == "JPEG":
                image.draft(image.mode, (min_side, min_side))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no copy when already upright
            return _to_rgb(image)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(ErrorType.TOO_LARGE, str(error)) from None
    except UnidentifiedImageError:
        claimed = _claimed_format(path)
        if claimed:
            raise ImageDecodeError(ErrorType.CORRUPT, f"starts like a {claimed} file but its header is broken") from None
        raise ImageDecodeError(ErrorType.NOT_AN_IMAGE, "not a recognised image format") from None
    except PermissionError as error:
        raise ImageDecodeError(ErrorType.UNREADABLE, f"cannot read file: {error.strerror}") from None
    except OSError as error:
        text = str(error)
        kind = ErrorType.TRUNCATED if "truncated" in text.lower() else ErrorType.CORRUPT
        raise ImageDecodeError(kind, f"cannot decode image data: {text}") from None
    except (SyntaxError, ValueError, EOFError, IndexError, TypeError) as error:
        # Pillow's plugins raise these on malformed headers and chunks.
        raise ImageDecodeError(ErrorType.CORRUPT, f"cannot decode image data: {error}") from None


_FORMATS: tuple[str, ...] | None = None


def _settle_pillow() -> None:
    """Fix Pillow's process-wide state once, so that no file's outcome depends on the files decoded before it
    in the same worker: every format plugin registered up front, in one order (Pillow otherwise loads them
    lazily, at the first file its five common plugins refuse, which changes the order files are tried against
    them); truncated images refused whatever an imported library set; the decompression-bomb warning an
    error, set once rather than around each decode (`warnings.catch_warnings` is not thread-safe, and decode
    threads share the filters)."""
    global _FORMATS
    if _FORMATS is not None:
        return
    Image.init()
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    _FORMATS = tuple(Image.ID)


def check_pixel_budget(width: int, height: int, max_pixels: int, min_side: int | None) -> None:
    """Refuse, as `too_large` (or `corrupt` for a zero side), an image of this size before it is decoded."""
    if width < 1 or height < 1:
        raise ImageDecodeError(ErrorType.CORRUPT, f"image header claims a size of {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError(
            ErrorType.TOO_LARGE, f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}")
    if min_side:
        short, long = sorted((width, height))
        resized = min_side * -(-min_side * long // short)  # the short side scaled to min_side
        if resized > max_pixels:
            raise ImageDecodeError(
                ErrorType.TOO_LARGE,
                f"{width}x{height} has an aspect ratio of {long / short:.0f}:1; resized to a short side of "
                f"{min_side} it would have {resized} pixels, above the limit of {max_pixels}")


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
)


def _claimed_format(path: Path) -> str | None:
    """The format a file's first bytes claim, to tell a broken image from a non-image."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "I":
        # Pillow's convert() clips 16-bit samples at 255; rescale to 8 bits instead.
        # float32 in place: a 64-megapixel image costs 4 bytes per pixel here, not 3 float64 copies.
        array = np.asarray(image).astype(np.float32)
        peak = 65535.0 if image.mode in _SIXTEEN_BIT_MODES else max(float(array.max()), 1.0)
        array *= 255.0 / peak
        gray = np.clip(array, 0, 255, out=array).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, as a viewer shows them, not black.
        # Pasted through its alpha onto white: two RGB-sized copies at most, not four RGBA ones.
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


_INTERPOLATION = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC,
                  "nearest": v2.InterpolationMode.NEAREST}


class Preprocessor:
    """Resize (and centre-crop) and normalise, with the constants of the model's metadata.

    Split in two for throughput: `crop` (per image, in the decode threads) keeps
    uint8 pixels; `normalize` (per batch) converts and normalises all at once.
    Two resize modes: `crop` brings the shorter side to `resize` and takes the
    centre `input_size` square; `stretch` brings the whole image to the square.
    """

    def __init__(self, preprocessing: Preprocessing):
        side, interpolation = preprocessing.side, _INTERPOLATION[preprocessing.interpolation]
        if preprocessing.resize_mode == "crop":
            steps = [v2.Resize(preprocessing.short_side, interpolation=interpolation, antialias=True),
                     v2.CenterCrop(side)]
        else:
            steps = [v2.Resize((side, side), interpolation=interpolation, antialias=True)]
        self._resize = v2.Compose(steps)
        self._crop = v2.Compose([v2.PILToTensor(), *steps])
        self._mean = torch.tensor(preprocessing.mean).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(preprocessing.std).view(1, 3, 1, 1) * 255.0

    def crop(self, image: Image.Image) -> torch.Tensor:
        """uint8 (3, side, side)."""
        return self._crop(image)

    def resize(self, pixels: torch.Tensor) -> torch.Tensor:
        """The same resize (and crop) of an already decoded uint8 (3, H, W) tensor, on its own device."""
        return self._resize(pixels)

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) to the model's normalised float32 input, on the batch's device."""
        return (batch.float() - self._mean.to(batch.device)) / self._std.to(batch.device)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalize(self.crop(image).unsqueeze(0))[0]
