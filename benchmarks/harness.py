"""Small shared helpers for the benchmarks: repeat, take medians, report ratios.

Every benchmark measures its raw baseline in the same run as mummi_io and
reports mummi_io as a ratio to it, because the machines are shared and noisy.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field


@dataclass
class Measurement:
    """Repeated timings of one workload, in seconds."""

    name: str
    operations: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> float:
        """Relative spread (max - min) / median of the repetitions."""
        return (max(self.seconds) - min(self.seconds)) / self.median if self.median else 0.0

    @property
    def rate(self) -> float:
        """Operations per second at the median."""
        return self.operations / self.median

    @property
    def per_operation_us(self) -> float:
        return 1e6 * self.median / self.operations


def measure(
    name: str, operations: int, run: Callable[[], object], repeat: int, setup: Callable[[], object] | None = None
) -> Measurement:
    """Time ``run`` ``repeat`` times (``setup`` before each, untimed)."""
    result = Measurement(name, operations)
    for _ in range(repeat):
        if setup is not None:
            setup()
        started = time.perf_counter()
        run()
        result.seconds.append(time.perf_counter() - started)
    return result


def measure_rotated(
    workloads: list[tuple[str, int, Callable[[], object]]], repeat: int, setup: Callable[[], object] | None = None,
) -> list[Measurement]:
    """Time contestants of one workload in the same run: each repetition runs them all, in a rotated order."""
    results = [Measurement(name, operations) for name, operations, _ in workloads]
    order = list(range(len(workloads)))
    for repetition in range(repeat):
        for number in order[repetition % len(order):] + order[:repetition % len(order)]:
            if setup is not None:
                setup()
            started = time.perf_counter()
            workloads[number][2]()
            results[number].seconds.append(time.perf_counter() - started)
    return results


def machine() -> dict[str, object]:
    """A short description of where the numbers were taken."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }


def report(title: str, rows: list[dict[str, object]], path: str | None) -> str:
    """Return a markdown table of ``rows`` (and write them as JSON to ``path``)."""
    columns: list[str] = []
    for entry in rows:
        columns.extend(c for c in entry if c not in columns)
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(c, "")) for c in columns) + " |")
    if path:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w") as handle:
            json.dump({"title": title, "machine": machine(), "rows": rows}, handle, indent=2)
    return "\n".join(lines)


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 999.5 else f"{value:,.0f}"
    return str(value)


def row(measurement: Measurement, baseline: Measurement | None = None, **extra: object) -> dict[str, object]:
    """One table row: rate, median, spread, and the ratio to the baseline's rate."""
    data: dict[str, object] = {
        "workload": measurement.name,
        "ops/s": measurement.rate,
        "median s": measurement.median,
        "spread": f"{100 * measurement.spread:.0f}%",
        "ratio to baseline": measurement.rate / baseline.rate if baseline else "",
    }
    if baseline is not None:
        data["baseline"] = baseline.name
    data.update(extra)
    return data


def suite_main(title: str, description: str, collect: Callable[[bool, int], list[dict[str, object]]],
               argv: list[str] | None = None) -> int:
    """The command line of a single suite: ``--quick``, ``--repeat``, ``--json PATH``."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", default=f"benchmarks/results/{title}.json")
    args = parser.parse_args(argv)
    print(report(title, collect(args.quick, args.repeat), args.json))
    return 0


__all__ = ["Measurement", "asdict", "machine", "measure", "measure_rotated", "report", "row", "suite_main"]
