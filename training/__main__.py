"""Entry point: python -m training {generate,check,train}."""

from training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
