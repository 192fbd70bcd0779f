"""Maintainer tooling of the course: release and grading, the benchmark, the Sphinx extension, forks.

It imports ``gradflow`` (the package the chapters import); ``gradflow`` never imports it.
"""
