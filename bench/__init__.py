"""callhook's benchmarks: each starts what it needs, prints a table, compares with a baseline
measured in the same run, and records its latest results in bench/RESULTS.md."""
