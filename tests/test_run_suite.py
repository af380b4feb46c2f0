"""run_suite.py on a one-cell grid: every stage writes its tables and figures, and a rerun reuses cells."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from dynheads.suite.hotpotqa import profiles as hotpotqa_profile
from dynheads.suite.hotpotqa import stages as hotpotqa

ROOT = Path(__file__).resolve().parent.parent


def _png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:4] == b"\x89PNG"


def _grid_cell(out: Path) -> dict:
    return json.loads((out / "smollm2" / "niah" / "cells" / "L300_D0.5.json").read_text())


@pytest.mark.slow
def test_calibrate_stage(suite_run):
    out, _, row = suite_run
    calibration = json.loads((out / "smollm2" / "calibration.json").read_text())
    # N: the dynamic condition's heads per step that masked something, rounded half up (copying the UUID masks some)
    assert row["matched_n"] == calibration["matched_n"] == math.floor(calibration["masked_per_masked_step"] + 0.5) >= 1
    assert len(calibration["top20"]) == 20
    assert calibration["setting"] == {"lengths": [300], "depths": [0.5], "runs": 1}
    from dynheads.models.versions import installed_versions

    recorded = json.loads((out / "smollm2" / "model.json").read_text())["versions"]
    assert recorded == installed_versions() and recorded["torch"].startswith("2.")
    hot = json.loads((out / "smollm2" / "hotpotqa_calibration.json").read_text())
    assert hot["setting"] == {"examples": 1, "split": "train", "threshold": 0.2} and hot["samples"] == 1


@pytest.mark.slow
def test_niah_stage(suite_run):
    """Figure 2: the four conditions of the prompt; dynamic gates its own heads, static/random gate N."""
    out, _, row = suite_run
    assert row["samples"] == 1 and row["total_heads"] == 270
    from dynheads.metrics.text import contains_exact
    from dynheads.suite.verdicts import load

    (sample,) = _grid_cell(out)["samples"]
    for key, condition in (("acc", "none"), ("acc_mask_dynamic", "dynamic"), ("acc_mask_static", "static"),
                           ("acc_mask_random", "random")):  # the leaderboard's accuracy is the cell's answer, scored
        result = sample["conditions"][condition]
        assert row[key] == result["acc"] == float(contains_exact(result["response"], sample["uuid"])), key
    assert row["rouge_l"] == sample["conditions"]["none"]["rouge_l"] > 0
    with open(out / "leaderboard.csv") as fh:
        assert next(csv.DictReader(fh))["model"] == "smollm2"
    claims = json.loads((out / "claims.json").read_text())  # every declared claim, decided by its rule
    declared = {c.id: c for c in load()[1]}
    assert [c["id"] for c in claims] == list(declared)
    assert {c["claim"] for c in claims} >= {"1 dynamism", "2 irreplaceability", "3 predictability", "4 dynamic RAG"}
    ran = [c for c in claims if c["effect"] is not None]
    assert {c["id"] for c in ran} >= {"C1-NIAH", "C2-NIAH-static", "C2-NIAH-random"}
    for c in claims:  # one document per cell: below every declared minimum, so nothing is decided and no p is adjusted
        min_n = declared[c["id"]].rule.min_n
        expected = "not run" if c["effect"] is None else f"insufficient n (n = {c['n']} < {min_n})"
        assert c["verdict"] == expected and c["p_adjusted"] is None and c["family_size"] == 0, c
    cell = _grid_cell(out)
    conds = cell["samples"][0]["conditions"]
    assert set(conds) == {"none", "dynamic", "static", "random"}
    assert all(g == 0 for g in conds["none"]["gated"])
    assert all(g == len(h) for g, h in zip(conds["dynamic"]["gated"], conds["dynamic"]["heads"]))
    assert all(g == row["matched_n"] for g in conds["static"]["gated"] + conds["random"]["gated"])
    calibration = json.loads((out / "smollm2" / "calibration.json").read_text())
    assert cell["settings"]["static_heads"] == calibration["top20"][: row["matched_n"]]
    for name in ("niah_masking_acc.png", "niah_masking_rouge_l.png"):
        assert _png(out / "smollm2" / name), name


@pytest.mark.slow
def test_dynamism_stage(suite_run):
    """Table 1 / Table 5 are computed from the unmasked traces of the grid."""
    out, _, _ = suite_run
    stats = json.loads((out / "smollm2" / "dynamism.json").read_text())
    steps = _grid_cell(out)["samples"][0]["conditions"]["none"]["heads"]
    assert stats["steps"] == len(steps) > 0
    assert stats["heads_per_step_mean"] == pytest.approx(sum(map(len, steps)) / len(steps))
    assert stats["unique_heads"] == len({tuple(h) for s in steps for h in s})
    for k in (20, 50, 100):
        assert 0.0 <= stats[f"jaccard_static_{k}"] <= 1.0
    table1 = (out / "table1.md").read_text()
    assert f"| smollm2 | 1 | {len(steps)} |" in table1 and "llama3.1-8b" in table1  # ours, then the paper's
    assert "| smollm2 |" in (out / "table5.md").read_text()


@pytest.mark.slow
def test_progressive_stage(suite_run):
    """Figure 3: k = 0 is the unmasked run; k = 5 masks at most 5 heads per step."""
    out, _, row = suite_run
    prog = json.loads((out / "smollm2" / "progressive.json").read_text())
    assert [p["k"] for p in prog] == [0, 5]
    assert prog[0]["static_compensation"] == 0 and prog[0]["acc"] == row["acc"]
    assert 0 < prog[1]["masked_per_step"] <= 5 and not math.isnan(prog[1]["static_compensation"])
    assert "| 5 | 1 |" in (out / "figure3.md").read_text()
    assert _png(out / "smollm2" / "progressive_ablation.png")


@pytest.mark.slow
def test_rerun_reuses_cells_and_a_changed_k_list_recomputes_only_progressive(run_suite, suite_run, tmp_path):
    """On a copy of the session's results (other tests read the originals): a cached rerun recomputes nothing and
    writes the same tables; a changed k list recomputes only the progressive cell."""
    import shutil

    shared, shared_args, row = suite_run
    out = tmp_path / "copy"
    shutil.copytree(shared, out)  # copy2: modification times kept, so "unchanged" below means "not rewritten"
    args = [str(out) if a == str(shared) else a for a in shared_args]
    model = out / "smollm2"
    grid_cell = model / "niah" / "cells" / "L300_D0.5.json"
    prog_cell = model / "progressive" / "cells" / "L300_D0.5.json"
    hotpot_cells = sorted((model / "hotpotqa").glob("cells/*.json")) + sorted((model / "hotpotqa_progressive").glob("cells/*.json"))
    assert len(hotpot_cells) == 3
    stamps = grid_cell.stat().st_mtime_ns, prog_cell.stat().st_mtime_ns
    hotpot_stamps = [p.stat().st_mtime_ns for p in hotpot_cells]
    tables = {p.name: p.read_bytes() for p in out.glob("*.md")}
    first = json.loads((model / "timings.json").read_text())
    assert set(first) == {"load", *(name for name, stage in run_suite.STAGES.items() if stage.run is not None)}
    assert run_suite.main(args) == 0
    # a fully cached rerun keeps the load seconds of the run that computed (its own load read a warm cache)
    assert json.loads((model / "timings.json").read_text())["load"] == first["load"]
    assert (grid_cell.stat().st_mtime_ns, prog_cell.stat().st_mtime_ns) == stamps
    assert [p.stat().st_mtime_ns for p in hotpot_cells] == hotpot_stamps
    assert json.loads((out / "leaderboard.json").read_text())[0] == row
    assert {p.name: p.read_bytes() for p in out.glob("*.md")} == tables  # a cached rerun writes the same tables
    progressive = [a for a in args if a != "--all"]
    progressive[progressive.index("--ks") + 1] = "0,10"
    # a sentinel for the progressive seconds: a recomputation must replace it (two runs can take the same 0.1 s)
    planted = json.loads((model / "timings.json").read_text())
    (model / "timings.json").write_text(json.dumps({**planted, "progressive": -1.0}))
    assert run_suite.main(["--stages", "progressive", *progressive]) == 0
    assert grid_cell.stat().st_mtime_ns == stamps[0] and prog_cell.stat().st_mtime_ns != stamps[1]
    assert [p["k"] for p in json.loads((model / "progressive.json").read_text())] == [0, 10]
    # timings.json keeps, per stage, the seconds of the run that computed it: the cached rerun changed none of
    # them, the last invocation recomputed only the progressive cell
    timings = json.loads((model / "timings.json").read_text())
    assert set(timings) == set(first) and all(v >= 0 for v in timings.values())
    assert {k: v for k, v in timings.items() if k not in ("load", "progressive")} == {
        k: v for k, v in first.items() if k not in ("load", "progressive")}
    assert timings["progressive"] != -1.0  # re-timed by the run that recomputed it


@pytest.mark.slow
def test_probes_stage(suite_run):
    """Claim 3 on NIAH: unmasked generations with hidden states, a saved probe, Table 2 with its baselines, Figure 4."""
    from dynheads.probes.mlp import load_probe

    out, _, row = suite_run
    model = out / "smollm2"
    report = json.loads((model / "probes.json").read_text())["report"]
    assert report["kind"] == "copy_paste" and report["hidden_dim"] == 576 and report["heads"] == 270
    # the grid's one unmasked generation plus 2 depths x 2 runs of further ones (another document seed)
    assert sum(report["split"][s]["generations"] for s in ("train", "validation", "test")) == 5
    grid_cell = json.loads((model / "niah" / "cells" / "L300_D0.5.json").read_text())
    probe_cell = json.loads((model / "probes" / "cells" / "L300_D0.json").read_text())
    assert grid_cell["settings"]["hidden"] == "float16" and probe_cell["settings"]["metadata"]["seed"] == 6
    assert probe_cell["samples"][0]["uuid"] != grid_cell["samples"][0]["uuid"]
    assert [r["k"] for r in report["cca"]] == list(range(11))
    assert set(report["probe"]) >= {"probe", "prior", "previous_step", "same_cell_step", "predicts"}
    # split by (depth, length) cell: three cells, one each for train, validation and test
    split = report["split"]
    assert split["by"] == "cell" and [len(split[s]["cells"]) for s in ("train", "validation", "test")] == [1, 1, 1]
    assert split["test"]["cells"] != split["train"]["cells"]
    probe, meta = load_probe(model / "probes.pt")
    assert meta["model"] == "smollm2" and meta["kind"] == "copy_paste" and meta["hidden_sizes"] == [16]
    assert row["probe_f1"] == report["probe"]["probe"]["f1"]
    assert row["cca_heldout_top1_k0"] == report["cca"][0]["held_out"]["top1"]
    assert row["cca_shuffled_heldout_top1_k0"] == report["cca"][0]["shuffled"]["top1"]
    table = (out / "table2.md").read_text()
    assert "| smollm2 | prior |" in table and "| smollm2 | previous step |" in table and "| smollm2 | same cell and step |" in table
    assert "llama3.1-8b" in table and _png(model / "figure4.png")
    # probe=PATH refuses the documents it was fitted on, in one line, and scores the unseen test cell
    import lm_eval
    from lm_eval.tasks import TaskManager

    from dynheads.models.harness.lm import DynHeadsLM

    lm = DynHeadsLM(device="cpu", dtype="float32", probe=str(model / "probes.pt"), static_heads="off")
    (depth, length), = split["train"]["cells"]
    seen = {"lengths": [int(length)], "depths": [depth], "runs": 1, "seed": 5 if depth == 0.5 else 6}
    with pytest.raises(ValueError, match="trained or validated on niah_uuid document 0") as info:
        lm_eval.simple_evaluate(model=lm, tasks=["niah_uuid"], limit=1,
                                task_manager=TaskManager(include_path=str(ROOT / "tasks"), include_defaults=False, metadata=seen))
    assert "\n" not in str(info.value)
    (depth, length), = split["test"]["cells"]
    unseen = {"lengths": [int(length)], "depths": [depth], "runs": 1, "seed": 5 if depth == 0.5 else 6}
    res = lm_eval.simple_evaluate(model=lm, tasks=["niah_uuid"], limit=1,
                                  task_manager=TaskManager(include_path=str(ROOT / "tasks"), include_defaults=False, metadata=unseen))
    assert "probe_f1,none" in res["results"]["niah_uuid"]


@pytest.mark.slow
def test_hotpotqa_probes_stage(suite_run):
    """Claim 3 on HotpotQA: a regressor trained on train answers and tested on dev answers; Table 3, Figure 8."""
    out, _, row = suite_run
    report = json.loads((out / "smollm2" / "hotpotqa_probes.json").read_text())["report"]
    assert report["kind"] == "reasoning" and report["split"]["test"]["generations"] == 2
    assert report["split"]["train"]["generations"] + report["split"]["validation"]["generations"] == 5
    assert {"mse", "mae", "r2"} <= set(report["probe"]["probe"])
    assert row["hotpotqa_probe_r2"] == report["probe"]["probe"]["r2"]
    assert "| smollm2 | probe |" in (out / "table3.md").read_text()
    assert _png(out / "smollm2" / "figure8.png")


def _hotpot_samples(out: Path) -> list[dict]:
    chunks = [json.loads((out / "smollm2" / "hotpotqa" / "cells" / f"dev_{i:05d}.json").read_text()) for i in (0, 1)]
    return [s for c in chunks for s in c["samples"]]


@pytest.mark.slow
def test_hotpotqa_stage(suite_run):
    """EM/F1 under four conditions from two chunks of one example, and the Figure 6 cells."""
    from dynheads.suite.hotpotqa.ablation import bin_index
    from dynheads.tasks.hotpotqa_sf.utils import docs_from_metadata

    out, _, row = suite_run
    model = out / "smollm2"
    samples = _hotpot_samples(out)
    docs = docs_from_metadata(n=2, tokenizer=None)
    assert [s["id"] for s in samples] == [d["id"] for d in docs]  # two chunks of one example: dev 0 and 1
    assert [s["n_tokens"] for s in samples] == [d["n_tokens"] for d in docs]
    n = json.loads((model / "hotpotqa_calibration.json").read_text())["matched_n"]
    assert row["hotpotqa_samples"] == 2 and row["hotpotqa_matched_n"] == n and row["hotpotqa_threshold"] == 0.2
    none = [s["conditions"]["none"] for s in samples]
    assert row["hotpotqa_f1"] == pytest.approx(sum(r["f1"] for r in none) / 2)
    assert row["hotpotqa_em"] == pytest.approx(sum(r["em"] for r in none) / 2)
    for s in samples:
        conds = s["conditions"]
        assert all(g == len(h) for g, h in zip(conds["dynamic"]["gated"], conds["dynamic"]["heads"]))
        assert all(g == n for g in conds["static"]["gated"] + conds["random"]["gated"])
        # the traced heads are the Eq. 2 scores above the threshold
        assert conds["none"]["heads"] == [[[l, h] for l, r in enumerate(step) for h, v in enumerate(r) if v > 0.2]
                                          for step in conds["none"]["scores"]]
    # Figure 6: every sample lands in the cell of its length bucket and first-fact position
    masking = json.loads((model / "hotpotqa_masking.json").read_text())
    for condition, cells in masking["cells"].items():
        assert sum(c["n"] for c in cells) == 2, condition
        for s in samples:
            key = (bin_index(s["n_tokens"], [1250, 1500, 1750]), bin_index(s["position"], [0.2, 0.4, 0.6, 0.8]))
            assert any((c["length_bin"], c["position_bin"]) == key for c in cells)
    text = (model / "hotpotqa_masking.md").read_text()
    assert "— = no sample" in text and "Claim 2 verdict" in text and "insufficient n (n = 2 < 10)" in text
    assert masking["summary"]["intervals"]["f1_dynamic_minus_static"]["n"] == 2
    for name in ("hotpotqa_ablation_f1.png", "hotpotqa_ablation_em.png"):
        assert _png(model / name), name


@pytest.mark.slow
def test_hotpotqa_dynamism_stage(suite_run):
    """Table 1 on reasoning heads, at the masking threshold and recomputed at 0.5; Figure 5."""
    out, _, _ = suite_run
    none = [s["conditions"]["none"] for s in _hotpot_samples(out)]
    rows = {r["threshold"]: r for r in json.loads((out / "smollm2" / "hotpotqa_dynamism.json").read_text())}
    steps = [st for r in none for st in r["heads"]]
    assert rows[0.2]["traced"] and rows[0.2]["steps"] == len(steps) > 0
    assert rows[0.2]["heads_per_step_mean"] == pytest.approx(sum(map(len, steps)) / len(steps))
    above = [sum(v > 0.5 for r in st for v in r) for run in none for st in run["scores"]]
    assert rows[0.5]["heads_per_step_mean"] == pytest.approx(sum(above) / len(above))
    assert "| smollm2 | 0.2 (masked with) | 2 |" in (out / "hotpotqa_table1.md").read_text()
    assert _png(out / "smollm2" / "figure5.png")


@pytest.mark.slow
def test_hotpotqa_progressive_stage(suite_run):
    """Figure 7: k = 0 is the unmasked first example, k = 2 masks at most 2 heads per step."""
    out, _, _ = suite_run
    none = [s["conditions"]["none"] for s in _hotpot_samples(out)]
    prog = json.loads((out / "smollm2" / "hotpotqa_progressive.json").read_text())
    assert [p["k"] for p in prog] == [0, 2] and prog[0]["samples"] == 1
    assert prog[0]["f1"] == none[0]["f1"] and prog[0]["static_compensation"] == 0
    assert 0 <= prog[1]["masked_per_step"] <= 2
    assert "| 2 | 1 |" in (out / "figure7.md").read_text()
    assert _png(out / "smollm2" / "hotpotqa_progressive_ablation.png")


@pytest.mark.slow
def test_rag_stage(suite_run):
    """Section 5: every strategy on the same two dev examples, Tables 4 and 6, the retrieval log, leaderboard columns."""
    from dynheads.spec import RAG_STRATEGIES as STRATEGIES

    out, _, row = suite_run
    model = out / "smollm2"
    summary = json.loads((model / "rag.json").read_text())["summary"]
    assert summary["samples"] == 2 and summary["heads"] == 2 and summary["ks"] == [2, 4]
    labels = list(STRATEGIES) + [f"{s}:4" for s in ("dynamic", "static", "dynamic_random", "fixed_random")]
    assert sorted(summary["strategies"]) == sorted(labels)
    cell = json.loads((model / "rag" / "cells" / "dev_00000.json").read_text())
    assert cell["settings"]["rag"]["settings"]["threshold"] == 0.0 and len(cell["settings"]["rag"]["probe"]) == 64
    assert cell["settings"]["rag"]["static_heads"] == [list(h) for h in
                                                        json.loads((model / "hotpotqa_calibration.json").read_text())["top20"][:4]]
    samples = cell["samples"]  # one chunk: the RAG profile's chunk (8) holds both examples
    assert len(samples) == 2
    for name in labels:
        results = [s["conditions"][f"rag:{name}"] for s in samples]
        got = summary["strategies"][name]
        assert got["f1"] == pytest.approx(sum(r["f1"] for r in results) / 2)
        assert got["retrievals_per_answer"] == pytest.approx(sum(r["rag"]["retrievals"] for r in results) / 2)
        if name in ("none", "full"):
            assert got["retrievals"] == 0 and got["recall"] is None
        else:  # threshold 0: every answer retrieves
            assert got["trigger_rate"] == 1.0 and 0 <= got["recall"] <= 1
    assert summary["strategies"]["oracle"]["precision"] == summary["strategies"]["oracle"]["recall"] == 1.0
    # the dynamic strategy used k = 2 heads of the probe, the k = 4 variant four
    logs = [log for s in samples for log in s["conditions"]["rag:dynamic"]["rag"]["retrieval_log"]]
    assert logs and all(len(log["heads"]) == 2 for log in logs)
    assert all(len(log["heads"]) == 4 for s in samples for log in s["conditions"]["rag:dynamic:4"]["rag"]["retrieval_log"])
    assert row["rag_f1_dynamic"] == summary["strategies"]["dynamic"]["f1"] and row["rag_f1_full"] == summary["strategies"]["full"]["f1"]
    table4, table6 = (out / "table4.md").read_text(), (out / "table6.md").read_text()
    assert "| smollm2 | Dynamic (probe) | 2 |" in table4 and "Oracle windows" in table4 and "llama3.1-8b" in table4
    assert "k = 4 (EM / F1)" in table6 and "| Fixed Random |" in table6
    assert "trigger" in (model / "rag_retrievals.md").read_text()


@pytest.mark.slow
def test_hallucination_stage(suite_run):
    """The detectors read the study's own transition-zone NIAH cells and the HotpotQA probe answers: every answer
    once, labels from the cells' scores, NIAH split by cell, a table and a ROC figure per section, the transfer test,
    leaderboard columns and the conjecture's claims."""
    out, _, row = suite_run
    model = out / "smollm2"
    summary = json.loads((model / "hallucination.json").read_text())["summary"]
    niah = summary["niah"]["answer"]
    # the study's 1 length x 2 depths x 2 runs, each cell on one side of the split, decoded into its own folder
    assert niah["train"]["documents"] + niah["test"]["documents"] == 4 and len(summary["niah"]["test_cells"]) == 1
    assert len(list((model / "hallucination_niah" / "cells").glob("*.json"))) == 2
    hot = summary["hotpotqa"]["f1"]
    assert hot["train"]["documents"] == 5 and hot["test"]["documents"] == 2
    samples = [s for c in (0, 1) for s in json.loads((model / "hotpotqa" / "cells" / f"dev_{c:05d}.json").read_text())["samples"]]
    assert hot["test"]["positives"] == sum(s["conditions"]["none"]["f1"] < 0.5 for s in samples)
    assert summary["hotpotqa"]["em0"]["test"]["positives"] == sum(s["conditions"]["none"]["em"] == 0 for s in samples)
    assert summary["settings"] == {"c": None, "f1_threshold": 0.5, "test_share": 0.34, "seed": 5,
                                   "niah": {"lengths": [300], "depths": [0.2, 0.8], "runs": 2},
                                   "gold": {"train_n": 4, "dev_n": 2, "chunk": 12}}
    gold = summary["hotpotqa_gold"]["faithful"]  # 4 train / 2 dev answers from gold paragraphs, yes / no left out
    assert gold["train"]["documents"] + gold["left_out"]["train"] == 4
    assert gold["test"]["documents"] + gold["left_out"]["dev"] == 2
    assert len(list((model / "hallucination_hotpotqa" / "cells").glob("*.json"))) == 2
    assert set(summary["transfer"]) == {"niah_to_hotpotqa", "hotpotqa_to_niah"}
    for level in (niah, hot):  # tiny test sets: a level either has both classes and detectors, or says why not
        assert level["detectors"] or "one class" in level["note"]
    text = (out / "hallucination.md").read_text()
    assert "NIAH answer tokens" in text and "Lookback Lens" in text and "AUROC − 0.5" in text and "across sections" in text
    assert _png(model / "hallucination_roc_niah.png") and _png(model / "hallucination_roc_hotpotqa.png")
    assert {"halluc_niah_target_absence_auroc", "halluc_hotpotqa_lookback_lens_auroc"} <= set(row)
    claims = json.loads((out / "claims.json").read_text())
    assert [c["setting"] for c in claims if c["claim"].startswith("conjecture: absence")] == ["NIAH transition-zone answers", "NIAH transition-zone answer tokens",
                                                                                  "HotpotQA answers from gold paragraphs (not in the context)"]


