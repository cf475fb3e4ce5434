"""Mail to users and administrators: templates, composition, delivery, the mail log.

The runner only needs ``dkmonitor.notify.step`` (``notify_step``,
``mail_admins``, ``check_templates``); the other modules each do one job and
are importable on their own for tests.
"""
