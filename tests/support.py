"""Helpers the tests share: image bytes of any format, a small month with broken files."""

from __future__ import annotations

import io
import os
from pathlib import Path

# Where the batched-decoding tests decode: the CPU in CI; `cuda` when bench/gpu.sh runs them on a GPU host.
DECODE_DEVICE = os.environ.get("SCORING_TEST_DEVICE", "cpu")


def running_azurite(tmp_path_factory, name: str):
    """For fixtures: a real Azurite on a free port in its own folder, stopped (by its process group) at the end."""
    from devstack import azurite as azurite_service

    location = tmp_path_factory.mktemp(name)
    service = azurite_service.start(location, port=azurite_service.free_port())
    yield service
    azurite_service.stop(location)


def image_bytes(fmt: str = "JPEG", size=(64, 48), mode: str = "RGB", color=(200, 30, 30), **save) -> bytes:
    from PIL import Image

    image = Image.new(mode, size, color if mode in ("RGB", "RGBA", "CMYK") else 128)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def write_small_month(folder: Path, *, good: int = 6) -> dict[str, str]:
    """A few good images in label folders plus the usual broken ones; returns {item: 'ok' | expected error}."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for index in range(good):
        label = ("circle", "square", "triangle")[index % 3]
        fmt, ext = (("PNG", "png") if index % 2 else ("JPEG", "jpg"))
        relative = f"{label}/img {index:02d}.{ext}"
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(image_bytes(fmt, size=(40 + index * 7, 50)))
        expected[relative] = "ok"
    broken = {
        "circle/empty.jpg": (b"", "empty"),
        "square/truncated.jpg": (image_bytes("JPEG", size=(300, 300))[:400], "truncated"),
        "notes.txt": (b"not an image\n", "not_an_image"),
    }
    for relative, (data, error_type) in broken.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
        expected[relative] = error_type
    return expected


# Every format Pillow writes here, in a mode it takes, and how each file is damaged.
_ODD_FORMATS = (("JPEG", "RGB", "jpg"), ("PNG", "RGBA", "png"), ("PNG", "P", "png"), ("GIF", "P", "gif"),
                ("BMP", "RGB", "bmp"), ("TIFF", "CMYK", "tif"), ("WEBP", "RGB", "webp"), ("ICO", "RGBA", "ico"),
                ("TGA", "RGB", "tga"), ("PPM", "RGB", "ppm"), ("PCX", "RGB", "pcx"), ("SGI", "RGB", "sgi"),
                ("IM", "RGB", "im"), ("DDS", "RGBA", "dds"), ("QOI", "RGBA", "qoi"), ("XBM", "1", "xbm"),
                ("SPIDER", "F", "spi"), ("ICNS", "RGBA", "icns"), ("MPO", "RGB", "mpo"), ("PDF", "RGB", "pdf"))


def write_odd_images(folder: Path) -> int:
    """Whole, truncated, header-damaged and 12-byte versions of an image in each format, interleaved by name so
    that a mini-batch mixes them; returns how many files."""
    import random

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    noise = random.Random(7)
    count = 0
    for index, (fmt, mode, ext) in enumerate(_ODD_FORMATS):
        image = Image.new(mode, (48, 32), 100 if mode in ("P", "1", "F") else (40, 160, 90, 255)[: len(mode)])
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        data = buffer.getvalue()
        damaged = data[:20] + bytes(noise.randrange(256) for _ in range(16)) + data[36:]
        for variant, content in (("whole", data), ("truncated", data[: len(data) // 2]), ("header", damaged),
                                 ("tiny", data[:12])):
            (folder / f"{variant}-{index:02d}-{fmt.lower()}.{ext}").write_bytes(content)
            count += 1
    return count


class Mailbox:
    """A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it receives: the alerts' mailbox."""

    def __init__(self):
        self.messages: list = []
        self.port = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's handler name
        import email

        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def subjects(self) -> list[str]:
        import email.header

        return [str(email.header.make_header(email.header.decode_header(m["Subject"]))) for m in self.messages]

    def connection_env(self) -> dict[str, str]:
        """`smtp_default` pointing at this server, as the environment variable Airflow reads."""
        import json

        return {"AIRFLOW_CONN_SMTP_DEFAULT": json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": self.port,
            "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "airflow@example.com"}})}


def running_mailbox():
    """A generator fixture body: yields a started Mailbox, stops it after."""
    from aiosmtpd.controller import Controller

    from devstack.azurite import free_port

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()

