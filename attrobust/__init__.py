"""attrobust: an experiment runner for attributional-robustness research."""

__version__ = "0.1.0"
