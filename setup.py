# All metadata lives in pyproject.toml; this shim only keeps legacy tools
# (and `python setup.py ...` habits) working.
from setuptools import setup

setup()
