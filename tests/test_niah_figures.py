"""The NIAH heatmaps say how many documents each cell averages (a 0.50 over 2 documents is not a rate)."""

from dynheads.suite.niah import figures


def _cells(n):
    return [{"length": length, "depth": depth, "n": n, "acc": 0.5} for length in (500, 1000) for depth in (0.0, 1.0)]


def test_the_heatmap_title_names_the_documents_per_cell(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: seen.update(title=fig._suptitle.get_text()))
    figures.condition_heatmaps([("none", _cells(2)), ("dynamic", _cells(2))], "acc", "NIAH accuracy", tmp_path / "a.png")
    assert seen["title"] == "NIAH accuracy\n(each cell: the mean over 2 documents)"
    figures.condition_heatmaps([("none", _cells(2)), ("dynamic", _cells(3))], "acc", "NIAH accuracy", tmp_path / "b.png")
    assert seen["title"].endswith("(each cell: the mean over 2-3 documents)")
