# Developer shortcuts. CI runs .ci/run.
PY ?= python

.PHONY: test test-fast lint fmt golden-update bench

test:           ## the full suite, slow calibration tests included (as CI)
	$(PY) -m pytest

test-fast:      ## skip the slow calibration tests
	$(PY) -m pytest -m "not slow"

lint:
	ruff check latentcheck tests benchmarks sample_latents docs
	ruff format --check latentcheck tests benchmarks sample_latents docs
	mypy latentcheck

fmt:
	ruff format latentcheck tests benchmarks sample_latents
	ruff check --fix latentcheck tests benchmarks sample_latents

golden-update:  ## rewrite tests/golden/ after an intended change; review the diff
	LATENTCHECK_UPDATE_GOLDEN=1 $(PY) -m pytest tests/test_golden.py

bench:          ## the performance benchmark (BLAS-throttling variables unset for it only)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_report.py