@pytest.mark.slow
def test_kv_stage(suite_run):
    """Every KV strategy on fresh NIAH documents and the HotpotQA dev examples: kv=full decodes exactly what the
    unmasked model does, the measured shares order as the budgets do, the offset-1 probes are saved with their offset,
    and the table, figure, leaderboard columns and claims rows are written."""
    from dynheads.probes.mlp import load_probe

    out, _, row = suite_run
    model = out / "smollm2"
    summary = json.loads((model / "kv.json").read_text())
    assert summary["conditions"] == ["kv:full", "kv:streaming", *(f"kv:{s}@0.05" for s in (
        "static", "dynamic", "probe_mean", "frozen", "observed", "random", "redrawn"))]
    assert summary["niah"]["documents"] == 1 and summary["hotpotqa"]["documents"] == 2
    kv_samples = json.loads((model / "kv_hotpotqa" / "cells" / "dev_00000.json").read_text())["samples"]
    plain = {s["id"]: s["conditions"]["none"]["response"] for s in _hotpot_samples(out)}
    assert [s["conditions"]["kv:full"]["response"] for s in kv_samples] == [plain[s["id"]] for s in kv_samples]
    for task in ("niah", "hotpotqa"):
        kept = {name: c["kept_kv"]["estimate"] for name, c in summary[task]["conditions"].items()}
        assert kept["kv:full"] == 1.0 and kept["kv:streaming"] < kept["kv:static@0.05"] < 1.0
        assert kept["kv:static@0.05"] == pytest.approx(kept["kv:dynamic@0.05"], abs=0.02)  # matched budgets
        assert set(summary[task]["paired"]) == {f"kv:{a}@0.05 - kv:{b}@0.05" for a, b in (
            ("dynamic", "probe_mean"), ("dynamic", "frozen"), ("dynamic", "static"), ("observed", "static"),
            ("random", "static"), ("redrawn", "random"))}
    for task, kind in (("niah", "copy_paste"), ("hotpotqa", "reasoning")):
        probe, meta = load_probe(model / f"kv_probe_{task}.pt")
        assert meta["offset"] == 1 and meta["kind"] == kind and meta["documents"]
        assert probe.mean_output_.shape == (270,)  # kv=probe_mean's fixed ranking, one score per query head
    kv_doc = json.loads((model / "kv_niah" / "cells" / "L300.json").read_text())["samples"][0]
    assert kv_doc["uuid"] not in {s["uuid"] for c in (model / "probes" / "cells").glob("*.json")
                                  for s in json.loads(c.read_text())["samples"]}
    text = (out / "kv.md").read_text()
    assert "KV kept (per KV head)" in text and "Offset-1 probe" in text
    assert _png(model / "kv_budget.png")
    assert {"kv_niah_dynamic_minus_static_rouge_l", "kv_hotpotqa_full_f1"} <= set(row)
    claims = json.loads((out / "claims.json").read_text())
    kv_claims = {c["id"]: c for c in claims if c["id"].startswith("KV-")}
    assert kv_claims["KV-NIAH-0.05"]["n"] >= 1 and kv_claims["KV-HotpotQA-0.05"]["n"] >= 1  # the budget this run ran
    parts = summary["niah"]["paired"]  # the claim holds only where both per-step comparisons do: its effect is theirs
    assert kv_claims["KV-NIAH-0.05"]["effect"]["estimate"] in {
        parts[f"kv:dynamic@0.05 - kv:{r}@0.05"]["rouge_l"]["estimate"] for r in ("probe_mean", "frozen")}
    assert {c["verdict"] for i, c in kv_claims.items() if "0.05" not in i} == {"not run"}


