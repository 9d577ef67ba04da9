"""A real single-node Slurm on this machine, for the launch-script tests.

munged, slurmctld and slurmd from Debian's packages (``slurmctld``,
``slurmd``, ``slurm-client``, ``munge``; ``.ci/run`` installs them) run as
children of the test process, in the foreground, with everything they write in
one private directory: their own munge key and socket, a ``slurm.conf`` that
clients find through ``SLURM_CONF``, ports taken from the test port range. Nothing
under ``/etc`` or ``/run`` is touched, and a site's own Slurm is left alone.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from mummi_io.backends.redis.local_servers import free_port

#: The programs a single-node Slurm needs, with the Debian package of each.
PROGRAMS = {"munged": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd", "srun": "slurm-client",
            "salloc": "slurm-client", "sinfo": "slurm-client"}
INSTALL_HINT = ("Slurm is not installed: apt-get install slurmctld slurmd slurm-client munge "
                "(.ci/run installs them)")


def missing_programs() -> list[str]:
    """The programs of :data:`PROGRAMS` not found on PATH (or in /usr/sbin)."""
    search = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return [name for name in PROGRAMS if shutil.which(name, path=search) is None]


@dataclass
class SlurmCluster:
    """munged + slurmctld + slurmd on localhost; :attr:`environment` is what clients need."""

    directory: str
    node: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> str:
        return os.path.join(self.directory, "slurm.conf")

    @property
    def environment(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": self.conf,
                "PATH": os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"}

    def _program(self, name: str) -> str:
        found = shutil.which(name, path=self.environment["PATH"])
        if found is None:
            raise RuntimeError(INSTALL_HINT)
        return found

    def _start(self, *arguments: str, log: str) -> None:
        with open(os.path.join(self.directory, log), "ab") as output:
            self.processes.append(subprocess.Popen(
                list(arguments), stdout=output, stderr=subprocess.STDOUT, env=self.environment,
                start_new_session=True,
            ))

    def start(self, timeout: float = 60) -> SlurmCluster:
        """Start the three daemons and wait until the node is idle."""
        # munged insists that every directory above its socket is searchable by all.
        os.chmod(self.directory, 0o711)
        sockets = os.path.join(self.directory, "munge")
        os.makedirs(sockets, mode=0o755, exist_ok=True)
        os.chmod(sockets, 0o755)
        key = os.path.join(self.directory, "munge.key")
        with open(key, "wb") as handle:
            handle.write(os.urandom(1024))
        os.chmod(key, 0o400)
        munge_socket = os.path.join(sockets, "munge.socket")
        self._start(self._program("munged"), "--foreground", "--force", f"--socket={munge_socket}",
                    f"--key-file={key}", f"--pid-file={self.directory}/munged.pid",
                    f"--log-file={self.directory}/munged.log", f"--seed-file={self.directory}/munged.seed",
                    log="munged.out")
        hardware = subprocess.run([self._program("slurmd"), "-C"], capture_output=True, text=True,
                                  env=self.environment).stdout.split("\n", 1)[0].split()
        wanted = ("CPUs=", "Boards=", "SocketsPerBoard=", "CoresPerSocket=", "ThreadsPerCore=", "RealMemory=")
        node_hardware = " ".join(word for word in hardware if word.startswith(wanted)) or f"CPUs={os.cpu_count()}"
        for name in ("state", "spool"):
            os.makedirs(os.path.join(self.directory, name), exist_ok=True)
        controller_port, node_port = free_port(), free_port()
        with open(self.conf, "w") as handle:
            handle.write(f"""# a single-node Slurm for the mummi_io tests (tests/slurm_cluster.py)
ClusterName=mummi-io-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={controller_port}
SlurmdPort={node_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
StateSaveLocation={self.directory}/state
SlurmdSpoolDir={self.directory}/spool
SlurmctldPidFile={self.directory}/slurmctld.pid
SlurmdPidFile={self.directory}/slurmd.pid
SlurmctldLogFile={self.directory}/slurmctld.log
SlurmdLogFile={self.directory}/slurmd.log
PlugStackConfig={self.directory}/plugstack.conf
InactiveLimit=0
KillWait=5
MinJobAge=5
Waittime=0
NodeName={self.node} NodeAddr=127.0.0.1 {node_hardware} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        open(os.path.join(self.directory, "plugstack.conf"), "w").close()
        self._wait_for_munge(munge_socket, timeout)
        self._start(self._program("slurmctld"), "-D", "-i", "-f", self.conf, log="slurmctld.out")
        self._start(self._program("slurmd"), "-D", "-f", self.conf, "-N", self.node, log="slurmd.out")
        self._wait_until_idle(timeout)
        return self

    def _wait_for_munge(self, munge_socket: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not os.path.exists(munge_socket):
            if time.monotonic() > deadline or self.processes[0].poll() is not None:
                raise RuntimeError(f"munged did not start:\n{self.logs()}")
            time.sleep(0.05)

    def _wait_until_idle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            state = subprocess.run([self._program("sinfo"), "-h", "-N", "-n", self.node, "-o", "%T"],
                                   capture_output=True, text=True, env=self.environment).stdout.strip()
            if state == "idle":
                return
            if any(process.poll() is not None for process in self.processes) or time.monotonic() > deadline:
                raise RuntimeError(f"Slurm did not become idle (node state {state!r}):\n{self.logs()}")
            time.sleep(0.2)

    def logs(self) -> str:
        """The end of every daemon log, for a failure message."""
        parts = []
        for name in sorted(os.listdir(self.directory)):
            if name.endswith((".log", ".out")):
                with open(os.path.join(self.directory, name), errors="replace") as handle:
                    parts.append(f"--- {name}\n" + "".join(handle.readlines()[-20:]))
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop the daemons (slurmd first) and wait for each."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_slurm() -> SlurmCluster:
    """A started single-node Slurm in a new private directory (under /tmp: munged needs every parent searchable)."""
    cluster = SlurmCluster(tempfile.mkdtemp(prefix="mummi-io-slurm-", dir="/tmp"))
    try:
        return cluster.start()
    except BaseException:
        cluster.stop()
        raise
