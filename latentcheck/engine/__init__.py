"""The streaming engine: the accumulator contract, the pass plan and the scheduler.

- :mod:`~latentcheck.engine.protocol`: the :class:`Accumulator` contract and its registry
- :mod:`~latentcheck.engine.kernels`: the numeric inner loops of the accumulators
- :mod:`~latentcheck.engine.plan`: what each pass computes (first pass, summary, second pass)
- :mod:`~latentcheck.engine.segments`: a segment into an accumulator, the pure unit of
  work, and the merge tree of fixed shape that combines the segments' accumulators
- :mod:`~latentcheck.engine.scheduler`: segments on worker threads or processes
- :mod:`~latentcheck.engine.workers`: the forked worker processes and their shared memory
"""
