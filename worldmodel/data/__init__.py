"""HDF5 rollout format: episode container, writer, reader and the training-window dataset.

`RolloutWindows` (torch) is imported from `worldmodel.data.windows` so that reading and writing
files needs only h5py and numpy.
"""

from worldmodel.data.format import FORMAT_VERSION, Episode, RolloutFormatError
from worldmodel.data.reader import RolloutReader
from worldmodel.data.writer import RolloutWriter

__all__ = ["FORMAT_VERSION", "Episode", "RolloutFormatError", "RolloutReader", "RolloutWriter"]
