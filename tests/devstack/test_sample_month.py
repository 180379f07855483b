from PIL import Image

import datetime as dt
import json

from devstack.demo import accuracy, dags_test_command
from devstack.sample_month import BROKEN_FILES, LABELS, write_month


def test_a_month_has_every_label_folder_varied_sizes_and_the_broken_files(tmp_path):
    files = write_month(tmp_path, "202610", per_label=4, seed=1)
    relative = {path.relative_to(tmp_path / "202610").as_posix() for path in files}
    assert {name.split("/")[0] for name in relative if "/" in name} == set(LABELS)
    assert {name for name, _why in BROKEN_FILES} <= relative
    good = [path for path in files if path.relative_to(tmp_path / "202610").as_posix()
            not in {name for name, _ in BROKEN_FILES}]
    assert len(good) == 4 * len(LABELS)
    sizes = {Image.open(path).size for path in good}
    assert len(sizes) > 1 and {path.suffix for path in good} <= {".jpg", ".png"}


def test_the_same_seed_makes_the_same_month(tmp_path):
    first = write_month(tmp_path / "a", "202610", per_label=2, seed=3)
    second = write_month(tmp_path / "b", "202610", per_label=2, seed=3)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_the_demo_run_is_due_now_and_names_its_month():
    now = dt.datetime(2026, 11, 26, 15, 40, 12, 345, tzinfo=dt.timezone.utc)
    command = dags_test_command("202610", now)
    assert command[-1] == "2026-11-26T15:40:12+00:00"  # the run starts when it is due: durations are true
    assert json.loads(command[command.index("-c") + 1])["month"] == "202610"


def test_accuracy_reads_the_true_label_from_the_path(tmp_path):
    csv = tmp_path / "predictions.csv"
    csv.write_text("image,label,score,model_name,model_version,month\n"
                   "circle/a.jpg,circle,0.9,m,1,202610\ncross/b.jpg,circle,0.8,m,1,202610\n", encoding="utf-8")
    assert accuracy(csv) == (0.5, 2)