@pytest.mark.slow
def test_the_run_writes_its_page(suite_run):
    """results/index.html: the claims, every figure the run drew (each link resolves), the model's provenance."""
    import re

    out, _, _ = suite_run
    page = (out / "index.html").read_text()
    assert "Claims and their verdicts" in page and page.count('<td class="') == len(json.loads((out / "claims.json").read_text()))
    figures = re.findall(r'<img src="([^"]+)"', page)
    assert len(figures) == len(list(out.glob("*/*.png"))) and all((out / f).is_file() for f in figures)
    assert '"trace_format"' not in page and "trace_format" in page and "seconds per stage" in page
    # the explorer: a page per traced document of the run, linked from the run's page
    explorer = out / "smollm2" / "explorer" / "index.html"
    assert 'href="smollm2/explorer/index.html"' in page and explorer.is_file()
    linked = re.findall(r'<a href="([^"]+)"', explorer.read_text())
    assert len(linked) >= 10 and all((explorer.parent / href).is_file() for href in linked)


def test_unknown_stage_is_refused(run_suite, capsys):
    assert run_suite.main(["--stages", "nope"]) == 2
    assert "unknown stage(s) nope" in capsys.readouterr().err


def test_hotpot_overrides_and_chunks(run_suite, tmp_path):
    """--hotpot-* flags reach the profile, and an evaluation is split into resumable chunks that carry the
    user's source; a bad count is one clear line."""
    (tmp_path / "mine.json").write_text("[]")
    args = run_suite.parse_args(["--stages", "hotpotqa", "--hotpot-source", str(tmp_path / "mine.json"), "--hotpot-n", "5",
                                 "--hotpot-chunk", "2", "--hotpot-threshold", "0.3", "--hotpot-ks", "0,3"])
    hot = run_suite.profile_for("smollm2", args)["hotpotqa"]
    assert (hot["n"], hot["chunk"], hot["threshold"], hot["progressive"]["ks"]) == (5, 2, 0.3, [0, 3])
    assert hotpotqa_profile.PROFILES["quick"]["hotpotqa"]["source"] is None  # the profile itself is not modified

    class Recorder:
        calls: list = []

        def run(self, key, task, metadata, conditions, heads, extra, hidden=False):
            self.calls.append((key, task, metadata, extra))
            return {"samples": []}

    recorder = Recorder()
    hotpotqa.chunks(recorder, hot, 5, ["none"], None, lambda xs, **_: xs, "test")
    assert [(key, meta["start"], meta["n"], meta["source"]) for key, _, meta, _ in recorder.calls] == [
        ("custom_00000", 0, 2, str(tmp_path / "mine.json")), ("custom_00002", 2, 2, str(tmp_path / "mine.json")),
        ("custom_00004", 4, 1, str(tmp_path / "mine.json"))]
    assert {task.name for _, task, _, _ in recorder.calls} == {"hotpotqa_sf"}

    with pytest.raises(ValueError, match="HotpotQA n = 0 must be at least 1"):
        run_suite.profile_for("smollm2", run_suite.parse_args(["--all", "--hotpot-n", "0"]))
    both = run_suite.profile_for("smollm2", run_suite.parse_args(["--all", "--rag-n", "3", "--rag-chunk", "2", "--rag-ks", "4,8",
                                                                  "--rag-window", "32"]))
    rag = both["rag"]  # Section 5 sizes itself; the HotpotQA part holds no RAG settings
    assert (rag["n"], rag["chunk"], rag["ks"], rag["heads"], rag["window"]) == (3, 2, [4, 8], 4, 32) and "rag" not in both["hotpotqa"]
    assert run_suite.model_args(both, run_suite.parse_args(["--all"]))["rag_window"] == 32
    with pytest.raises(ValueError, match="RAG examples, chunk and head counts"):
        run_suite.profile_for("smollm2", run_suite.parse_args(["--all", "--rag-chunk", "0"]))


