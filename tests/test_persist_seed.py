"""The persistable seed's README examples, with only the imports changed (persistable -> mummi_io.persist)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
from numpy.typing import NDArray

from mummi_io.persist import InvalidPayloadError, PayloadNotFoundError, Persistable, PersistableParams, PickleFileIO


# ---------------------------------------------------------------- example 1, as the README writes it
@dataclass
class GaussianDistributedPointsParams(PersistableParams):
    """ Params for GaussianDistributedPointsP.

    Parameters:
        n (int): number of gaussian distributed points.
        random_state (int): random_state for generator.
    """

    n: int
    random_state: int = 100


class GaussianDistributedPointsP(Persistable[NDArray[np.float64], GaussianDistributedPointsParams]):
    """ Persistable payload of Gaussian distributed points.

    """

    def _generate_payload(self, **untracked_payload_params: Any) -> NDArray[np.float64]:
        np.random.seed(self.params.random_state)
        return np.random.random(self.params.n)

    def _validate_payload(self, payload: NDArray[np.float64]) -> None:
        if not isinstance(payload, np.ndarray):
            raise TypeError("Payload must be of type np.ndarray to be valid.")
        if not payload.ndim == 2:
            raise InvalidPayloadError("Payload must be a 1-D array.")
        if len_ := len(payload) != self.params.n:
            raise InvalidPayloadError(f"Payload expected to have length {self.params.n} (len(payload)={len_})")


class FixedGaussianDistributedPointsP(GaussianDistributedPointsP):
    """The README's validator checks ``ndim == 2`` for a 1-D array (it raises in the seed too); corrected."""

    def _validate_payload(self, payload: NDArray[np.float64]) -> None:
        if not isinstance(payload, np.ndarray):
            raise TypeError("Payload must be of type np.ndarray to be valid.")
        if not payload.ndim == 1:
            raise InvalidPayloadError("Payload must be a 1-D array.")


# ---------------------------------------------------------------- example 2
@dataclass
class OutlierEstimatorParams(PersistableParams):
    z_threshold: int


class OutlierEstimator:
    def __init__(self, z_threshold: float) -> None:
        self.z_threshold = z_threshold

        self._mean = Optional[float]
        self._stdev = Optional[float]

    def fit(self, data: NDArray[np.float64]) -> None:
        self._mean = np.mean(data)
        self._stdev = np.std(data)

    def transform(self, data: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.abs((data - self._mean) / self._stdev) > self.z_threshold

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}{self.__dict__}"


class OutlierEstimatorP(Persistable[OutlierEstimator, OutlierEstimatorParams]):
    def __init__(
        self,
        data_dir: Path,
        params: OutlierEstimatorParams,
        *,
        data_points_p: GaussianDistributedPointsP,
    ) -> None:
        super().__init__(data_dir, params, tracked_persistable_dependencies=[data_points_p], verbose=True)
        self.data_points_p = data_points_p

    def _generate_payload(self, **untracked_payload_params: Any) -> OutlierEstimator:
        outlier_estimator = OutlierEstimator(z_threshold = self.params.z_threshold)
        outlier_estimator.fit(self.data_points_p.payload)

        return outlier_estimator


