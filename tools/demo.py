"""The demo: record a small reacher dataset with a graded policy mixture and summarise it.

    python tools/demo.py            (what `make demo` runs; writes outputs/demo/)

Later stages (training, evaluation, planning) join this script as they land.
"""

import logging
import subprocess
import sys
from pathlib import Path

OUT = Path("outputs/demo")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / "reacher.h5"
    data.unlink(missing_ok=True)
    here = Path(__file__).parent
    subprocess.run(
        [sys.executable, str(here / "record_rollouts.py"), "task=reacher", "policy=mixture", "episodes=40",
         "seed=0", "workers=2", f"out={data}"],
        check=True,
    )
    subprocess.run(
        [sys.executable, "-m", "worldmodel.data.inspect", str(data), "--video", str(OUT / "episode0.mp4")],
        check=True,
    )


if __name__ == "__main__":
    main()
