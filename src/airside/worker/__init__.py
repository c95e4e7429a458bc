"""worker: beacon (register/heartbeat/land/retire/drain), volume server, runtime, reaper."""
