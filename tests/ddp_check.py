"""Run by test_training under `torch.distributed.run --nproc_per_node 2`: trains a few steps, then
each rank writes a digest of its final weights to `<run>/weights-digest-rank<i>.txt` (a file, not
stdout: two ranks printing to one pipe can interleave their lines)."""

import hashlib
import sys
from pathlib import Path

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
Path(sys.argv[2], f"weights-digest-rank{PartialState().process_index}.txt").write_text(h.hexdigest())
