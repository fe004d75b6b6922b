# Thin wrappers around dev.py, which needs nothing but Python.
.PHONY: run demo test lint bench setup
run:
	python3 dev.py run
demo:
	python3 dev.py demo
test:
	python3 dev.py test
lint:
	python3 dev.py lint
bench:
	python3 dev.py bench
setup:
	python3 dev.py setup --dev
