"""An endless busy loop: only the host's wall-clock kill ends it."""
print("STARTED", flush=True)
while True:
    pass
