"""The processes backend: workers that are separate Python processes, fed through shared memory.

For UDFs that cannot run in an isolated interpreter (numpy, pyarrow,
pandas...) and for ``type="arrow"``. One batch, on the DuckDB thread that
checked the worker out::

    DuckDB thread                                 worker process (its own GIL)
      argument memoryviews                          |
      --copy once--> input region (shared memory)   |
      --pipe: Run(udf id, buffer spans...) ------> views over the input region
        [+ the fd of a new region, when replaced]   Runtime.run (_codecc/_codec, or
                                                    pyarrow for type="arrow") writes the
                                                    result into the output region
      <-pipe: Reply("ok", status slots, kept) -----+
      output region --copy once--> OutputBuffers of the dispatcher

Workers are started with ``subprocess`` (fork + exec of a fresh Python),
never a bare ``fork`` of this multi-threaded process; the worker imports
only ``_runtime`` and the codec through a bare package object (as the
interpreters do), so it neither re-runs the user's ``__main__`` (what
multiprocessing's spawn does) nor imports duckdb and pyarrow until an arrow
UDF needs them: measured 0.10 s to start a worker here, against 0.43 s for
a multiprocessing "spawn" child that imports the package.

Shared-memory regions belong to the parent and have no name: a memfd on
Linux (elsewhere a POSIX shared-memory object unlinked the moment it is
created), whose descriptor travels to the worker over the pipe
(SCM_RIGHTS). Nothing ever appears in /dev/shm, so no crash, kill or exit
can leave a segment behind; the memory goes with the last process mapping it.

A worker never outlives this process: on Linux it asks the kernel to kill
it when its parent goes (PR_SET_PDEATHSIG, which also stops a UDF stuck in C
code holding the GIL), and on every platform a thread in it exits the
process once the pipe to the parent closes or the parent pid changes.

A process forked from this one (``os.fork``, multiprocessing's "fork"
start method) shares these pipes and regions but never uses them: the pool
engine's fork hook (``_engine.lifecycle``) makes its pools drop the workers (``forget``) and start
their own on first use.

The modules, by job (this ``__init__`` imports nothing: the worker process
imports ``child`` through a bare package object, standard library only):

- ``wire``: what travels on the pipe, as named records (``Run``, ``Copy``,
  ``Load``..., ``Reply``), and how a batch's buffers are laid out in a
  region (``Packer``, ``unpack_column``); the Ray backend packs its batches
  the same way;
- ``shared_memory``: the regions (memfd), their descriptors passed over the
  pipe, and the worker's mappings of them;
- ``spawner``: starting worker processes from one long-lived thread;
- ``worker``: ``ProcessWorker``, the parent's side of one worker process;
- ``pool``: ``ProcessPool``;
- ``child``: the worker process's main loop (``serve``);
- ``arrow_udfs``: ``type="arrow"`` UDFs through pyarrow (``ProcessRuntime``),
  in a worker process or a Ray actor.
"""
