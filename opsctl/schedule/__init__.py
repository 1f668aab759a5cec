"""`opsctl schedule`: systemd timers that run a policy's jobs (backup, prune, check, verify, drill) unattended."""
