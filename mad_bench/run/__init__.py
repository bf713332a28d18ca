"""The run layer: everything between "train these" and the training step, in one place.

- :mod:`.plan`: a run request and the plan, spec x setting x seed x an lr x wd :class:`~.plan.Grid`
  (one object from plan to engine; its members validated once, when it is made);
- :mod:`.engines`: how a grid is trained, ``plain`` (one member at a time) or ``ensemble`` (all
  at once), chosen by name (``auto`` resolved) in :func:`~.engines.make_engine`;
- :mod:`.executors`: where jobs run (this process, local worker processes pinned to GPUs, Ray);
- :mod:`.options`: the execution options every training command takes;
- :mod:`.driver`: a plan against the results store (skip stored rows, write each as it lands);
- :mod:`.rows`: the one shape of a result row.

``bench`` and ``run`` go through :mod:`.driver`; ``tune`` and ``search`` drive trials
(:mod:`mad_bench.tune.study`) whose jobs train their grids through the same engines and executors.
Nothing here is imported by ``import mad_bench``.
"""
