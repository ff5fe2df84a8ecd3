"""Data recorded elsewhere, into the project's HDF5 rollout format: Minari datasets
(`minari_data`) and LeRobot dataset directories (`lerobot_data`). Each importer yields the
file's metadata and then its episodes; `write_imported` validates and writes them."""

from envs.importers.common import ImportedData, write_imported

__all__ = ["ImportedData", "write_imported"]
