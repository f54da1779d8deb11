"""What the lessons show, read from the real kernel.

Each module here answers one question a teacher asks about a running container
— which namespaces it has, which PIDs its processes carry, which layer a file
comes from, how close it is to its cgroup limits — by reading ``/proc``,
``/sys/fs/cgroup`` and the overlay directories, never from the engine's own
records. What the page shows is what the kernel says.
"""
