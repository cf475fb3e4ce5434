"""Moving and deleting old files when a disk is over its critical threshold.

Safety first: see docs/safety.md for the rules in plain words. The runner
calls ``dkmonitor.clean.step.clean_step``; ``dkmonitor restore`` calls
``dkmonitor.clean.restore.restore_task``.
"""
