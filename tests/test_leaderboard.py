"""The leaderboard (reporting/entry.py, reporting/leaderboard.py): entries grouped by protocol, one line per model,
and the page in a real headless browser (Debian's chromium) when the machine has one."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from attrobust.errors import AttrobustError
from attrobust.reporting.leaderboard import find_entries, render


def scored(value: float, half: float, n: int = 200) -> dict:
    return {"value": value, "low": value - half, "high": value + half, "n": n}


def write_entry(folder: Path, run_id: str, method: str, fingerprint: str, accuracy: dict, measures: dict,
                images: str = "images") -> dict:
    entry = {"images_fingerprint": images, "schema": 1, "run_id": run_id, "method": method, "reg": method,
             "architecture": "small_cnn",
             "dataset": "mnist_mini", "seed": 0, "eps": 0.3, "explainer": "ig(100)", "protocol": "reference",
             "fingerprint": fingerprint, "images": 200, "training_seconds": 100.0, "commit": "abc",
             "config_hash": "def", "gallery": None, "attack": "topk of ig(100)", "accuracy": accuracy,
             "measures": {key: {"heading": heading, "higher_is_better": better, **values}
                          for key, (heading, better, values) in measures.items()}}
    folder.mkdir(parents=True)
    (folder / "entry.json").write_text(json.dumps(entry))
    return entry


def three_models(root: Path) -> dict[str, dict]:
    measures = {"natural": {"topk_intersection": ("IN", True, scored(60.0, 3.0)), "kendall": ("CO", True,
                                                                                               scored(0.2, 0.02))},
                "pgd": {"topk_intersection": ("IN", True, scored(81.0, 2.0)), "kendall": ("CO", True,
                                                                                          scored(0.34, 0.01))},
                "trades": {"topk_intersection": ("IN", True, scored(78.5, 2.5)), "kendall": ("CO", True,
                                                                                             scored(0.37, 0.01))}}
    accuracy = {"natural": (99.0, 0.0), "pgd": (96.0, 56.6), "trades": (96.6, 54.3)}
    entries = {}
    for name in ("natural", "pgd", "trades"):
        natural, adversarial = accuracy[name]
        entries[name] = write_entry(root / name / "evaluate", name, f"mnist_mini_{name}", "same",
                                    {"natural": scored(natural, 1.0), "pgd": scored(adversarial, 3.0)},
                                    measures[name])
    write_entry(root / "pgd" / "autoattack", "pgd", "mnist_mini_pgd", "same",
                {"natural": scored(96.0, 1.0), "autoattack": scored(52.0, 3.0)}, {})
    write_entry(root / "other", "other", "mnist_mini_pgd", "elsewhere", {"natural": scored(90.0, 2.0)}, {})
    # accuracy only (attributions=false): its fingerprint is not the board's, its images are
    write_entry(root / "trades" / "autoattack", "trades", "mnist_mini_trades", "accuracy only",
                {"natural": scored(96.6, 1.0), "autoattack": scored(50.5, 3.0)}, {})
    return entries


def test_entries_are_ranked_together_only_under_one_fingerprint_and_one_model_is_one_line(tmp_path):
    three_models(tmp_path / "runs")
    write_entry(tmp_path / "runs" / "natural" / "autoattack", "natural", "mnist_mini_natural", "other images",
                {"natural": scored(99.0, 1.0), "autoattack": scored(0.0, 0.5)}, {}, images="others")
    render(find_entries(tmp_path / "runs"), tmp_path / "out")
    markdown = (tmp_path / "out" / "leaderboard.md").read_text()
    assert markdown.count("Protocol `") == 3 and "`same`" in markdown and "`elsewhere`" in markdown
    board = markdown.split("Protocol `same`")[1].split("## ")[0]
    assert "AA pgd (%)" in board and "AA autoattack (%)" in board
    pgd_line = next(line for line in board.splitlines() if line.startswith("| mnist_mini_pgd"))
    assert "56.60 ± 3.00" in pgd_line and "52.00 ± 3.00" in pgd_line and "81.00 ± 2.00" in pgd_line
    trades_line = next(line for line in board.splitlines() if line.startswith("| mnist_mini_trades"))
    assert "50.50 ± 3.00" in trades_line and "78.50 ± 2.50" in trades_line  # joined by its images fingerprint
    natural_line = next(line for line in board.splitlines() if line.startswith("| mnist_mini_natural"))
    headings = [text.strip() for text in board.splitlines()[2].strip("|").split("|")]
    cells = [text.strip() for text in natural_line.strip("|").split("|")]
    assert cells[headings.index("AA autoattack (%)")] == "n/a" and "`other images`" in markdown  # others: not joined
    assert "\\pm" in (tmp_path / "out" / "leaderboard.tex").read_text()


def test_a_broken_entry_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "entry.json").write_text('{"schema": 1, "run_id": "x"}')
    with pytest.raises(AttrobustError, match=r"bad/entry.json is not a leaderboard entry of schema 1 \(missing method"):
        find_entries(tmp_path)


def test_entries_fingerprinted_under_an_earlier_definition_are_named_in_one_note(cli, tmp_path):
    from attrobust.reporting.entry import FINGERPRINT_DEFINITION

    three_models(tmp_path / "runs")  # written without a fingerprint definition: the first
    alike = cli("leaderboard", "runs", "--out", "out")
    assert alike.exit_code == 0 and "note" not in alike.stderr, alike.stderr  # one definition: nothing to say
    newer = write_entry(tmp_path / "runs" / "newer", "newer", "mnist_mini_pgd", "same",
                        {"natural": scored(96.0, 1.0)}, {"topk_intersection": ("IN", True, scored(80.0, 2.0))})
    newer["fingerprint_definition"] = FINGERPRINT_DEFINITION
    (tmp_path / "runs" / "newer" / "entry.json").write_text(json.dumps(newer))
    one_board = cli("leaderboard", "runs", "--out", "out")  # the same fingerprint under both: nothing to say
    assert one_board.exit_code == 0 and "note" not in one_board.stderr, one_board.stderr
    (tmp_path / "runs" / "newer" / "entry.json").write_text(json.dumps({**newer, "fingerprint": "same, hashed anew"}))
    mixed = cli("leaderboard", "runs", "--out", "out")
    assert mixed.exit_code == 0, mixed.stderr
    assert mixed.stderr.count("note: ") == 1 and re.search(
        rf"note: 6 of the 7 entries \(e.g. \S+\) were fingerprinted by an earlier attrobust \(fingerprint definition "
        rf"1, now {FINGERPRINT_DEFINITION}\) and describe the same protocol as newer ones with another fingerprint: .* "
        rf"evaluate them again to rank them with the others", mixed.stderr)


class Cells(HTMLParser):
    """The page's rows: (entry id, {key: data-value}) in document order, per board."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and "data-entry" in found:
            self.rows.append((str(found["data-entry"]), {}))
        elif tag == "td" and self.rows:
            self.rows[-1][1][str(found["data-key"])] = str(found["data-value"])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (Debian: apt-get install chromium; "
                                             ".ci/run installs it where it can)")
