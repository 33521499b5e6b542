"""`python -m bench [flags]`: the benchmark (see bench/README.md); `python -m bench
profile [flags]`: where Greenlight spends a request's time, in-process under cProfile."""

import sys

if len(sys.argv) > 1 and sys.argv[1] == "profile":
    from bench.profile import main
else:
    from bench.run import main

raise SystemExit(main([a for a in sys.argv[1:] if a != "profile"]))
