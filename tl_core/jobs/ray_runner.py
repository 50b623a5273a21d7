"""Training on a Ray cluster: the scheduler's runner for ``TL_RUNNER=ray``.

The studio server keeps its queue, pages and run folders; only the training moves to the
cluster. For each job, `RayRunner.submit` starts a *detached* Ray actor (`RemoteRun`,
named ``tl-run-<run id>`` in the ``tl_studio`` namespace) that asks for one slot: one GPU
(``num_gpus=1``), or the custom resource named by ``TL_RAY_RESOURCE``, or ``TL_RAY_CPUS``
CPUs (default 4) on a cluster without GPUs.

On its node the actor works in a node-local workspace (``TL_RAY_SCRATCH``, else
``$TL_HOME/ray-node``, else ``<temp>/tl-ray-node``; never the server's folder, even on the
same machine):

- the dataset arrives by content id: the server puts it once into Ray's object store and
  the node unpacks it into ``datasets/<id>/`` on first use; later runs find it there;
- the run folder arrives whole (``run.json``, ``status.json``, the checkpoints a resume
  starts from; not ``log.txt`` nor TensorBoard logs);
- the same worker as on one machine trains it: ``python -m tl_core worker RUN_ID``, a
  child process of the actor, with ``TL_HOME`` set to the node's workspace.

On the server, one *receiver* thread per job holds the server run folder's writer lock
(so the folder keeps one writer, and `writer_alive` means "training" as for a local
worker) and pulls the node's changes every `POLL_S` seconds (`tl_core.jobs.folder_sync`):
metrics and progress lines, status, drift, checkpoints, TensorBoard logs, the worker's
log, and ``model.keras`` at the end. When the worker has exited and the last changes are
in, the receiver removes the node's copy, ends the actor and drops the lock; the
scheduler then settles the job from ``status.json`` as for a local worker.

- **Stop**: the receiver relays the run's ``STOP`` flag to the node at its next pull;
  the worker stops after the current batch. A job still waiting for a cluster slot is
  withdrawn at once and ends ``stopped``.
- **A node or worker that dies**: the actor's calls fail, the receiver drops the lock,
  and the scheduler marks the run ``interrupted``. Its last streamed checkpoint is on
  the server, so Resume trains on from there, on any node.
- **A server restart**: the actors outlive the server. The first `status` call of the
  new server's scheduler finds a job's actor by name and *re-attaches* a receiver (the
  node sends everything once, then changes again); a job whose actor is gone is
  ``interrupted``.

`ray` is imported only here, and only when a `RayRunner` is made: the app and every
other module work without it installed (`tl_core.jobs.runners.runner_from_env`).

Example:
    >>> runner = RayRunner(address="ray://head:10001")  # doctest: +SKIP
    >>> Scheduler(runner=runner, slots=runner.slots).start_background()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl_core.errors import ConfigError
from tl_core.fsutil import FolderLock, read_json
from tl_core.jobs.folder_sync import (
    Signature,
    apply_delta,
    changes_since,
    pack_folder,
    signatures,
    unpack_folder,
)
from tl_core.jobs.processes import package_root, process_start_time
from tl_core.jobs.queue import Job, _home
from tl_core.jobs.runs import RunFiles, RunStatus, read_status, run_path, write_status
from tl_core.jobs.scheduler import WorkerRef
from tl_core.workspace import datasets_dir

__all__ = [
    "ADDRESS_ENV",
    "CPUS_ENV",
    "NAMESPACE",
    "POLL_S",
    "RESOURCE_ENV",
    "SCRATCH_ENV",
    "ClusterSlots",
    "RayRunner",
    "RemoteRun",
    "actor_name",
]

log = logging.getLogger("tl_core.jobs.ray_runner")

#: The cluster to use: ``ray://head:10001`` (Ray Client), ``host:6379``, or ``auto``.
ADDRESS_ENV = "RAY_ADDRESS"
#: A custom Ray resource that marks one training slot (each job asks for one).
RESOURCE_ENV = "TL_RAY_RESOURCE"
#: CPUs one job asks for on a cluster without GPUs (default 4).
CPUS_ENV = "TL_RAY_CPUS"
#: A node's local workspace for the runs it trains and the datasets it keeps.
SCRATCH_ENV = "TL_RAY_SCRATCH"
#: The Ray namespace of the studio's actors.
NAMESPACE = "tl_studio"
#: Seconds between two pulls of a job's changes (and so the delay of a relayed Stop).
POLL_S = 0.25
#: Seconds one pull may take before the receiver asks again.
PULL_TIMEOUT_S = 60.0
#: Ray's switch that keeps a loopback address on loopback (read when ray is imported).
_LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_DEFAULT_CPUS = 4
_PR_SET_PDEATHSIG = 1

_INTERRUPTED_NOTE = (
    "ray: the worker's node or process ended before the run finished; "
    "resume the run to continue from its last checkpoint on any node"
)


def actor_name(run_id: str) -> str:
    """The name of the actor that trains `run_id` (in `NAMESPACE`).

    Example:
        >>> actor_name("20261123-131500-a1b2c3")
        'tl-run-20261123-131500-a1b2c3'
    """
    return f"tl-run-{run_id}"


# --- the node side ---------------------------------------------------------------------------


def scratch_home() -> Path:
    """This node's workspace for the runs it trains (see the module docstring)."""
    configured = os.environ.get(SCRATCH_ENV)
    if configured:
        root = Path(configured)
    elif os.environ.get("TL_HOME"):
        root = Path(os.environ["TL_HOME"]) / "ray-node"
    else:
        root = Path(tempfile.gettempdir()) / "tl-ray-node"
    root.mkdir(parents=True, exist_ok=True)
    return root.resolve()


