"""The service layer: one platform unit per OS backend, chosen once (psutil's way).

Platform units (each a :class:`~ollamactl.service.base.Platform`: its layout, that is every
path it uses, its service manager, settings store, log source, install and uninstall steps,
the hooks ``env set`` needs, and its doctor checks):

    linux_systemd.py     Linux with systemd (or a tree staged with --root): unit + drop-in
    linux_watchdog.py    Linux without an init system: ollamactl's watchdog
    macos.py             launchd: a LaunchAgent, or a LaunchDaemon with --system
    windows_task.py      Windows per user: a logon task (and what both Windows units share)
    windows_service.py   Windows for the machine: the ``ollama`` service (--system)

:mod:`.platforms` holds the chooser (``BACKENDS``, ``for_host``): the one place that asks which
OS and init system this is. Everything else (install, uninstall, env, doctor, logs, status, the
GPU reload) goes through it; ``install/``, ``doctor/``, ``cli/`` and ``settings.py`` hold no
per-OS branch.

Mechanisms the units use: ``systemd.py`` (unit, drop-in, journal, systemctl), ``watchdog.py``
(the supervisor), ``launchd.py`` (plist, launchctl), ``windows.py`` (registry, Task Scheduler,
the task's action), ``windows_system.py`` (sc.exe, the service's Environment), ``winservice.py``
(the service host); ``linux.py`` holds the steps both Linux units share, ``logfiles.py`` the one
reader of log files, ``env.py`` the settings stores and their precedence, ``base.py`` the
interfaces.

To add an OS: one module with a Platform subclass (and its checks, registered with
``platforms=``), and one line in ``platforms.BACKENDS``. This file imports nothing.
"""
