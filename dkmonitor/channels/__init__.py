"""Delivery channels: where a run's results go besides the database.

Modelled on borgmatic's ``hooks/``: each channel is one module here that
exposes ``CHANNEL``, a :class:`~dkmonitor.channels.base.Channel` that
implements only the moments it cares about:

* ``users``: after one task's run (and its cleaning), tell that run's users
  (the mail channel: usage warnings, move/deletion notices);
* ``admins``: at the end of a run, tell the administrators what needs
  their attention (failures, owners who could not be told);
* ``after_run``: at the end of a run, anything else (the metrics channel
  writes the node_exporter textfile).

``dispatch`` is the one place that calls them: the runner never asks
whether mail is on. A new channel (a webhook, say) is one module here, one
line in ``dispatch.CHANNELS`` and its settings section in ``config.py``.
"""
