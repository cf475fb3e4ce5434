"""Mail to users and administrators: templates, composition, delivery, the mail log.

The mail channel (``dkmonitor.channels.mail``) only needs ``step``
(``notify_step``, ``check_templates``) and ``admin`` (``admin_step``); the
other modules each do one job and are importable on their own for tests.
"""
