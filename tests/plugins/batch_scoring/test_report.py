import base64
import io
from html.parser import HTMLParser
from types import SimpleNamespace

from PIL import Image

from batch_scoring.drift import compare
from batch_scoring.report import LOWEST_SHOWN, summarize, write_report
from scoring.blob_location import BlobFolder

HEADER = "image,label,score,model_name,model_version,month\n"


def _folder(tmp_path, predictions: list[str], errors: list[str]):
    (tmp_path / "predictions.csv").write_text(HEADER + "".join(predictions), encoding="utf-8")
    (tmp_path / "errors.csv").write_text("image,error_type,message\n" + "".join(errors), encoding="utf-8")
    return tmp_path


class _SignedContainer:
    """What a container client made from a SAS connection string shows: its URL carries the signature."""

    account_name = "store1"

    def __init__(self, name: str):
        self.container_name = name
        self.url = f"https://store1.blob.core.windows.net/{name}?sv=2024-08-04&sp=rwdl&sig=SECRET%3D"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])

    def handle_data(self, data):
        self.text.append(data)


def _parse(path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


ROWS = [f"img{index:03d}.jpg,{'circle' if index % 3 else 'square'},{(index % 100) / 100:.2f},m,1,202610\n"
        for index in range(300)]
ERRORS = ["bad.jpg,corrupt,cannot decode\n", "empty.jpg,empty,0 bytes\n", "zz.jpg,corrupt,truncated\n"]


def test_summary_counts_labels_scores_errors_and_the_lowest_scores_across_chunks(tmp_path):
    folder = _folder(tmp_path, ROWS, ERRORS)
    summary = summarize(folder, chunk_rows=64)
    assert (summary.scored, summary.errors, summary.inputs) == (300, 3, 303)
    assert summary.labels == {"circle": 200, "square": 100}
    assert sum(summary.score_bins) == 300 and summary.score_bins[0] == 15  # scores 0.00-0.04, three times each
    assert summary.errors_by_type == {"corrupt": 2, "empty": 1}
    assert summary.error_examples["corrupt"] == ("bad.jpg", "cannot decode")
    assert [score for _, _, score in summary.lowest] == sorted(score for _, _, score in summary.lowest)
    assert len(summary.lowest) == LOWEST_SHOWN and summary.lowest[0][2] == 0.0
    assert summary.to_manifest() == {"labels": {"circle": 200, "square": 100}, "score_bins": summary.score_bins}


def test_the_report_is_one_page_whose_charts_are_images_and_first_month_says_so(tmp_path):
    folder = _folder(tmp_path, ROWS, ERRORS)
    summary = summarize(folder)
    path = write_report(folder, summary, month="202610", model="m:1", job_name="job-1", drift=None,
                        previous_month="202609", run={"run_id": "manual__x", "duration_s": 10.0},
                        inputs=BlobFolder.of(_SignedContainer("images"), "202610/"),
                        outputs=BlobFolder.of(_SignedContainer("predictions"), "202610/"),
                        beside=("predictions.csv", "errors.csv", "manifest.json"))
    page = _parse(path)
    text = " ".join(page.text)
    assert len(page.images) == 4  # label mix, score histogram, mean score per label, errors by type
    for source in page.images:
        header, data = source.split(",", 1)
        assert header == "data:image/png;base64"
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            image.verify()
    assert "Nothing to compare with: no published month 202609." in text
    assert "30.3 images/s" in text and "10.0 s" in text and "manual__x" in text
    # Where the folders are, in words and a command; links only to the files beside the report (relative).
    assert page.links == ["predictions.csv", "errors.csv", "manifest.json"]
    assert "container 'images', folder 202610/ on storage account 'store1'" in text
    assert "az storage blob list --account-name store1 --container-name predictions --prefix 202610/" in text
    assert "SECRET" not in path.read_text(encoding="utf-8") and "?" not in "".join(page.links)
    assert "img000.jpg" in text  # among the lowest-confidence images


def test_drift_is_shown_with_a_warning_and_names_cannot_inject_markup(tmp_path):
    folder = _folder(tmp_path, ['<script>alert(1)</script>.jpg,circle,0.5,m,1,202610\n'], [])
    summary = summarize(folder)
    previous = {"labels": {"circle": 10, "square": 90}, "score_bins": [0] * 10 + [1] * 10}
    drift = compare(previous, summary.to_manifest(), previous_month="202609", threshold=0.2)
    path = write_report(folder, summary, month="202610", model="m:1", job_name="j", drift=drift,
                        previous_month="202609")
    source = path.read_text(encoding="utf-8")
    assert "<script>" not in source and "&lt;script&gt;" in source
    text = " ".join(_parse(path).text)
    assert "Warning: drift vs 202609" in text and "+90.0" in text and "-90.0" in text


def _drawn(monkeypatch, make_chart):
    """The axes a chart function draws, laid out as the report's PNG is (the drawing is what a reader sees)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from batch_scoring import report

    drawn = {}

    def keep(draw, *, width=6.0, height=3.0):
        figure, axes = plt.subplots(figsize=(width, height), dpi=100)
        draw(axes)
        figure.tight_layout()
        figure.canvas.draw()
        drawn.update(figure=figure, axes=axes)
        return ""

    monkeypatch.setattr(report, "_chart", keep)
    make_chart(report)
    return drawn["figure"], drawn["axes"]


def test_the_errors_chart_counts_in_whole_numbers(monkeypatch):
    _figure, axes = _drawn(monkeypatch, lambda report: report._bar_chart(
        {"corrupt": 1, "empty": 2, "truncated": 1}, ylabel="images", counts=True))
    ticks = [tick for tick in axes.get_yticks() if axes.get_ylim()[0] <= tick <= axes.get_ylim()[1]]
    assert ticks and all(float(tick).is_integer() for tick in ticks), ticks


def test_the_label_mix_legend_sits_above_the_bars_and_covers_none(monkeypatch):
    before = {"labels": {"circle": 40, "square": 30, "triangle": 20, "cross": 10}, "score_bins": [1] * 20}
    summary = SimpleNamespace(labels={"circle": 10, "square": 20, "triangle": 30, "cross": 40})
    drift = compare(before, {"labels": summary.labels, "score_bins": [1] * 20}, previous_month="202609")
    figure, axes = _drawn(monkeypatch, lambda report: report._label_chart(summary, drift))
    renderer = figure.canvas.get_renderer()
    legend = axes.get_legend().get_window_extent(renderer)
    bars = [patch.get_window_extent(renderer) for patch in axes.patches]
    assert len(bars) == 8 and not any(legend.overlaps(bar) for bar in bars)
    assert legend.y0 >= axes.get_window_extent(renderer).y1 - 1  # above the plotting area
