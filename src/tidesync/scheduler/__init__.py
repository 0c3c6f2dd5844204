"""The scheduler: nodes on cycles, instances with parameters, retries, dependencies, backfill.

``project`` reads the ``nodes:`` of ``tidesync.yaml``; ``cycles`` turns schedules into slots in a
named time zone; ``store`` keeps instances (SQLite, or PostgreSQL for a shared schedule);
``daemon`` creates and runs them; ``cli`` holds the commands. See ``docs/scheduler.md``.
"""
