"""Fixtures shared by the end-to-end tests beyond those of tests/conftest.py."""

from tests.e2e.remote import net  # noqa: F401 - two stacks and a DNS server (outbound mail)
