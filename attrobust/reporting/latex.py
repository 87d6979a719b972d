"""Tables for papers: LaTeX tabulars whose every cell and heading is escaped (a setting such as `reg.weight=1_0` or
a heading with % must not break the document)."""

from __future__ import annotations

import pandas as pd

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    """`text` with every character LaTeX treats specially escaped (and ± as math), for tables pasted into papers."""
    return "".join(LATEX_SPECIAL.get(char, char) for char in text)


def latex_table(table: pd.DataFrame) -> str:
    """A tabular of `table`'s strings, every cell and heading escaped."""
    escaped = table.astype(str).map(latex_escape)
    escaped.columns = [latex_escape(str(column)) for column in table.columns]
    return escaped.to_latex(index=False, escape=False)
