"""Which runners are loaded and who may use them: the scheduler (:mod:`scheduler`), the
server's handle to one runner subprocess (:mod:`runner_client`) and the memory a model will
take and the machine has free (:mod:`memory`).

May import ``runner`` (:mod:`~ollamactl.runtime.runner.config`), ``builds``, ``store`` and
:mod:`ollamactl.runtime.ipc`; never the HTTP layer.
"""
