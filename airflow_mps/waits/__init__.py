"""I/O-free cores of the waits (issue 10 item 5): each wait written once, as a step machine.

A wait is a *step machine* (:mod:`airflow_mps.steps`): a generator that yields the I/O it needs as a
small step object (``Describe(task_id)``, ``Sleep(seconds)``, …), is sent the reply, and finally returns
its outcome. Every decision — what counts as finished, which errors end the wait and which are polled
through, when the deadline has passed, how long to sleep — lives in the machine; a driver only performs
the steps. So the sync paths (an operator polling in its worker, a sensor's poke) and the async ones (a
trigger on the triggerer's event loop) share the very same rules, the pattern ``MpsHook.find_tasks_for``
uses for its reconciliation.

* :mod:`airflow_mps.waits.task` — waiting for one MPS image task.
* :mod:`airflow_mps.waits.batch` — waiting for the tasks of a batch (and the finished-task rounds of
  the overlap watcher).
* :mod:`airflow_mps.waits.cos` — waiting for a COS object, or for a prefix to stay unchanged.

The drivers are :func:`airflow_mps.steps.drive`, :func:`~airflow_mps.steps.drive_until` (a sensor's
poke: up to the wait's first sleep) and :func:`~airflow_mps.steps.adrive`. The task and COS waits take
a failed call *as a value*: their ``perform`` returns the exception when it is an answer the machine
judges (an MPS error, a network error), and anything else it raises is thrown into the machine, which
does not catch it, so it ends the wait. The batch wait is thrown its failures and judges them
(:mod:`airflow_mps.waits.batch` documents each step's reply).
"""
