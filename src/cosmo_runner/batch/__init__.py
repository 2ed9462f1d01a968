"""Many specs on Dask: each runs in process on a gated worker, through the normal pipeline.

- :mod:`.plan`: the spec list, readable unique keys, what ``--resume`` may reuse;
- :mod:`.ship`: the bytes a worker needs (spec, inputs, schema files, with sha256) and the
  run directory that travels back; the client's atomic, exactly-once commit;
- :mod:`.worker`: the worker preload (gate and snapshot once, the report in the
  registration) and the task that runs specs in process;
- :mod:`.scheduler`: the scheduler plugin that holds every worker until its environment
  report matches the expected env id, and refuses the others;
- :mod:`.client`: the batch itself (cluster, submit, collect, commit, progress);
- :mod:`.log`: ``batch_log.json`` and ``batch_log.jsonl``.

dask and distributed are imported only here (and only when a batch, scheduler or worker
command runs), never by ``run`` or ``--help``.
"""
