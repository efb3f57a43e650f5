"""The Ray backend: workers that are actors of a Ray cluster, fed one packed buffer a batch.

For UDFs that should run on more machines than this one. Each worker is a
Ray actor holding the processes backend's ``ProcessRuntime`` (so native,
vectorized and arrow UDFs, and class UDFs with per-actor state, run there as
in a worker process). One batch, on the DuckDB thread that checked the
worker out::

    DuckDB thread                                  Ray actor (a worker process, on any node)
      argument memoryviews
      --pack_batch: copied once into one message:
        a pickled header (udf id, length, column
        layout with spans for the views, output
        capacities, descriptors, mode), then
        every buffer, aligned
      --actor.run.remote(message) ------------------>  views over the message
                                                       ProcessRuntime.run (_codec, or
                                                       pyarrow for type="arrow") into
                                                       result buffers there; a result
                                                       too big for them is copied into
                                                       buffers of its size at once
      <-- ray.get(ref, timeout): one bytes object: the status slots, then
          the used bytes of every result buffer (or the pickled result
          the main side converts, as from the other workers) ---------------+
      --copy once--> OutputBuffers of the dispatcher

Ray sends a bytes-like argument as it is; under ~100 KB (its inline limit)
arguments and results travel inside the call itself, above it through the
object store. Every call carries everything it needs and returns its own
status and result, so several batches may be in flight on one worker at
once (``submit``/``collect``): the actor runs them one after the other, in
order.

An actor that dies (a crash in native code, the OOM killer, a lost node) is
restarted by Ray (``max_restarts`` in ``actor_options``), running its
constructor again: no UDF is loaded there. The worker waits for the
restarted actor (or starts a new one, where Ray gave up restarting it),
loads its UDFs into it and sends the batch again, up to the pool's
``max_retries`` times; then the query fails with ``WorkerDiedError``. An
actor restarted while idle answers "unloaded" to its next batch, which
does the same. Every ``ray.get`` has a timeout.

Nothing here imports ray until a ``RayPool`` is made: ray is an optional
dependency (``pip install 'duckdb-subinterp[ray]'``).

Two modules: ``actor`` (what runs in each actor, and the one-message
format of a batch both sides read) and ``pool`` (the driver's side:
``RayWorker``, ``RayPool``). This ``__init__`` imports nothing.
"""
