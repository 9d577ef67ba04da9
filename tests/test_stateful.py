"""Each backend against a dict: Hypothesis state machines (mummi_io.testing.stateful).

Sizes: the CI size below; ``--runslow`` (or ``MUMMI_IO_SLOW=1``) runs ten
times as many examples.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import rule, run_state_machine_as_test
from hypothesis import strategies as st

from mummi_io.testing.stateful import BackendMachine

from taridx_helpers import append_torn_batch, append_torn_index_record, scale


def _settings(examples: int, shrink: bool = True) -> settings:
    return settings(
        max_examples=examples * scale(), stateful_step_count=40, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], derandomize=scale() == 1,
        phases=[Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if shrink else []),
    )


class _OnDisk(BackendMachine):
    """Namespaces in a fresh temporary directory per run."""

    def make_namespaces(self) -> list[str]:
        self.directory = tempfile.mkdtemp(prefix="mummi-io-stateful-")
        return [os.path.join(self.directory, "one"), os.path.join(self.directory, "two")]

    def teardown(self) -> None:
        super().teardown()
        shutil.rmtree(self.directory, ignore_errors=True)


class SimpleMachine(_OnDisk):
    kind = "simple"

    def crash(self, namespace: str, items: list[tuple[str, bytes]]) -> None:
        # A killed atomic write leaves its hidden temporary file, never a partial key.
        os.makedirs(namespace, exist_ok=True)
        with open(os.path.join(namespace, f".mummi_io.tmp.{secrets.token_hex(8)}"), "wb") as handle:
            handle.write(items[0][1][: len(items[0][1]) // 2])


class TaridxMachine(_OnDisk):
    kind = "taridx"

    def crash(self, namespace: str, items: list[tuple[str, bytes]]) -> None:
        path = namespace + ".tar"
        if not os.path.exists(path + ".idx"):
            return
        append_torn_batch(path, [k for k, _ in items], keep=0.6, seed=len(items))
        if len(items) % 2:
            append_torn_index_record(path)

    @rule()
    def reindex(self) -> None:
        for ns in self.namespaces:
            if os.path.exists(ns + ".tar"):
                report = self.io.reindex(ns)
                assert report.losses == []

    @rule()
    def compact(self) -> None:
        for ns in self.namespaces:
            if os.path.exists(ns + ".tar"):
                self.io.compact(ns)

    @rule(which=st.integers(0, 1))
    def lose_the_index(self, which: int) -> None:
        path = self.namespaces[which] + ".tar.idx"
        if os.path.exists(path):
            os.unlink(path)


@pytest.mark.timeout(300 * scale())
def test_simple_against_a_dict() -> None:
    run_state_machine_as_test(SimpleMachine, settings=_settings(100))


@pytest.mark.timeout(300 * scale())
def test_taridx_against_a_dict() -> None:
    run_state_machine_as_test(TaridxMachine, settings=_settings(150))


@pytest.mark.timeout(300 * scale())
def test_redis_against_a_dict(redis_three) -> None:
    import redis

    nodes = [s.name for s in redis_three]
    password = redis_three[0].password

    class RedisMachine(BackendMachine):
        kind = "redis"
        options = {"nodes": nodes, "password": password, "chunk_size": 1500}  # values above it are chunked

        def make_namespaces(self) -> list[str]:
            run = secrets.token_hex(6)
            return [f"stateful-{run}-one", f"stateful-{run}-two"]

        def crash(self, namespace: str, items: list[tuple[str, bytes]]) -> None:
            # A client that dies inside MULTI, before EXEC: Redis applies nothing.
            client = redis.Redis.from_url(f"redis://:{password}@{nodes[0]}")
            connection = client.connection_pool.get_connection()
            connection.send_command("MULTI")
            connection.send_command("SET", f"mio:{{stray}}:{namespace}", items[0][1])
            connection.disconnect()
            client.close()

    run_state_machine_as_test(RedisMachine, settings=_settings(60))


@pytest.mark.timeout(300 * scale())
def test_a_machine_finds_a_planted_bug() -> None:
    """The machine is not vacuous: a backend that drops multi-key removes is caught."""

    class Forgetful(TaridxMachine):
        def open(self):
            io = super().open()
            real = io.backend.delete_many
            io.backend.delete_many = lambda ns, keys: None if len(keys) > 1 else real(ns, keys)
            return io

    with pytest.raises(AssertionError):
        run_state_machine_as_test(Forgetful, settings=_settings(150, shrink=False))
