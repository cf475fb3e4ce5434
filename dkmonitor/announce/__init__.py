"""Announced purge: what full runs tell each user before cleaning, and where users read it.

``publish`` writes root's per-user files safely (``{notice_dir}/{uid}/``);
``summary`` defines what those files hold, for the runs that write them and
for ``dkmonitor me`` that reads them.
"""
