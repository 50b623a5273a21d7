"""Runs as jobs: the queue, the scheduler and its runners, and the run folders they write.

- `queue`: the SQLite job queue (submit, stop, resume), who writes a run (its writer
  lock) and which record owns which state.
- `scheduler`: starts queued jobs on GPU slots through a runner (local processes, warm)
  and settles them.
- `devices`: the GPUs this process may use (``nvidia-smi`` and ``CUDA_VISIBLE_DEVICES``).
- `runs`: the run folder on disk (``run.json``, ``status.json``, ``metrics.jsonl``) and
  its readers.
- `processes`: detached spawns and pid checks shared with background analyses.
- `progress`: where a run stands and how long it has left, in words.

No module here imports `tl_core.engine` or `tl_core.analysis`.
"""
