"""Locust user classes, one module per kind of client; ``loadtests/locustfile.py`` exports them."""
