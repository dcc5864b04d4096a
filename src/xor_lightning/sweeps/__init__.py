"""What a sweep leaves at its root, for any launcher and sweeper: `summary.py` (the
`SweepSummary` Hydra callback: summary.csv and summary.md), `tables.py` (results.parquet
and curves.parquet, one table each), `seeds.py` (`make seeds`: how often the chapter's
network learns XOR, from a vectorised seed sweep) and `trainmap.py` (`make map`: where it
trains, over the two layers' learning rates). The vectorised engine itself is
`xor_vectorized`; the Optuna sweeper is the plugin in `hydra_plugins/`."""
