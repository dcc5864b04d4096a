"""The tools that use a trained checkpoint: `xor-eval` (`evaluate.py`: score it on fresh
data), `xor-predict` (`predict.py`: classify points) and `xor-export` (`export.py`: ONNX or
a `torch.export` program). Each is a Hydra entry point of its own (conf/evaluate.yaml,
conf/predict.yaml, conf/export.yaml) that loads the checkpoint the safe way
(`xor_lightning.checkpoint`)."""
