"""``python -m callhook.cli``."""

from callhook.cli import main

if __name__ == "__main__":
    main()
