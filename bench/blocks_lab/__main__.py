"""python -m bench.blocks_lab [density rollups sqlite postgres victoriametrics] [--repeat 3]
[--out PATH]: the measurements behind docs/storage-blocks.md (all parts by default)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from bench import calibration
from bench.blocks_lab import (
    compaction_lab,
    density,
    postgres_lab,
    promote_lab,
    rollups,
    sqlite_lab,
    vm_lab,
    workloads,
)

PARTS = (
    "density",
    "rollups",
    "sqlite",
    "postgres",
    "compaction",
    "promote",
    "victoriametrics",
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.blocks_lab", description=__doc__)
    parser.add_argument(
        "parts", nargs="*", metavar="PART", help=f"any of {', '.join(PARTS)} (default: all)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; the best is kept")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    args.parts = args.parts or list(PARTS)
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    labs = workloads.every()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "load": os.getloadavg(),
    }
    results["calibration_start"] = calibration.measure()

    def save() -> None:  # after every part, so that a failure keeps what was measured
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))

    if "density" in args.parts:
        results["density"] = density.run(labs, args.repeat)
        density.show(results["density"])
        save()
    if "rollups" in args.parts:
        results["rollups"] = rollups.run(labs, args.repeat)
        rollups.show(results["rollups"])
        save()
    if "sqlite" in args.parts:
        results["sqlite"] = sqlite_lab.run(args.repeat)
        sqlite_lab.show(results["sqlite"])
        save()
    if "postgres" in args.parts:
        results["postgres"] = postgres_lab.run(args.repeat)
        postgres_lab.show(results["postgres"])
        save()
    if "compaction" in args.parts:
        results["compaction"] = compaction_lab.run(labs, args.repeat)
        compaction_lab.show(results["compaction"])
        save()
    if "promote" in args.parts:
        results["promote"] = promote_lab.run(args.repeat)
        promote_lab.show(results["promote"])
        save()
    if "victoriametrics" in args.parts:
        results["victoriametrics"] = vm_lab.run()
        vm_lab.show(results["victoriametrics"])
        save()
    results["calibration_end"] = calibration.measure()
    print(f"\ncalibration: {results['calibration_start']} -> {results['calibration_end']}")
    save()


if __name__ == "__main__":
    main()
