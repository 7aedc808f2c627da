"""How long `rollout --help` takes, next to a bare `python -c pass` in the same run.

Run: .venv/bin/python benchmarks/cli_startup.py
Goal (issue 2): under 0.3 s, so commands feel instant and imports stay lazy.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 15
ROLLOUT = Path(sys.executable).with_name("rollout")
GOAL_S = 0.3


def wall(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "rollout --help": [str(ROLLOUT), "--help"],
    }
    for argv in commands.values():  # warm the page cache once
        wall(argv)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(RUNS):  # interleaved, so machine noise hits both alike
        for name, argv in commands.items():
            samples[name].append(wall(argv))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, median in medians.items():
        print(
            f"{name:16} median {median * 1000:6.0f} ms  (min {min(samples[name]) * 1000:.0f} ms, {RUNS} runs)"
        )
    ratio = medians["rollout --help"] / medians["python -c pass"]
    print(f"rollout --help is {ratio:.1f}x a bare interpreter start")
    value = medians["rollout --help"]
    verdict = "met" if value < GOAL_S else "missed"
    print(f"goal: rollout --help wall time {value:.3f} s (target < {GOAL_S} s) {verdict}")


if __name__ == "__main__":
    main()
