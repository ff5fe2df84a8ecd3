"""Run by test_training under `accelerate launch --num_processes 2`: trains a few steps, then each
rank prints a digest of its final weights."""

import hashlib
import sys

from accelerate import PartialState

from test_training import tiny_config
from worldmodel.training import trainer

captured = {}
original = trainer.EMA


class RecordingEMA(original):
    def __init__(self, model, decay):
        super().__init__(model, decay)
        captured["model"] = model


trainer.EMA = RecordingEMA
trainer.train(tiny_config(sys.argv[1], sys.argv[2], steps=4))
h = hashlib.sha256()
for tensor in captured["model"].state_dict().values():
    h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
print(f"weights-digest rank{PartialState().process_index} {h.hexdigest()}", flush=True)
