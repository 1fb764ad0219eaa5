.PHONY: install test lint quickstart
install:
	pip install torch==2.13.0 && pip install -e ".[dev]"
test:
	python -m pytest -q
lint:
	ruff check src tests benchmarks && ruff format --check src tests benchmarks && mypy
quickstart:
	jasper run configs/quickstart.yaml
