"""Write demo samples: labelled vectors into an inbox, unseen ones into another folder.

Usage: demo_samples.py INBOX UNSEEN_DIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

CENTERS = {"cat": [2.0, 2.0, 0.0, 0.0], "dog": [0.0, 0.0, 2.0, 2.0]}


def main(inbox: Path, unseen: Path) -> None:
    rng = np.random.default_rng(7)
    unseen.mkdir(parents=True, exist_ok=True)
    for label, center in CENTERS.items():
        folder = inbox / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(20):
            vector = (np.array(center) + rng.normal(0, 0.3, 4)).astype(np.float32)
            # Maildir style: write a dot-file, then rename it into place in one step.
            np.save(folder / f".{i}.npy", vector, allow_pickle=False)
            os.rename(folder / f".{i}.npy", folder / f"{i}.npy")
        vector = (np.array(center) + rng.normal(0, 0.3, 4)).astype(np.float32)
        np.save(unseen / f"a-{label}.npy", vector, allow_pickle=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
