"""What a sweep leaves at its root, for any launcher and sweeper: `summary.py` (the
`SweepSummary` Hydra callback: summary.csv and summary.md), `tables.py` (results.parquet
and curves.parquet, one table each), and `seeds.py` (`make seeds`: how often the chapter's
network learns XOR, from a vectorised seed sweep). The vectorised engine itself is
`xor_lightning.stacked`; the Optuna sweeper is the plugin in `hydra_plugins/`."""