def _die_with_parent() -> None:
    """In the worker child: be killed when the actor's process dies (Linux), so a dead
    actor leaves no worker training behind on its node."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class RemoteRun:
    """The node side of one job: a Ray actor that trains the run in a worker child process.

    Made by `RayRunner` with ``ray.remote``; its methods run on the node. `start` fills
    the node's workspace and starts the worker; `pull` answers the receiver's "what
    changed since"; `stop` raises the node's ``STOP`` flag; `cleanup` removes the node's
    copy of the run.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.home = scratch_home()
        self.root = run_path(run_id, self.home)
        self.process: subprocess.Popen[bytes] | None = None
        # What the receivers have been sent of log.txt: a receiver that re-attaches
        # after a server restart gets only the log lines it has not seen.
        self._log_sent: Signature | None = None

    def where(self) -> str:
        """This node, as the pages show it: its address and the start of its Ray node id."""
        import ray

        context = ray.get_runtime_context()
        return f"{ray.util.get_node_ip_address()} ({context.get_node_id()[:8]})"

    def start(self, run: bytes, dataset_id: str, dataset: list[Any], args: list[str]) -> dict:
        """Unpack the run (and the dataset unless this node has it) and start the worker.

        Args:
            run: the server's run folder (`pack_folder`).
            dataset_id: the content id of the run's dataset.
            dataset: one object reference to the packed dataset, fetched only when this
                node has no copy yet (a list, so that Ray does not fetch it eagerly).
            args: the worker's arguments after the run id (``--resume``, ``--batch-size``).

        Returns:
            ``{"node": where(), "pid": the worker's pid, "known": signatures of the run
            folder as unpacked}``.
        """
        import ray

        target = datasets_dir(self.home) / dataset_id
        if not (target / "report.json").is_file():
            unpack_folder(ray.get(dataset[0]), target)
        if self.root.exists():  # a copy from an earlier attempt on this node
            shutil.rmtree(self.root)
        unpack_folder(run, self.root)
        files = RunFiles(self.root)
        env = os.environ | {
            "TL_HOME": str(self.home),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [package_root(), os.environ.get("PYTHONPATH")])
            ),
            "PYTHONUNBUFFERED": "1",
        }
        with files.log.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tl_core", "worker", self.run_id, *args],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.home,
                preexec_fn=_die_with_parent,
            )
        known = signatures(self.root)
        self._log_sent = known.get("log.txt")
        return {"node": self.where(), "pid": self.process.pid, "known": known}

    def pull(self, known: dict[str, Signature]) -> dict:
        """What changed in the node's run folder since `known`, and the worker's exit code
        (``None`` while it runs; read first, so the changes of an ended worker are all in).

        Returns:
            ``{"delta": Delta, "exit_code": int | None}``.
        """
        exit_code = self.process.poll() if self.process is not None else -1
        asked = dict(known)
        if "log.txt" not in asked and self._log_sent is not None:
            asked["log.txt"] = self._log_sent
        delta = changes_since(self.root, asked)
        self._log_sent = delta.known.get("log.txt", self._log_sent)
        return {"delta": delta, "exit_code": exit_code}

    def stop(self) -> None:
        """Raise the node's ``STOP`` flag: the worker stops after its current batch."""
        if self.root.is_dir():
            RunFiles(self.root).stop_flag.touch()

    def cleanup(self) -> None:
        """Remove the node's copy of the run (the server has it all); the dataset stays."""
        shutil.rmtree(self.root, ignore_errors=True)


