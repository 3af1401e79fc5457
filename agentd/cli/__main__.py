"""``python -m agentd.cli``: kept for systemd units written before ``python -m agentd`` existed."""

from . import main

if __name__ == "__main__":
    main()