def test_missing_hotpot_source_is_one_line_before_any_model_loads(run_suite, tmp_path, capsys):
    assert run_suite.main(["--stages", "hotpotqa", "--hotpot-source", str(tmp_path / "nope.json"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not an existing file" in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing was started


def test_errors_are_one_line_with_exit_code_2(run_suite, tmp_path, capsys):
    """A model that cannot load (here a folder that is no saved model), a bad override: one line, exit 2."""
    (tmp_path / "not_a_model").mkdir()
    assert run_suite.main(["--stages", "niah", "--models", str(tmp_path / "not_a_model"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "is a folder without config.json" in err and "--debug" in err and err.count("\n") == 1
    assert run_suite.main(["--all", "--hotpot-n", "0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("run_suite: HotpotQA n = 0 must be at least 1") and err.count("\n") == 1
    assert run_suite.main(["--all", "--batch-size", "0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("run_suite: --batch-size '0': give a positive number") and err.count("\n") == 1
    assert run_suite.batch_size("auto", "cpu") == run_suite.DEFAULT_BATCH["cpu"] and run_suite.batch_size("3", None) == 3
    with pytest.raises(ValueError, match="folder without config.json"):  # --debug: the traceback
        run_suite.main(["--stages", "niah", "--models", str(tmp_path / "not_a_model"), "--debug", "--out", str(tmp_path / "o")])


def test_ctrl_c_says_the_same_command_resumes(run_suite, tmp_path, capsys, monkeypatch):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_suite, "run_model", interrupted)
    assert run_suite.main(["--stages", "niah", "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "same command resumes" in err and err.count("\n") == 1
