# The commands of the README: `make demo`, `make pacs-demo` and `make test`.
SHELL := /bin/bash
VENV = $(shell ./scripts/ensure_env.sh)
PY = $(VENV)/bin/python

.PHONY: demo pacs-demo test lint env bench gpu-check docs-tables

env:
	@./scripts/ensure_env.sh

demo:
	@venv="$$(./scripts/ensure_env.sh)" && "$$venv/bin/python" scripts/demo.py $(DEMO_ARGS)

pacs-demo:
	@venv="$$(./scripts/ensure_env.sh)" && PYTHONPATH=lib "$$venv/bin/python" scripts/pacs_demo.py $(PACS_DEMO_ARGS)

# Provisions Orthanc, its DICOMweb plugin, Chromium and the OHIF build first (or says how); CI=true fails on a skip.
test:
	@venv="$$(./scripts/ensure_env.sh)" && ./scripts/provision_test_deps.sh "$$venv" \
	  && "$$venv/bin/ruff" check lib apps tests scripts benchmarks && "$$venv/bin/python" -m pytest $(PYTEST_ARGS)

# Figures and how to read them: docs/performance.md. gpu-check is the one-GPU counterpart.
bench:
	@venv="$$(./scripts/ensure_env.sh)" && PYTHONPATH=lib "$$venv/bin/python" benchmarks/bench_infer.py $(BENCH_ARGS)

gpu-check:
	@venv="$$(./scripts/ensure_env.sh)" && PYTHONPATH=lib "$$venv/bin/python" benchmarks/gpu_check.py $(GPU_ARGS)

# Rewrites the option tables of the README, apps/plaid/README.md and docs/ from the code (scripts/plaid_dev/option_tables.py).
docs-tables:
	@venv="$$(./scripts/ensure_env.sh)" && PYTHONPATH=lib:scripts "$$venv/bin/python" -m plaid_dev.option_tables --write
