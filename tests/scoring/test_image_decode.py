import io

import numpy as np
import pytest
from PIL import Image

from support import image_bytes
from scoring.image_decode import ImageDecodeError, Preprocessor, decode_image
from scoring.model import Preprocessing


def _gif_two_frames() -> bytes:
    first, second = Image.new("P", (20, 10), 1), Image.new("P", (20, 10), 2)
    buffer = io.BytesIO()
    first.save(buffer, format="GIF", save_all=True, append_images=[second])
    return buffer.getvalue()


def _png_16bit() -> bytes:
    array = np.full((8, 12), 40000, dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (0, 128, 255)).save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, data",
    [
        ("baseline.jpg", image_bytes("JPEG")),
        ("progressive.jpg", image_bytes("JPEG", progressive=True)),
        ("cmyk.jpg", image_bytes("JPEG", mode="CMYK", color=(0, 100, 100, 0))),
        ("rgba.png", image_bytes("PNG", mode="RGBA", color=(10, 20, 30, 0))),
        ("palette.png", image_bytes("PNG", mode="P")),
        ("gray.png", image_bytes("PNG", mode="L")),
        ("deep.png", _png_16bit()),
        ("photo.webp", image_bytes("WEBP")),
        ("anim.gif", _gif_two_frames()),
        ("photo.bmp", image_bytes("BMP")),
        ("photo.tiff", image_bytes("TIFF")),
        ("naïve café – 写真.jpg", image_bytes("JPEG")),
    ],
)
def test_decodes_every_supported_kind_to_rgb(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    image = decode_image(path)
    assert image.mode == "RGB"
    assert image.size[0] > 0 and image.size[1] > 0
    assert len(image.getpixel((0, 0))) == 3  # pixels still readable after the file is closed


def test_transparent_pixels_become_white_not_black(tmp_path):
    path = tmp_path / "clear.png"
    path.write_bytes(image_bytes("PNG", mode="RGBA", color=(0, 0, 0, 0)))
    assert decode_image(path).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_png_keeps_its_brightness(tmp_path):
    path = tmp_path / "deep.png"
    path.write_bytes(_png_16bit())
    assert decode_image(path).getpixel((0, 0)) == (155, 155, 155)  # 40000/65535*255, not clipped to 255


def test_large_jpegs_decode_at_a_reduced_scale_but_never_below_the_resize(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(image_bytes("JPEG", size=(1200, 700)))
    assert decode_image(path, min_side=256).size == (600, 350)
    assert decode_image(path, min_side=400).size == (1200, 700)


def test_exif_orientation_is_honoured(tmp_path):
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_rotated_jpeg())
    assert decode_image(path).size == (20, 40)


@pytest.mark.parametrize(
    "data, error_type",
    [
        (b"", "empty"),
        (b"hello, I am a text file\n", "not_an_image"),
        (image_bytes("JPEG", size=(400, 400))[:300], "truncated"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "corrupt"),
    ],
)
def test_refuses_bad_files_with_a_reason(tmp_path, data, error_type):
    path = tmp_path / "bad.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(path)
    assert caught.value.error_type == error_type
    assert "\n" not in caught.value.message and caught.value.message


def test_refuses_decompression_bomb_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(image_bytes("PNG", size=(2000, 2000), mode="L"))
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(path, max_pixels=1_000_000)
    assert caught.value.error_type == "too_large"
    assert "4000000" in caught.value.message


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(tmp_path / "gone.jpg")
    assert caught.value.error_type == "unreadable"


def test_preprocessor_uses_the_metadata_constants(tmp_path):
    preprocessing = Preprocessing(resize=40, input_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    tensor = Preprocessor(preprocessing)(Image.new("RGB", (90, 60), (255, 0, 0)))
    assert tuple(tensor.shape) == (3, 32, 32)
    assert tensor[0].min().item() == pytest.approx(1.0) and tensor[1].max().item() == pytest.approx(-1.0)


@pytest.mark.parametrize("size", [(1, 10_000_000), (100_000, 1)])
def test_an_extreme_aspect_ratio_is_too_large_before_any_decoding(tmp_path, size):
    """The fault probe's 178-byte 1 x 10,000,000 PNG passed the pixel limit and blew up at the resize."""
    from PIL import Image

    path = tmp_path / "strip.png"
    Image.new("L", size).save(path, optimize=True)
    assert path.stat().st_size < 100_000
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(path, max_pixels=64_000_000, min_side=64)
    assert caught.value.error_type == "too_large"
    assert "aspect ratio" in caught.value.message and "above the limit of 64000000" in caught.value.message


def test_an_unexpected_exception_in_one_file_costs_that_file_only(tmp_path, model_dir, monkeypatch):
    """A decoder raising a type nobody listed becomes that image's row; its neighbours are scored."""
    import json

    from scoring import decoders
    from scoring.mini_batch import MiniBatchScorer, Stamp

    for name in ("a.jpg", "boom.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(image_bytes("JPEG"))
    real_decode = decoders.decode_image

    def decode(path, **kwargs):
        if str(path).endswith("boom.jpg"):
            raise KeyError("an exotic chunk")
        return real_decode(path, **kwargs)

    monkeypatch.setattr(decoders, "decode_image", decode)
    scorer = MiniBatchScorer(model_dir=model_dir, stamp=Stamp("m", "1", "202610"), input_root=str(tmp_path))
    rows = {row["image"]: row for row in map(json.loads, scorer.score([str(tmp_path / n) for n in
                                                                        ("a.jpg", "boom.jpg", "c.jpg")]))}
    assert rows["boom.jpg"]["error_type"] == "unexpected"
    assert rows["boom.jpg"]["message"] == "KeyError while decoding: 'an exotic chunk'"
    assert "label" in rows["a.jpg"] and "label" in rows["c.jpg"]