def test_the_page_in_a_headless_browser_loads_cleanly_sorts_and_shows_the_entries_numbers(tmp_path):
    entries = three_models(tmp_path / "runs")
    render(find_entries(tmp_path / "runs"), tmp_path / "out")
    page = (tmp_path / "out" / "index.html").as_uri()
    for key, best_first in (("accuracy.pgd", ["natural", "trades", "pgd"][::-1]),
                            ("measures.kendall", ["trades", "pgd", "natural"])):
        shown = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                                "--v=0", "--virtual-time-budget=3000", "--dump-dom", f"{page}#sort={key}"],
                               capture_output=True, text=True, timeout=120, check=True)
        assert not re.search(r"CONSOLE", shown.stderr), shown.stderr  # no error, no message: the page logs nothing
        cells = Cells()
        cells.feed(shown.stdout)
        board = [row for row in cells.rows if row[0] in entries]
        assert [entry for entry, _ in board] == best_first  # clicked heading: best first (JS ran)
        (heading,) = re.findall(rf'<th[^>]*data-key="{re.escape(key)}"[^>]*>', shown.stdout)
        assert 'aria-sort="descending"' in heading  # the page marks the column it sorted by
        for entry, values in board:  # the numbers on the page are the entries'
            expected = entries[entry]
            assert float(values["accuracy.natural"]) == expected["accuracy"]["natural"]["value"]
            assert float(values["measures.kendall"]) == expected["measures"]["kendall"]["value"]
    canary = tmp_path / "canary.html"  # the console check can fire: a page that logs is seen
    canary.write_text("<html><body><script>console.error('canary')</script></body></html>")
    logged = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                             "--v=0", "--dump-dom", canary.as_uri()], capture_output=True, text=True, timeout=120)
    assert "CONSOLE" in logged.stderr and "canary" in logged.stderr
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
                    f"--screenshot={tmp_path / 'page.png'}", page], capture_output=True, timeout=120, check=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_by_method_pools_the_seeds_with_students_t_and_keeps_a_single_models_interval(tmp_path):
    values = {0: 80.0, 1: 81.0, 2: 83.5}
    for seed, value in values.items():
        entry = write_entry(tmp_path / "runs" / f"pgd{seed}", f"pgd{seed}", "mnist_mini_pgd", "same",
                            {"natural": scored(96.0 + seed, 1.0)}, {"topk_intersection": ("IN", True,
                                                                                            scored(value, 2.0))})
        entry["seed"] = seed
        if seed == 1:  # the only seed with attribution maps: the method's line shows them, named by their seed
            entry["gallery"] = "figure.png"
            (tmp_path / "runs" / f"pgd{seed}" / "figure.png").write_bytes(b"maps of seed 1")
        (tmp_path / "runs" / f"pgd{seed}" / "entry.json").write_text(json.dumps(entry))
    write_entry(tmp_path / "runs" / "natural", "natural", "mnist_mini_natural", "same",
                {"natural": scored(99.0, 0.7)}, {"topk_intersection": ("IN", True, scored(60.0, 3.0))})
    render(find_entries(tmp_path / "runs"), tmp_path / "out", by="method")
    page = (tmp_path / "out" / "index.html").read_text()
    assert "mnist_mini_pgd (small_cnn, seed 1)" in page and "seed 0, 1, 2)" not in page
    assert [path.read_bytes() for path in (tmp_path / "out" / "gallery").iterdir()] == [b"maps of seed 1"]
    board = (tmp_path / "out" / "leaderboard.md").read_text().split("Protocol `same`")[1]
    lines = sorted((line for line in board.splitlines() if line.startswith("| mnist_mini")), reverse=True)
    assert len(lines) == 2  # pgd, natural
    kept = list(values.values())
    half = stats.t.ppf(0.975, 2) * np.std(kept, ddof=1) / np.sqrt(3)
    assert f"{np.mean(kept):.2f} ± {half:.2f}" in lines[0] and "0, 1, 2" in lines[0]
    assert f"97.00 ± {stats.t.ppf(0.975, 2) / np.sqrt(3):.2f}" in lines[0]  # NA 96, 97, 98: sample std 1
    assert "60.00 ± 3.00" in lines[1] and "99.00 ± 0.70" in lines[1]  # one seed: its interval over images
    with pytest.raises(AttrobustError, match="leaderboard --by 'seed': choose model or method"):
        render(find_entries(tmp_path / "runs"), tmp_path / "out", by="seed")
    write_entry(tmp_path / "runs" / "pgd0again", "pgd0again", "mnist_mini_pgd", "same",  # seed 0 again
                {"natural": scored(95.0, 1.0)}, {})
    with pytest.raises(AttrobustError, match="mnist_mini_pgd has two models of one seed"):
        render(find_entries(tmp_path / "runs"), tmp_path / "out", by="method")
