"""Items of a month folder: every entry accounted for, nothing outside it read, any name round-tripping."""

import os
import random
import socket

import pytest

from scoring.items import InputItem, PathOutsideInput, decode_name, encode_name, image_id, item_path, walk_folder


def _walk(folder) -> dict[str, InputItem]:
    return {item.name: item for item in walk_folder(folder)}


def test_files_in_sub_folders_are_items_with_a_content_identity(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.jpg").write_bytes(b"12345")
    (tmp_path / "top.png").write_bytes(b"1")
    items = _walk(tmp_path)
    assert sorted(items) == ["a/b/x.jpg", "top.png"]
    assert items["a/b/x.jpg"].identity.startswith("5:") and items["a/b/x.jpg"].failure is None


def test_links_special_files_and_loops_are_items_with_a_reason_and_are_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not read")
    month = tmp_path / "month"
    month.mkdir()
    (month / "ok.jpg").write_bytes(b"x")
    (month / "to-file.jpg").symlink_to(outside / "secret.txt")
    (month / "to-folder").symlink_to(outside)
    (month / "loop").symlink_to(month)
    (month / "dangling.jpg").symlink_to(tmp_path / "nowhere")
    os.mkfifo(month / "pipe.jpg")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(month / "sock"))
        items = _walk(month)
    assert sorted(items) == ["dangling.jpg", "loop", "ok.jpg", "pipe.jpg", "sock", "to-file.jpg", "to-folder"]
    for name in ("dangling.jpg", "loop", "to-file.jpg", "to-folder"):
        assert items[name].failure[0] == "unreadable" and "symbolic link, not followed" in items[name].failure[1]
    assert "not a regular file (a FIFO)" in items["pipe.jpg"].failure[1]
    assert "a socket" in items["sock"].failure[1]
    assert not any("secret" in name for name in items)


def test_a_folder_that_cannot_be_listed_is_one_item_with_the_reason(tmp_path, monkeypatch):
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "in.jpg").write_bytes(b"x")
    (tmp_path / "ok.jpg").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path):  # root reads any folder: stand in for the permission the kernel would refuse
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    items = _walk(tmp_path)
    assert sorted(items) == ["locked", "ok.jpg"]
    assert items["locked"].failure == ("unreadable", "folder cannot be listed (Permission denied); fix its "
                                                     "permissions to score the files in it")


def test_names_that_are_not_utf8_are_escaped_reversibly_and_the_file_is_reachable(tmp_path):
    raw = b"caf\xe9 \\ \xff.jpg"
    with open(os.path.join(os.fsencode(tmp_path), raw), "wb") as handle:
        handle.write(b"data")
    (item,) = walk_folder(tmp_path)
    assert item.name == "caf\\xe9 \\\\ \\xff.jpg"
    assert item.name.encode("utf-8")  # writable as UTF-8 anywhere
    assert item_path(tmp_path, item.name).read_bytes() == b"data"
    assert image_id(item_path(tmp_path, item.name), tmp_path) == item.name


def test_a_path_the_service_mounted_elsewhere_is_placed_by_the_month_folder_that_holds_it():
    # The data asset mounted under the service's own path: what follows the month's folder is the item.
    assert image_id("/mnt/azureml/cr/j/abc/cap/data-capability/wd/INPUT_images/202610/circle/a b.jpg",
                    "/mnt/other/spelling/202610") == "circle/a b.jpg"
    assert image_id("/mnt/x/202610/sub/202610/b.jpg", "/y/202610") == "sub/202610/b.jpg"  # the first one holds it


def test_a_path_placed_nowhere_raises_naming_it_and_the_root():
    with pytest.raises(PathOutsideInput, match=r"^mini-batch item '/elsewhere/a.jpg' is not under the input root "
                                               r"'/month', and no folder of its path is named 'month'"):
        image_id("/elsewhere/a.jpg", "/month")


def test_any_name_round_trips_property_style():
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(1, 0x250)] + ["\r", "\n", '"', ",", "=", "-", "\\", "é", "\u2028", "😀"]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        raw = os.fsdecode(text.encode("utf-8") + bytes([rng.randint(0x80, 0xff)]) * rng.randint(0, 2))
        assert decode_name(encode_name(raw)) == raw
        encode_name(raw).encode("utf-8")


def test_an_item_under_another_spelling_of_the_input_root_keeps_its_name(tmp_path):
    # The service's mount point and the --input_root it passes may differ in text (a symbolic link on the way).
    real = tmp_path / "mnt" / "data" / "202610"
    (real / "day 1").mkdir(parents=True)
    (real / "day 1" / "a.jpg").write_bytes(b"x")
    (tmp_path / "inputs").symlink_to(real, target_is_directory=True)
    assert image_id(real / "day 1" / "a.jpg", tmp_path / "inputs") == "day 1/a.jpg"
    assert image_id(tmp_path / "inputs" / "day 1" / "a.jpg", real) == "day 1/a.jpg"
