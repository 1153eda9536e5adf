#!/usr/bin/env bash
# The BlackJAX comparison's own environment (benchmarks/bench_samplers.py, "vs BlackJAX"): CPU jax and
# blackjax in benchmarks/.venv-jax, never symgen dependencies. Run from the repository root:
#   bash benchmarks/jax-env.sh
# bench_samplers.py runs the BlackJAX side in that interpreter (a subprocess) and skips the column with a
# message when it is missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv-jax"
"$here/.venv-jax/bin/pip" install --quiet --upgrade pip
"$here/.venv-jax/bin/pip" install --quiet "jax[cpu]" blackjax
"$here/.venv-jax/bin/python" -c "import jax, blackjax; print('jax', jax.__version__, 'blackjax', blackjax.__version__)"
