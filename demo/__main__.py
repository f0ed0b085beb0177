"""``python -m demo [--profile offline] [--db data/gemel.db] [--auth user:pass]``: serve GEMEL Studio."""

from demo.app import main

if __name__ == "__main__":
    main()
