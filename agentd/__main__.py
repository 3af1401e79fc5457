"""``python -m agentd``: the same as the ``agentd`` command."""

from .cli import main

if __name__ == "__main__":
    main()
