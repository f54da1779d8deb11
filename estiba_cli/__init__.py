"""estiba's command-line client (``estiba ps``, ``estiba run -it``...), standard library only."""