def test_example_one_as_written_fails_its_own_validator_as_in_the_seed(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data_dir = Path('.').absolute() / "example-data"
    params = GaussianDistributedPointsParams(n=100, random_state=10)
    gaussian_distributed_points_p = GaussianDistributedPointsP(
       data_dir=data_dir, params=params, tracked_persistable_dependencies=None
    )
    with pytest.raises(InvalidPayloadError, match="1-D"):
        gaussian_distributed_points_p.generate()


def test_example_one_and_two_generate_persist_and_reload(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data_dir = Path('.').absolute() / "example-data"
    params = GaussianDistributedPointsParams(n=100, random_state=10)
    gaussian_distributed_points_p = FixedGaussianDistributedPointsP(
       data_dir=data_dir, params=params, tracked_persistable_dependencies=None
    )
    gaussian_distributed_points_p.generate()  # Generate and persist the payload to storage
    assert gaussian_distributed_points_p.payload[0] == pytest.approx(0.77132064)

    # Parameter based reload without regeneration
    gaussian_distributed_points_reloaded_p = FixedGaussianDistributedPointsP(
       data_dir=data_dir, params=params, tracked_persistable_dependencies=None
    )
    gaussian_distributed_points_reloaded_p.load()
    assert gaussian_distributed_points_reloaded_p.payload[0] == pytest.approx(0.77132064)
    gaussian_distributed_points_reloaded_p.load_generate()
    assert gaussian_distributed_points_reloaded_p.payload[0] == pytest.approx(0.77132064)

    params = OutlierEstimatorParams(z_threshold=2)
    outlier_estimator_p = OutlierEstimatorP(data_dir=data_dir, params=params,
                                            data_points_p=gaussian_distributed_points_p)
    outlier_estimator_p.load_generate()
    estimator = outlier_estimator_p.payload
    assert estimator.z_threshold == 2 and type(estimator._mean) is np.float64
    assert estimator._mean == pytest.approx(np.mean(gaussian_distributed_points_p.payload))

    # A new session: the lazy payload loads (the upstream one too), nothing is generated again
    again = OutlierEstimatorP(data_dir=data_dir, params=params, data_points_p=FixedGaussianDistributedPointsP(
        data_dir=data_dir, params=GaussianDistributedPointsParams(n=100, random_state=10),
        tracked_persistable_dependencies=None))
    assert again.payload._stdev == estimator._stdev
    assert (data_dir / "outlier_estimator_p.log").read_text().count("NEW PERSISTABLE SESSION") == 2
    quiet_log = (data_dir / "fixed_gaussian_distributed_points_p.log").read_text()  # verbose=False: still logged
    assert "generating" in quiet_log and "loading" in quiet_log
    assert any(path.name.endswith(".params.json") for path in data_dir.iterdir())


def test_the_seeds_errors_payload_io_and_hooks(tmp_path) -> None:
    params = GaussianDistributedPointsParams(n=5)
    never = FixedGaussianDistributedPointsP(tmp_path, params, None)
    with pytest.raises(FileNotFoundError):  # what the seed's users catch...
        never.load()
    with pytest.raises(KeyError):  # ...and what mummi_io's do
        never.load()
    assert issubclass(PayloadNotFoundError, FileNotFoundError)

    pickled = FixedGaussianDistributedPointsP(tmp_path / "pickled", params, None, payload_io=PickleFileIO(),
                                             payload_name="points")
    pickled.generate()
    assert pickled.payload_io is not None and list((tmp_path / "pickled").glob("points-*.persistable"))
    reloaded = FixedGaussianDistributedPointsP(tmp_path / "pickled", params, None, payload_io=PickleFileIO(),
                                               payload_name="points")
    assert np.array_equal(reloaded.payload, pickled.payload)

    class Invalid(FixedGaussianDistributedPointsP):
        loaded_hook = False

        def _validate_payload(self, payload: NDArray[np.float64]) -> None:
            raise InvalidPayloadError("never valid")

        def _post_load(self) -> None:
            self.loaded_hook = True

    stored = FixedGaussianDistributedPointsP(tmp_path / "v", params, None)
    stored.generate()
    warned = Invalid(tmp_path / "v", params, None, payload_name=stored.name)
    warned.load()  # the seed's default: warn and keep
    assert warned.loaded_hook and len(warned.payload) == 5
    with pytest.raises(InvalidPayloadError):
        warned.load(warn_if_validation_fails=False)
    warned.reset_payload()
    with pytest.raises(InvalidPayloadError):
        warned.validate_payload()


def test_parameters_python_tells_apart_give_different_keys(tmp_path) -> None:
    """{1: x} and {"1": x}, a tuple and a list, a path and a string, an enum and its name: other parameters."""
    import enum

    class Mode(enum.Enum):
        FAST = "fast"

    @dataclass
    class Anything(PersistableParams):
        value: Any

    def key(value: Any) -> str:
        return FixedGaussianDistributedPointsP(tmp_path, Anything(value), None).key

    for one, other in [({1: "a"}, {"1": "a"}), ((1, 2), [1, 2]), (Path("a"), "a"), (Mode.FAST, "FAST"),
                       (1, 1.0), (1, True)]:
        assert key(one) != key(other), (one, other)
    assert key([1, {"k": 2.5}]) == key([1, {"k": 2.5}])
    assert Anything(Mode.FAST).to_dict() == {"value": "FAST"}  # the seed's readable form stays


def test_each_data_directory_logs_only_its_own_sessions(tmp_path) -> None:
    params = GaussianDistributedPointsParams(n=5)
    FixedGaussianDistributedPointsP(tmp_path / "one", params, None).generate()
    FixedGaussianDistributedPointsP(tmp_path / "two", params, None).generate()
    FixedGaussianDistributedPointsP(tmp_path / "one", params, None).load()
    name = "fixed_gaussian_distributed_points_p.log"
    one, two = (tmp_path / "one" / name).read_text(), (tmp_path / "two" / name).read_text()
    assert str(tmp_path / "two") not in one and str(tmp_path / "one") not in two
    assert one.count("NEW PERSISTABLE SESSION") == 2 and two.count("NEW PERSISTABLE SESSION") == 1
