"""The pictures of a run, drawn with matplotlib: `plot.py` (the decision boundary, PNG
encoding for TensorBoard) and `units.py` (what each hidden unit computes). The callbacks
that draw them during a run are in `xor_lightning.callbacks`."""
