"""Artifacts for tests/test_persist.py (importable by the worker processes)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mummi_io.persist import InvalidPayloadError, Persistable


@dataclass
class PointsParams:
    n: int
    random_state: int = 100


@dataclass
class OutlierParams:
    z_threshold: float


class Points(Persistable[np.ndarray, PointsParams]):
    def _generate_payload(self, **untracked: Any) -> np.ndarray:
        marker = untracked.get("marker")
        if marker:  # count generations across processes
            with open(marker, "a") as handle:
                handle.write(f"{os.getpid()}\n")
            time.sleep(untracked.get("delay", 0))
        return np.random.default_rng(self.params.random_state).random(self.params.n)

    def _validate_payload(self, payload: np.ndarray) -> None:
        if len(payload) != self.params.n:
            raise InvalidPayloadError(f"expected {self.params.n} points, got {len(payload)}")


class Outliers(Persistable[dict, OutlierParams]):
    def __init__(self, io, namespace, params, *, points: Points) -> None:
        super().__init__(io, namespace, params, tracked_persistable_dependencies=[points])
        self.points = points

    def _generate_payload(self, **untracked: Any) -> dict:
        data = self.points.payload
        mean, std = float(np.mean(data)), float(np.std(data))
        return {"mean": mean, "std": std, "outliers": int(np.sum(np.abs(data - mean) / std > self.params.z_threshold))}
