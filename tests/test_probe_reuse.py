"""The suite reuses a fitted probe while its generations and settings are unchanged, and refits one saved before
probes recorded the documents they were fitted on."""

from __future__ import annotations

import json
from types import SimpleNamespace

import dynheads.probes.dataset as dataset
import dynheads.probes.train as train
from dynheads.suite.probing import fit_or_reuse

SETTINGS = {"seed": 0, "max_offset": 1, "components": 2, "max_epochs": 1, "hidden_sizes": [4]}


class _Probe:
    def save(self, path, **meta):
        path.write_text(json.dumps(meta))


def test_a_cached_probe_is_reused_unless_it_predates_recorded_documents(tmp_path, monkeypatch):
    fits = []
    monkeypatch.setattr(dataset, "load_step_vectors", lambda folders: SimpleNamespace(kind="copy_paste"))
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: (fits.append(1), (_Probe(), {"kind": "copy_paste", "hidden_dim": 4, "heads": 2, "fitted_documents": ["d1"]}))[1])
    suite = SimpleNamespace(dir=tmp_path, name="tiny", computed=0, progress=lambda xs, **_: xs,
                            lm=SimpleNamespace(engine=SimpleNamespace(device="cpu")))
    cells = [{"settings": {"cell": 1}}]
    assert fit_or_reuse(suite, "probes", cells, [], SETTINGS)["kind"] == "copy_paste" and len(fits) == 1
    fit_or_reuse(suite, "probes", cells, [], SETTINGS)
    assert len(fits) == 1  # reused
    saved = json.loads((tmp_path / "probes.json").read_text())
    del saved["report"]["fitted_documents"]  # a probe of an earlier version did not record its documents
    (tmp_path / "probes.json").write_text(json.dumps(saved))
    assert fit_or_reuse(suite, "probes", cells, [], SETTINGS)["kind"] == "copy_paste" and len(fits) == 2
    assert json.loads((tmp_path / "probes.pt").read_text())["documents"] == ["d1"]  # the probe file records them
    fit_or_reuse(suite, "probes", [{"settings": {"cell": 2}}], [], SETTINGS)
    assert len(fits) == 3  # other generations: refitted


def test_a_report_of_an_older_layout_is_recomputed_from_the_saved_probe_without_refitting(tmp_path, monkeypatch):
    """The RAG cells record the probe file's digest: a new report layout must not rewrite the file."""
    import dynheads.probes.mlp as mlp

    calls = []
    monkeypatch.setattr(dataset, "load_step_vectors", lambda folders: SimpleNamespace(kind="copy_paste"))
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: (calls.append(k.get("fitted")), (_Probe(), {
        "kind": "copy_paste", "hidden_dim": 4, "heads": 2, "fitted_documents": ["d1"], "layout": len(calls)}))[1])
    monkeypatch.setattr(mlp, "load_probe", lambda path: ("loaded " + path.name, {}))
    suite = SimpleNamespace(dir=tmp_path, name="tiny", computed=0, progress=lambda xs, **_: xs,
                            lm=SimpleNamespace(engine=SimpleNamespace(device="cpu")))
    cells = [{"settings": {"cell": 1}}]
    fit_or_reuse(suite, "probes", cells, [], SETTINGS)
    probe_bytes = (tmp_path / "probes.pt").read_bytes()
    saved = json.loads((tmp_path / "probes.json").read_text())
    saved["settings"]["report_format"] = train.REPORT_FORMAT - 1  # written by an older version
    (tmp_path / "probes.json").write_text(json.dumps(saved))
    assert fit_or_reuse(suite, "probes", cells, [], SETTINGS)["layout"] == 2
    assert calls == [None, "loaded probes.pt"]  # scored again with the saved probe, not refitted
    assert (tmp_path / "probes.pt").read_bytes() == probe_bytes
    assert json.loads((tmp_path / "probes.json").read_text())["settings"]["report_format"] == train.REPORT_FORMAT
    fit_or_reuse(suite, "probes", cells, [], SETTINGS)
    assert len(calls) == 2  # the new report is reused as it stands


def test_the_kv_offset_probe_is_reused_only_for_the_same_cells_and_folders(tmp_path, monkeypatch):
    """The kv stage's offset probe shares the probe cache: a rerun reuses the saved probe (its identity on disk is the
    cells' settings, the folders' names, the fit settings and the format), other cells or folders refit it."""
    import numpy as np

    import dynheads.probes.ahead as ahead
    from dynheads.suite.kv.stage import PROBE_FORMAT, offset_probe

    fits = []
    data = SimpleNamespace(kind="copy_paste", hidden=np.zeros((3, 4)), scores=np.zeros((3, 2)), documents=["d2", "", "d1"])
    monkeypatch.setattr(dataset, "load_step_vectors", lambda folders: data)
    monkeypatch.setattr(ahead, "fit_ahead", lambda *a, **k: (fits.append(1), (_Probe(), {"validation": len(fits)}))[1])
    fit = {"seed": 0, "max_epochs": 1, "hidden_sizes": [4]}
    suite = SimpleNamespace(dir=tmp_path, name="tiny", computed=0, progress=lambda xs, **_: xs, profile={"kv": {"probe": fit}},
                            lm=SimpleNamespace(engine=SimpleNamespace(device="cpu")))
    cells, folders = [{"settings": {"cell": 1}}], [tmp_path / "b", tmp_path / "a"]
    assert offset_probe(suite, "niah", cells, folders, "copy_paste") == tmp_path / "kv_probe_niah.pt"
    saved = json.loads((tmp_path / "kv_probe_niah.json").read_text())
    assert saved == {"settings": {"cells": [{"cell": 1}], "folders": ["a", "b"], **fit, "format": PROBE_FORMAT},
                     "report": {"validation": 1}}
    assert json.loads((tmp_path / "kv_probe_niah.pt").read_text())["documents"] == ["d1", "d2"]
    offset_probe(suite, "niah", cells, folders, "copy_paste")
    assert len(fits) == 1 and suite.computed == 1  # reused
    offset_probe(suite, "niah", [{"settings": {"cell": 2}}], folders, "copy_paste")
    assert len(fits) == 2  # fitted on other cells: refitted
    offset_probe(suite, "niah", [{"settings": {"cell": 2}}], folders[:1], "copy_paste")
    assert len(fits) == 3  # on other folders: refitted