# --- the server side -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterSlots:
    """The cluster's training slots: how many there are and how many are free now."""

    total: int
    free: int

    def describe(self) -> str:
        """``"1 of 2 cluster slots free"``."""
        return f"{self.free} of {self.total} cluster slot{'s' if self.total != 1 else ''} free"


def _is_loopback(address: str) -> bool:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "::1", "[::1]")


def _import_ray(address: str) -> Any:
    """Import ray; for a loopback address first tell it to stay on loopback (ray swaps
    127.0.0.1 for the machine's network address unless told so before its import)."""
    if _is_loopback(address) and "ray" not in sys.modules:
        os.environ.setdefault(_LOOPBACK_SWITCH, "0")
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "TL_RUNNER=ray needs Ray, which is not installed here. Install it with "
            "`pip install -e '.[ray]'` (or `pip install \"ray>=2.40,<3\"`), or unset TL_RUNNER "
            "to train on this machine."
        ) from exc
    return ray


class RayRunner:
    """Runs each job's worker on a Ray cluster and mirrors its run folder on the server.

    See the module docstring for what travels where.

    Args:
        home: the server's workspace root (default ``TL_HOME``).
        address: the cluster (default ``RAY_ADDRESS``, else ``auto``: the cluster started
            on this machine with ``ray start --head``). Ignored when this process is
            already connected to Ray.
        resource: a custom resource that marks a slot (default ``TL_RAY_RESOURCE``; unset:
            one GPU per job, or `cpus` CPUs on a cluster without GPUs).
        cpus: CPUs per job on a cluster without GPUs (default ``TL_RAY_CPUS``, else 4).
        poll_s: seconds between pulls (default `POLL_S`).

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.

    Example:
        >>> runner = RayRunner(address="auto", resource="tl_slot")  # doctest: +SKIP
        >>> runner.cluster_slots().describe()  # doctest: +SKIP
        '2 of 2 cluster slots free'
    """

    def __init__(
        self,
        home: Path | None = None,
        *,
        address: str | None = None,
        resource: str | None = None,
        cpus: int | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self.home = _home(home)
        self.address = address or os.environ.get(ADDRESS_ENV) or "auto"
        self.resource = resource or os.environ.get(RESOURCE_ENV) or None
        self.cpus = cpus or int(os.environ.get(CPUS_ENV) or _DEFAULT_CPUS)
        self.poll_s = poll_s
        self._ray = _import_ray(self.address)
        self._connect()
        self._remote_class = self._ray.remote(RemoteRun)
        self._receivers: dict[str, _Receiver] = {}
        self._datasets: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _connect(self) -> None:
        if self._ray.is_initialized():
            return
        try:
            self._ray.init(
                address=self.address,
                namespace=NAMESPACE,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"Could not connect to the Ray cluster at {self.address!r} ({exc}). Start the "
                "head (`ray start --head`), check RAY_ADDRESS, or unset TL_RUNNER to train "
                "on this machine."
            ) from exc

    # --- slots -------------------------------------------------------------------------------

    def _slot_request(self) -> dict[str, Any]:
        """The resources one job asks for (Ray actor options)."""
        if self.resource:
            return {"num_cpus": 0, "resources": {self.resource: 1}}
        if self._ray.cluster_resources().get("GPU", 0) >= 1:
            return {"num_cpus": 1, "num_gpus": 1}
        return {"num_cpus": self.cpus}

    def _slot_key(self) -> tuple[str, float]:
        request = self._slot_request()
        if "resources" in request:
            return next(iter(request["resources"].items()))
        if "num_gpus" in request:
            return "GPU", 1
        return "CPU", request["num_cpus"]

    def cluster_slots(self) -> ClusterSlots:
        """The cluster's slots for training jobs, from its resources now.

        Example:
            >>> runner.cluster_slots()  # doctest: +SKIP
            ClusterSlots(total=2, free=1)
        """
        key, per_job = self._slot_key()
        total = int(self._ray.cluster_resources().get(key, 0) // per_job)
        free = int(self._ray.available_resources().get(key, 0) // per_job)
        return ClusterSlots(total=total, free=min(free, total))

    @property
    def slots(self) -> int:
        """Jobs the cluster trains at once (at least 1): the scheduler's slot count."""
        return max(1, self.cluster_slots().total)

    # --- the Runner calls ------------------------------------------------------------------

    def submit(self, job: Job) -> WorkerRef:
        """Start the actor of `job` and its receiver; return this server as its worker
        (the receiver, in this process, is what writes the run here).

        Raises:
            OSError: the run folder cannot be read or packed, or the cluster refused the job.
        """
        root = run_path(job.run_id, self.home)
        doc = read_json(RunFiles(root).config) or {}
        dataset_id = str(doc.get("config", {}).get("dataset_id", ""))
        args = ["--resume"] if job.resume else []
        if job.batch_size_override is not None:
            args += ["--batch-size", str(job.batch_size_override)]
        try:
            self._end_actor(job.run_id)  # one left from an earlier attempt holds the name
            actor = self._remote_class.options(
                name=actor_name(job.run_id),
                namespace=NAMESPACE,
                lifetime="detached",
                max_restarts=0,
                **self._slot_request(),
            ).remote(job.run_id)
            start = actor.start.remote(
                pack_folder(root, skip=("log.txt", "tensorboard")),
                dataset_id,
                [self._dataset_ref(dataset_id)],
                args,
            )
        except self._ray.exceptions.RayError as exc:  # the scheduler reports an OSError
            raise OSError(f"the Ray cluster did not take the job: {exc}") from exc
        self._receive(job.run_id, root, actor, start)
        return WorkerRef(os.getpid(), process_start_time(os.getpid()))

    def status(self, job: Job) -> str:
        """``"running"`` while this server receives the job's changes, or re-attaches a
        receiver to a job whose actor outlived an earlier server; else ``"exited"``."""
        receiver = self._receivers.get(job.run_id)
        if receiver is not None:
            if receiver.is_alive():
                return "running"
            with self._lock:
                self._receivers.pop(job.run_id, None)
            return "exited"
        return "running" if self._reattach(job) else "exited"

    def stop(self, job: Job) -> None:
        """Raise the run's ``STOP`` flag on the server; its receiver relays it to the node."""
        RunFiles(run_path(job.run_id, self.home)).stop_flag.touch()

    def close(self) -> None:
        """Stop receiving (the scheduler stops): the actors train on, and the next
        scheduler on this ``TL_HOME`` re-attaches to them (`status`).

        Example:
            >>> runner.close()  # doctest: +SKIP
        """
        with self._lock:
            receivers = list(self._receivers.values())
            self._receivers.clear()
        for receiver in receivers:
            receiver.halt.set()
        for receiver in receivers:
            receiver.join(timeout=PULL_TIMEOUT_S)

    # --- where runs train ------------------------------------------------------------------

    def node_of(self, run_id: str) -> str | None:
        """The node `run_id` trains on, as `RemoteRun.where` says (``None``: not known
        here, or still waiting for a slot).

        Example:
            >>> runner.node_of(run_id)  # doctest: +SKIP
            '10.0.0.7 (3ca7cab5)'
        """
        receiver = self._receivers.get(run_id)
        return receiver.node if receiver is not None else None

    def training_nodes(self) -> dict[str, str]:
        """``{run id: node}`` of the runs this server receives now."""
        with self._lock:
            receivers = list(self._receivers.items())
        return {run_id: r.node for run_id, r in receivers if r.node and r.is_alive()}

    # --- internals ---------------------------------------------------------------------------

    def _dataset_ref(self, dataset_id: str) -> Any:
        """The dataset in the object store, put there once per server process."""
        with self._lock:
            ref = self._datasets.get(dataset_id)
            if ref is None:
                ref = self._ray.put(pack_folder(datasets_dir(self.home) / dataset_id))
                self._datasets[dataset_id] = ref
            return ref

    def _actor(self, run_id: str) -> Any | None:
        try:
            return self._ray.get_actor(actor_name(run_id), namespace=NAMESPACE)
        except ValueError:  # no live actor by that name
            return None

    def _end_actor(self, run_id: str) -> None:
        actor = self._actor(run_id)
        if actor is not None:
            self._ray.kill(actor)

    def _reattach(self, job: Job) -> bool:
        """Receive again from the actor of `job` left by an earlier server, when it lives."""
        actor = self._actor(job.run_id)
        if actor is None:
            return False
        try:
            self._ray.get(actor.where.remote(), timeout=PULL_TIMEOUT_S)
        except self._ray.exceptions.RayError:
            return False
        self._receive(job.run_id, run_path(job.run_id, self.home), actor, None)
        return True

    def _receive(self, run_id: str, root: Path, actor: Any, start: Any | None) -> None:
        receiver = _Receiver(self._ray, run_id, root, actor, start, self.poll_s)
        with self._lock:
            self._receivers[run_id] = receiver
        receiver.start()


class _Receiver(threading.Thread):
    """The server side of one job: holds the server run folder's writer lock and writes
    the node's changes into it until the worker has ended and everything is in."""

    def __init__(
        self, ray: Any, run_id: str, root: Path, actor: Any, start: Any | None, poll_s: float
    ) -> None:
        super().__init__(name=f"tl-ray-{run_id}", daemon=True)
        self.ray = ray
        self.run_id = run_id
        self.root = root
        self.files = RunFiles(root)
        self.actor = actor
        self.start_ref = start
        self.poll_s = poll_s
        self.node: str | None = None
        #: Set to stop receiving and leave the actor training (`RayRunner.close`).
        self.halt = threading.Event()

    def run(self) -> None:
        lock = FolderLock(self.root)
        if not lock.acquire(timeout=10.0):
            log.error("run %s: another process writes its folder; not receiving", self.run_id)
            return
        try:
            self._run_locked()
        except Exception:
            log.exception("run %s: receiving from the cluster failed", self.run_id)
            self._note(_INTERRUPTED_NOTE)
            self._end()  # a worker no server follows would train on unseen
        finally:
            lock.release()

    def _run_locked(self) -> None:
        if self.start_ref is not None:
            # As a local worker does when it starts: a STOP from before is not for this start.
            self.files.stop_flag.unlink(missing_ok=True)
            started = self._wait_for_start()
            if started is None:
                return
            known: dict[str, Signature] = started["known"]
            self.node = started["node"]
            self._note(f"ray: training on node {self.node}")
        else:
            self.node = self.ray.get(self.actor.where.remote(), timeout=PULL_TIMEOUT_S)
            known = {}  # re-attached: the node sends everything once
        self._follow(known)

    def _wait_for_start(self) -> dict | None:
        """Wait for the actor to get a slot and start the worker; a Stop meanwhile withdraws
        the job (``stopped``), a failed start leaves it to be settled as interrupted."""
        while not self.halt.is_set():
            ready, _ = self.ray.wait([self.start_ref], timeout=self.poll_s)
            if ready:
                try:
                    return self.ray.get(self.start_ref)
                except self.ray.exceptions.RayError as exc:
                    self._note(f"ray: the worker could not start on the cluster ({exc})")
                    self._end()
                    return None
            if self.files.stop_flag.exists():
                self._end()
                status = read_status(self.root) or RunStatus()
                write_status(
                    self.root,
                    status.with_changes(
                        state="stopped",
                        finished_at=time.time(),
                        note="stopped while waiting for a cluster slot",
                    ),
                )
                return None
        return None

    def _follow(self, known: dict[str, Signature]) -> None:
        """Pull and write the node's changes until the worker has ended and all is in."""
        while True:
            if self.halt.is_set():
                return  # the actor trains on; the next server re-attaches
            if self.files.stop_flag.exists():
                self.actor.stop.remote()
            try:
                answer = self.ray.get(self.actor.pull.remote(known), timeout=PULL_TIMEOUT_S)
            except self.ray.exceptions.GetTimeoutError:
                continue
            except self.ray.exceptions.RayError:
                self._note(_INTERRUPTED_NOTE)
                self._end()  # gone, or unreachable: either way its run is interrupted here
                return
            delta = answer["delta"]
            apply_delta(self.root, delta)
            known = delta.known
            if answer["exit_code"] is not None:
                break
            self.halt.wait(self.poll_s)
        with contextlib.suppress(self.ray.exceptions.RayError):
            self.ray.get(self.actor.cleanup.remote(), timeout=PULL_TIMEOUT_S)
        self._end()

    def _end(self) -> None:
        with contextlib.suppress(self.ray.exceptions.RayError, ValueError):
            self.ray.kill(self.actor)

    def _note(self, message: str) -> None:
        """A line in the server's ``log.txt`` (where a local worker's output goes)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self.files.log.open("a", encoding="utf-8") as out:
            out.write(f"{stamp} {message}\n")
