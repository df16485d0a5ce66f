"""Write a WMT-size synthetic parallel corpus by repeating and perturbing Multi30k (for scale tests).

    python scripts/synthetic_corpus.py --pairs 4500000 --out /tmp/synth
    nmt-train data.root=/tmp/synth data.local_dir=synth data.name=synth ...

Copy k of the 29k Multi30k training pairs swaps two words (chosen from k) on both sides, so lines are
not exact duplicates; valid and test2016 are the real Multi30k files. Text is streamed: memory stays
small whatever ``--pairs`` is.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path


def perturb(line: str, k: int) -> str:
    words = line.split()
    if k and len(words) > 1:
        i, j = k % len(words), (k // len(words)) % len(words)
        words[i], words[j] = words[j], words[i]
    return " ".join(words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4_500_000)
    parser.add_argument("--out", type=Path, required=True, help="data root to create (writes <out>/synth/)")
    parser.add_argument("--source-root", type=Path, default=Path(os.environ.get("NMT_DATA_ROOT", "../shared/data")))
    args = parser.parse_args()
    src_dir, out = args.source_root / "multi30k", args.out / "synth"
    out.mkdir(parents=True, exist_ok=True)
    de = (src_dir / "train.de").read_text(encoding="utf-8").splitlines()
    en = (src_dir / "train.en").read_text(encoding="utf-8").splitlines()
    with open(out / "train.de", "w", encoding="utf-8") as fd, open(out / "train.en", "w", encoding="utf-8") as fe:
        for n in range(args.pairs):
            k, i = divmod(n, len(de))
            fd.write(perturb(de[i], k) + "\n")
            fe.write(perturb(en[i], k) + "\n")
    for stem in ("valid", "test2016"):
        for lang in ("de", "en"):
            shutil.copyfile(src_dir / f"{stem}.{lang}", out / f"{stem}.{lang}")
    print(f"wrote {args.pairs} pairs to {out}")


if __name__ == "__main__":
    main()
