"""One module per command: `train`, `evaluate`, `attack`, `explain` (each `cfg, run_dir -> result`), what they
share (`common`), and the one way to restore a trained model (`restore.load_trained`). The CLI runs
`attrobust.tasks.<command>.<command>` through Hydra (attrobust/launch.py); evaluation itself is a loop over the
registered parts (attrobust/parts)."""
