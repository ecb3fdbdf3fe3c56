"""Command line of the benchmark: ``python -m course_lib.benchmark --help``."""

from course_lib.benchmark.cli import main

if __name__ == "__main__":
    main()
