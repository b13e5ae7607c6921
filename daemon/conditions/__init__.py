"""The machine conditions of the update policy: CPU, power, time windows, a cron schedule.

Each module reads its facts from an injectable root (``/proc``, ``/sys`` under ``root``) and
clock, and answers a :class:`~tailord.daemon.conditions.check.Check`: ``ok`` and a ``detail``
sentence. None of them decides anything: ``daemon/policy.py`` combines them.
"""
