"""`attrobust report` on a real tiny sweep: mean ± std over seeds, swept values, failed and missing runs listed,
CSV / Markdown / LaTeX / PNG, and the report written automatically when a multirun ends."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml
from conftest import TINY_RUN


def test_sweep_report_over_seeds_with_failed_and_missing_runs(cli, tmp_path):
    result = cli("train", "-m", "reg=input_grad", "reg.weight=0,1,-1", "seed=0,1", *TINY_RUN,
                 "hydra.sweep.dir=sweep")
    assert result.exit_code == 2  # the two jobs with weight -1 fail; the other four run
    assert sum("weight must be" in line for line in result.error_lines) == 2
    sweep = tmp_path / "sweep"
    assert (sweep / "report.md").is_file()  # written by the callback at the end of the multirun
    assert len(list(sweep.glob("*/failed.txt"))) == 2
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())  # named by the swept value (seed is shown already)
    assert jobs[:3] == ["0_mnist_mini_input_grad_seed0_reg.weight_0", "1_mnist_mini_input_grad_seed1_reg.weight_0",
                        "2_mnist_mini_input_grad_seed0_reg.weight_1"]

    done = next(p for p in sweep.iterdir() if (p / "results.csv").is_file())
    shutil.copytree(done / ".hydra", sweep / "9_killed_before_results" / ".hydra")
    report = cli("report", "sweep")
    assert report.exit_code == 0, report.stderr
    assert report.stderr.count("warning: failed run") == 2 and report.stderr.count("warning: missing run") == 1

    numbers = pd.read_csv(sweep / "report.csv")
    assert list(numbers["reg.weight"]) == [0, 1] and list(numbers["seeds"]) == [2, 2]
    rows = pd.concat(pd.read_csv(p / "results.csv") for p in sweep.glob("*/") if (p / "results.csv").is_file())
    weight_of = {run: "reg.weight=1" in yaml.safe_load((tmp_path / run / ".hydra/overrides.yaml").read_text())
                 for run in rows["run_id"].unique()}
    natural = rows[rows["metric"] == "natural_accuracy"]
    expected = natural.groupby(natural["run_id"].map(weight_of))["value"].agg(["mean", "std"])
    assert abs(numbers.loc[1, "NA (%) mean"] - expected.loc[True, "mean"]) < 1e-4  # the CSV keeps 6 digits
    assert abs(numbers.loc[1, "NA (%) std"] - expected.loc[True, "std"]) < 1e-4 and expected.loc[True, "std"] > 0

    markdown = (sweep / "report.md").read_text()
    assert " ± " in markdown and "failed: " in markdown and "missing: " in markdown and "9_killed" in markdown
    latex = (sweep / "report.tex").read_text()
    assert r"\begin{tabular}" in latex and r"$\pm$" in latex and "% failed:" in latex
    assert (sweep / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_runs_whose_files_cannot_be_read_are_listed_with_the_reason_and_never_counted_as_done(cli, tmp_path):
    result = cli("train", "-m", "seed=0,1,2,3,4", *TINY_RUN, "hydra.sweep.dir=sweep")
    assert result.exit_code == 0, result.stderr
    runs = sorted(p.relative_to(tmp_path) for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    (tmp_path / runs[0] / "results.csv").write_text("")  # empty
    text = (tmp_path / runs[1] / "results.csv").read_text()
    (tmp_path / runs[1] / "results.csv").write_text(text[: len(text) // 2])  # truncated by a kill
    (tmp_path / runs[2] / ".hydra/overrides.yaml").write_text("- seed=2\n- [unclosed")  # broken
    (tmp_path / runs[3] / "results.csv").unlink()
    (tmp_path / runs[3] / "failed.txt").write_text("")  # an empty failed.txt
    report = cli("report", "sweep")
    assert report.exit_code == 0, report.stderr
    warnings = [line for line in report.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 4, report.stderr
    assert f"unreadable run {runs[0]}: unreadable {runs[0] / 'results.csv'}" in warnings[0]
    assert f"unreadable run {runs[1]}: unreadable {runs[1] / 'results.csv'}: truncated" in warnings[1]
    assert f"broken {runs[2] / '.hydra/overrides.yaml'}" in warnings[2]
    assert f"failed run {runs[3]}: empty failed.txt" in warnings[3]
    markdown = (tmp_path / "sweep/report.md").read_text()
    assert "5 run(s): 1 done" in markdown and markdown.count("unreadable: ") == 3
    assert list(pd.read_csv(tmp_path / "sweep/report.csv")["seeds"]) == [1]


def test_report_of_a_folder_without_runs_is_one_clear_error(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli("report", "empty")
    assert result.exit_code == 2 and "no runs under empty" in result.error_lines[0]
    assert "no such directory" in cli("report", "nowhere").error_lines[0]


def test_joblib_multirun_writes_every_job_and_the_report(cli, tmp_path):
    # absolute: loky keeps its worker processes (and their working directory) from one test to the next
    # tracked to one MLflow store that the two jobs' processes create at once (they wait for each other)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = cli("train", "-m", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", "reg=natural,pgd",
                 *TINY_RUN, f"hydra.sweep.dir={tmp_path / 'sweep'}", "logger=mlflow",
                 f"logger.mlflow.tracking_uri={store}", f"logger.mlflow.artifact_location={tmp_path / 'artifacts'}")
    assert result.exit_code == 0, result.stderr
    report = pd.read_csv(tmp_path / "sweep" / "report.csv")
    assert sorted(report["reg"]) == ["natural", "pgd"] and (tmp_path / "sweep" / "report.md").is_file()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name("attrobust").experiment_id])
    assert sorted((run.data.params["reg.name"], run.info.status) for run in runs) == [("natural", "FINISHED"),
                                                                                       ("pgd", "FINISHED")]


def test_joblib_multirun_failure_is_reported_by_the_parent(cli, tmp_path):
    result = cli("train", "-m", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", "reg=input_grad",
                 "reg.weight=1,-1", *TINY_RUN, f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.exit_code == 2 and len(result.error_lines) == 1 and "weight must be" in result.error_lines[0]


@pytest.mark.slow
def test_submitit_local_multirun_writes_every_job_and_the_report(cli, tmp_path):
    result = cli("train", "-m", "hydra/launcher=local_submitit", "reg=natural,pgd", *TINY_RUN,
                 "hydra.sweep.dir=sweep")
    assert result.exit_code == 0, result.stderr
    assert sorted(pd.read_csv(tmp_path / "sweep" / "report.csv")["reg"]) == ["natural", "pgd"]


def test_report_joins_a_separate_evaluate_sweep_to_its_training_runs(cli, tmp_path):
    assert cli("train", "-m", "reg=natural", "seed=0,1", *TINY_RUN, "hydra.sweep.dir=paper/train").exit_code == 0
    runs = ",".join(sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "paper/train").glob("*_seed*")))
    result = cli("evaluate", "-m", f"checkpoint={runs}", "eval.num_examples=4", "attack.steps=1",
                 "attribution_attack.steps=2", "explainer.steps=4", "attribution_attack.restarts=1",
                 "hydra.sweep.dir=paper/evaluate")
    assert result.exit_code == 0, result.stderr
    assert cli("report", "paper").exit_code == 0
    table = pd.read_csv(tmp_path / "paper" / "report.csv")
    # the evaluation's three lines (its attack and baselines) and, apart, the end-of-training evaluation
    table = table.set_index("attack")
    assert list(table.index) == ["topk of ig(4)", "random_sign of ig(4)", "random_noise of ig(4)", "pgd"]
    assert (table["seeds"] == 2).all() and table["NA (%) mean"].nunique() == 2  # each evaluation over both seeds
    assert {"NA (%) mean", "AA (%) mean", "IN (%) mean", "CO mean"} <= set(table.columns)
    assert list(table["eval.num_examples"].astype(str)) == ["4", "4", "4", "50"]  # what tells them apart
    assert list(table["attack.steps"].astype(str)) == ["1", "1", "1", "2"]
    train_na = [pd.read_csv(p).query("metric == 'natural_accuracy'")["value"].item()
                for p in sorted((tmp_path / "paper/train").glob("*/results.csv"))]
    assert abs(table.loc["pgd", "NA (%) mean"] - sum(train_na) / 2) < 1e-4  # never pooled with the 4 attacked


def test_aggregate_keeps_only_the_groups_that_ran():
    from attrobust.reporting.sweep import aggregate

    rows = pd.DataFrame([{"run_id": f"r{reg}{seed}", "dataset": "d", "model": "m", "reg": reg, "attack": "a",
                          "metric": "natural_accuracy", "value": 90.0 + seed, "unit": "%", "n": 10, "seed": seed,
                          "experiment": f"preset_{reg}"} for reg in ("natural", "pgd") for seed in (0, 1)])
    table = aggregate(rows, ["experiment"])  # experiment varies with reg: 2 groups, not 2 x 2
    assert len(table) == 2 and list(table["seeds"]) == [2, 2] and list(table["NA (%) mean"]) == [90.5, 90.5]


def test_a_table_keeps_attacks_on_different_explainers_apart_and_survives_an_all_nan_metric():
    from attrobust.reporting.sweep import aggregate
    from attrobust.reporting.tables import summary_table

    base = {"run_id": "r", "dataset": "d", "model": "m", "reg": "natural", "n": 4, "seed": 0}
    rows = pd.DataFrame([
        {**base, "attack": "pgd eps=0.3 40x0.01", "metric": "natural_accuracy", "value": 90.0, "unit": "%"},
        {**base, "attack": "topk of ig(100) eps=0.3", "metric": "kendall", "value": 0.5, "unit": ""},
        {**base, "attack": "topk of gradcam eps=0.3", "metric": "kendall", "value": 0.7, "unit": ""},
        {**base, "attack": "topk of gradcam eps=0.3", "metric": "kendall_strict", "value": float("nan"), "unit": ""},
    ])
    table = aggregate(rows, [])
    assert list(table["attack"]) == ["topk of ig(100)", "topk of gradcam"]
    assert list(table["CO ref mean"]) == [0.5, 0.7] and list(table["NA (%) mean"]) == [90.0, 90.0]
    summary = summary_table(rows)  # no image qualified: the strict column is all NaN
    assert len(summary) == 2 and list(summary["NA (%)"]) == [90.0, 90.0]


def test_caveats_fire_when_a_control_beats_the_attack_or_many_images_stay_unmoved():
    from attrobust.reporting.caveats import headline_caveats

    def rows(attack_in: float, control_in: float, unmoved: int) -> pd.DataFrame:
        base = {"run_id": "r", "dataset": "d", "model": "m", "reg": "natural", "n": 24, "seed": 0, "unit": ""}
        topk, noise = "topk of ig(100) eps=0.3", "random_noise of ig(100) eps=0.3"
        values = [(topk, "topk_intersection", attack_in), (topk, "kendall", 0.3), (topk, "images_scored", 24),
                  (topk, "images_unmoved", unmoved), (noise, "topk_intersection", control_in), (noise, "kendall", 0.5),
                  (noise, "images_scored", 24), (noise, "images_unmoved", 0),
                  ("pgd eps=0.3 40x0.01", "natural_accuracy", 90.0)]
        return pd.DataFrame([{**base, "attack": a, "metric": m, "value": v} for a, m, v in values])

    assert headline_caveats(rows(60.0, 80.0, 2), ("random_noise", "random_sign")) == []  # a normal attack
    lines = headline_caveats(rows(82.0, 80.0, 12), ("random_noise", "random_sign"))
    assert len(lines) == 2
    assert lines[0].startswith("12 of 24 images never moved under topk of ig(100)")
    assert "random control random_noise of ig(100) looks at least as strong as topk of ig(100) on " \
           "topk_intersection (80 vs 82)" in lines[1] and "kendall" not in lines[1]
    assert all("eval.protocol=robust" in line for line in lines)
    assert "the 'ref' columns" in lines[0] and "weaker than random noise here" in lines[1]
    both = pd.concat([rows(82.0, 80.0, 0), rows(82.0, 80.0, 0).assign(  # the strict columns: the attack wins
        metric=lambda r: r["metric"] + "_strict", value=lambda r: r["value"].where(r["value"] != 82.0, 60.0))])
    both = both[~both["metric"].str.startswith(("images_", "natural_")) | ~both["metric"].str.endswith("_strict")]
    assert headline_caveats(both, ("random_noise",)) == []  # compared on the headline (strict) accounting
    weaker = both.assign(value=both["value"].where(both["value"] != 60.0, 90.0))  # the control wins there too
    assert len(headline_caveats(weaker, ("random_noise",))) == 1


def test_latex_tables_escape_every_special_character():
    import re

    from attrobust.reporting.latex import latex_table

    table = pd.DataFrame({"reg_weight (%)": ["a_b & c", "50% #1"], "CO": ["0.6189 ± 0.0100", "$x^2~{y}\\z"]})
    latex = latex_table(table)
    body = latex.split(r"\midrule")[0] + latex.split(r"\midrule")[1]
    body = body.replace(r"\toprule", "").replace(r"\bottomrule", "").replace(r"\end{tabular}", "")
    body = re.sub(r"\\begin\{tabular\}\{l+\}", "", body).replace(r"\\", "")
    unescaped = re.findall(r"(?<!\\)[_%&#^~{}]", body.replace(r"\textasciicircum{}", "").replace(
        r"\textasciitilde{}", "").replace(r"\textbackslash{}", ""))
    assert unescaped == ["&", "&", "&"]  # only the column separators, one per line
    assert r"reg\_weight (\%)" in latex and r"0.6189 $\pm$ 0.0100" in latex and r"\$x\textasciicircum{}2" in latex


def test_training_caveats_fire_at_chance_level_and_for_a_warm_up_longer_than_the_run():
    from attrobust.reporting.caveats import training_caveats, warmup_caveat

    assert training_caveats([{"acc": 0.9}], 10) == [] and training_caveats([], 10) == []
    (line,) = training_caveats([{"acc": 0.6}, {"acc": 0.12}], 10)
    assert line.startswith("training accuracy after the last epoch is 12.0 %, chance level for 10 classes (10.0 %)")
    assert warmup_caveat(3, 10, 0.3) == [] and warmup_caveat(3, 3, 0.3) == []
    (line,) = warmup_caveat(3, 2, 0.3)
    assert "reg.eps_warmup_epochs=3 is longer than the run's 2 epoch(s): training ends at eps 0.2, not 0.3" in line


def test_a_sweep_over_more_than_a_decade_is_drawn_on_a_log_axis():
    from attrobust.reporting.sweep_plots import log_axis

    assert log_axis(pd.Series([0.1, 1, 10, 100])) and not log_axis(pd.Series([1, 2, 5]))
    assert not log_axis(pd.Series([0, 1, 100]))  # zero has no place on a log axis


def test_a_trained_but_not_evaluated_run_is_a_note_with_the_command_not_a_missing_run(cli, tmp_path):
    result = cli("train", "-m", "reg=natural,pgd", *TINY_RUN, "eval_at_end=false", "hydra.sweep.dir=sweep")
    assert result.exit_code == 0, result.stderr
    report = cli("report", "sweep")
    assert report.exit_code == 0 and "warning: missing run" not in report.stderr
    assert report.stderr.count("note: not evaluated run") == 2 and "attrobust evaluate checkpoint=" in report.stderr
    from attrobust.engine.checkpoint import MODEL_FILE
    from attrobust.reporting import runs

    assert runs.MODEL_FILE == MODEL_FILE  # the report's copy of the name


def test_a_swept_path_names_the_folder_by_its_last_part(monkeypatch):
    from attrobust.config import SWEPT_KEYS_ENV, swept_values

    monkeypatch.setenv(SWEPT_KEYS_ENV, "checkpoint,seed")
    assert swept_values(["checkpoint=/runs/train/3_mnist_mini_lga/", "seed=1"]) == "_checkpoint_3_mnist_mini_lga_seed_1"
    assert swept_values(["checkpoint=a b"]) == "_checkpoint_a-b"


FAST_EVALUATION = ["eval.num_examples=4", "attack.steps=1", "attributions=false"]


def _checkpoints(tmp_path, sweep: str) -> str:
    return ",".join(sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / sweep).iterdir() if p.is_dir()))


def test_report_pools_only_seeds_of_one_setting_and_one_evaluation(cli, tmp_path):
    """Issue 26's cases: two weights at one seed evaluated in one sweep, one run evaluated twice with other images,
    and accuracy under L-inf and L2 attacks of one model: each its own line, named by what differs."""
    assert cli("train", "-m", "reg=input_grad", "reg.weight=0.1,100", *TINY_RUN, "eval_at_end=false",
               "hydra.sweep.dir=models").exit_code == 0
    weights = cli("evaluate", "-m", f"checkpoint={_checkpoints(tmp_path, 'models')}", *FAST_EVALUATION,
                  "hydra.sweep.dir=weights")
    assert weights.exit_code == 0, weights.stderr
    table = pd.read_csv(tmp_path / "weights" / "report.csv")  # the training runs are not in this folder
    assert sorted(table["reg.weight"]) == [0.1, 100.0] and (table["seeds"] == 1).all()
    # one seed: its interval is its run's, over the images (no spread over seeds to show)
    assert "the bootstrap over its images" in (tmp_path / "weights" / "report.md").read_text()
    runs = pd.concat([pd.read_csv(path) for path in sorted((tmp_path / "weights").glob("*/results.csv"))])
    natural = runs.query("metric == 'natural_accuracy'")
    assert sorted(table["NA (%) low"]) == pytest.approx(sorted(natural["low"]), rel=1e-5)  # report.csv: 6 digits
    assert sorted(table["NA (%) high"]) == pytest.approx(sorted(natural["high"]), rel=1e-5)
    assert natural["low"].notna().all()

    run = sorted((tmp_path / "models").iterdir())[0].relative_to(tmp_path)
    for images in (4, 8):
        assert cli("evaluate", f"checkpoint={run}", *FAST_EVALUATION, f"eval.num_examples={images}",
                   f"hydra.run.dir=twice/{images}").exit_code == 0
    assert cli("evaluate", "-m", f"checkpoint={run}", *FAST_EVALUATION, "attack=pgd,pgd_l2",
               "hydra.sweep.dir=norms").exit_code == 0
    both = cli("report", ".")  # the models' folder beside their evaluations: a model evaluated elsewhere is no note
    assert both.exit_code == 0 and "note: not evaluated" not in both.stderr, both.stderr
    for folder, key, values in (("twice", "eval.num_examples", ["4", "8"]), ("norms", "attack.name",
                                                                            ["pgd", "pgd_l2"])):
        assert cli("report", folder).exit_code == 0
        table = pd.read_csv(tmp_path / folder / "report.csv")
        assert sorted(table[key].astype(str)) == values and (table["seeds"] == 1).all(), table
    norms = pd.read_csv(tmp_path / "norms" / "report.csv").set_index("attack.name")
    assert list(norms["attack"]) == ["pgd", "pgd_l2"]
    rows = [pd.read_csv(path) for path in sorted((tmp_path / "norms").glob("*/results.csv"))]
    measured = {frame["attack"][0].split()[0]: frame.query("metric == 'adversarial_accuracy'")["value"].item()
                for frame in rows}
    assert norms.loc["pgd", "AA (%) mean"] == measured["pgd"] and norms.loc["pgd_l2", "AA (%) mean"] == \
        measured["pgd_l2"]  # never averaged together


def test_report_keeps_presets_of_one_regulariser_apart_by_name(cli, tmp_path):
    """LGA and IGR are both reg=attribution_distance: the lines are named by their presets."""
    assert cli("train", "-m", "+experiment=mnist_mini_lga,mnist_mini_igr", *TINY_RUN, "train.epochs=1",
               "hydra.sweep.dir=presets").exit_code == 0
    table = pd.read_csv(tmp_path / "presets" / "report.csv")
    assert sorted(table["experiment"]) == ["mnist_mini_igr", "mnist_mini_lga"] and (table["seeds"] == 1).all()
    assert list(table.columns).index("experiment") < list(table.columns).index("attack")  # named first
    for name in ("compare.png", "compare.pdf"):  # the measures side by side, a line per preset
        assert (tmp_path / "presets" / name).stat().st_size > 1000
    assert (tmp_path / "presets" / "compare.pdf").read_bytes()[:5] == b"%PDF-"


def test_hashes_are_read_as_text_and_an_older_checkpoint_has_no_setting_hash(tmp_path):
    from attrobust.reporting.rows import ROW_COLUMNS
    from attrobust.reporting.settings import setting_digest, stored_setting
    from attrobust.reporting.runs import read_results

    row = {"run_id": "r", "dataset": "d", "model": "m", "reg": "natural", "attack": "pgd", "metric":
           "natural_accuracy", "value": 90.0, "unit": "%", "n": 4, "seed": 0, "git_commit": "c",
           "config_hash": "5e1234567890", "setting": "012345678901", "evaluation": "5e1234567890"}
    pd.DataFrame([row], columns=ROW_COLUMNS).to_csv(tmp_path / "results.csv", index=False)
    frame, problem = read_results(tmp_path / "results.csv")
    assert problem == "" and frame.loc[0, "setting"] == "012345678901" and frame.loc[0, "evaluation"] == "5e1234567890"
    older = {"model_cfg": {"name": "m"}, "dataset_cfg": {"name": "d"}, "reg_cfg": {"name": "natural"}}
    assert stored_setting(older) == {} and setting_digest(stored_setting(older)) == ""  # named by its overrides


def test_restarts_by_is_left_out_of_the_identity_where_it_changes_nothing():
    """With the Kendall selection restarts chosen by it or by the measure agree: rows evaluated before the setting
    existed pool with new ones; with another selection it tells two evaluations apart."""
    from attrobust.reporting.settings import evaluation_setting

    def identity(measure: str, restarts_by: str) -> dict:
        plain = {"eval": {"num_examples": 5}, "dataset": {}, "threat": {},
                 "attribution_attack": {"name": "topk", "measure": measure, "restarts_by": restarts_by}}
        return evaluation_setting(plain, {}, [], {"attribution_attack": "attribution_attack"})

    before = {"eval.num_examples": 5, "attribution_attack.name": "topk", "attribution_attack.measure": "kendall"}
    assert identity("kendall", "measure") == identity("kendall", "kendall") == before
    assert identity("spearman", "measure") != identity("spearman", "kendall")
    assert identity("spearman", "measure")["attribution_attack.restarts_by"] == "measure"
